/**
 * Compiles the Connect schemas carried by records (schemas.enable=true) into column decoders, once per
 * distinct schema text, and splits `{"schema":...,"payload":...}` without decoding the schema again.
 */
import { ErrorCode, FatalError, MalformedInputError } from '../runtime/errors.ts';
import type { ConnectSchema, FieldDecoder, JsonObject, JsonValue } from './connect-schema.ts';
import { decoderForSchema } from './type-mapping.ts';

/** One column of a compiled struct schema. */
export interface ColumnDecoder {
  readonly name: string;
  readonly decoder: FieldDecoder;
}

export interface CompiledStruct {
  readonly name: string | null;
  readonly columns: readonly ColumnDecoder[];
}

export function malformed(path: string, message: string, cause?: unknown): MalformedInputError {
  return new MalformedInputError(`${path}: ${message}`, { code: ErrorCode.EVENT_MALFORMED, cause });
}

export function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const CONNECT_TYPES = new Set([
  'int8',
  'int16',
  'int32',
  'int64',
  'float',
  'double',
  'boolean',
  'string',
  'bytes',
  'array',
  'map',
  'struct',
]);

/** Validates a JSON schema node into a ConnectSchema (the subset decoders read). */
export function readSchema(node: JsonValue | undefined, path: string): ConnectSchema {
  if (!isObject(node)) throw malformed(path, 'schema must be an object');
  const type = node.type;
  if (typeof type !== 'string' || !CONNECT_TYPES.has(type))
    throw malformed(`${path}.type`, 'unknown schema type');
  const schema: { -readonly [K in keyof ConnectSchema]: ConnectSchema[K] } = {
    type: type as ConnectSchema['type'],
  };
  if (typeof node.name === 'string') schema.name = node.name;
  if (node.parameters !== undefined && node.parameters !== null) {
    if (!isObject(node.parameters)) throw malformed(`${path}.parameters`, 'must be an object');
    const parameters: Record<string, string> = {};
    for (const [k, v] of Object.entries(node.parameters)) {
      if (typeof v !== 'string') throw malformed(`${path}.parameters.${k}`, 'must be a string');
      parameters[k] = v;
    }
    schema.parameters = parameters;
  }
  if (type === 'array') schema.items = readSchema(node.items, `${path}.items`);
  if (type === 'map') {
    schema.keys = readSchema(node.keys, `${path}.keys`);
    schema.values = readSchema(node.values, `${path}.values`);
  }
  if (type === 'struct') {
    const fields = node.fields;
    if (!Array.isArray(fields)) throw malformed(`${path}.fields`, 'must be an array');
    schema.fields = (fields as readonly JsonValue[]).map((f, i) => {
      const field = isObject(f) ? f.field : undefined;
      if (typeof field !== 'string') throw malformed(`${path}.fields[${i}].field`, 'must be a string');
      return { ...readSchema(f, `${path}.fields[${i}]`), field };
    });
  }
  return schema;
}

/** A struct schema -> per-column decoders. */
export function compileStruct(schema: ConnectSchema, path: string): CompiledStruct {
  if (schema.type !== 'struct' || schema.fields === undefined)
    throw malformed(path, 'must be a struct schema');
  return {
    name: schema.name ?? null,
    columns: schema.fields.map((f, i) => {
      try {
        return { name: f.field, decoder: decoderForSchema(f) };
      } catch (cause) {
        if (cause instanceof FatalError) {
          throw new FatalError(`${path}.fields[${i}] (column ${f.field}): cannot read this column's values`, {
            code: cause.code,
            ...(cause.hint === undefined ? {} : { hint: cause.hint }),
            cause,
          });
        }
        // A schema the decoder rejects (e.g. a Decimal whose scale is not an integer) is malformed input.
        if (cause instanceof MalformedInputError) {
          throw malformed(`${path}.fields[${i}] (column ${f.field})`, 'not a valid column schema', cause);
        }
        throw cause;
      }
    }),
  };
}

/** The `before`/`after` value struct of an envelope schema. */
export function compileEnvelope(node: JsonValue, path: string): CompiledStruct {
  const envelope = readSchema(node, path);
  const fields = envelope.fields ?? [];
  const index = fields.findIndex((f) => f.field === 'after' || f.field === 'before');
  if (envelope.type !== 'struct' || index < 0)
    throw malformed(path, 'not a change-event envelope schema (no before/after)');
  return compileStruct(fields[index]!, `${path}.fields[${index}]`);
}

/**
 * Index just past the JSON object or array starting at byte `i` (no whitespace, as JsonConverter and we
 * write), or -1. Works on UTF-8 bytes: the structural characters are ASCII, and no byte of a multi-byte
 * UTF-8 sequence is.
 */
function skipValue(bytes: Buffer, i: number): number {
  const open = bytes[i];
  if (open !== 123 && open !== 91) return -1;
  let depth = 0;
  const n = bytes.length;
  for (; i < n; i++) {
    const c = bytes[i];
    if (c === 34) {
      for (i++; i < n; i++) {
        const d = bytes[i];
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91) {
      depth++;
    } else if (c === 125 || c === 93) {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

const SCHEMA_HEAD = Buffer.from('{"schema":', 'utf8');
const PAYLOAD_HEAD = Buffer.from(',"payload":', 'utf8');

function startsWithAt(bytes: Buffer, head: Buffer, at: number): boolean {
  return at + head.length <= bytes.length && bytes.compare(head, 0, head.length, at, at + head.length) === 0;
}

/** Where the schema and the payload of `{"schema":S,"payload":P}` are in a record's bytes. */
export interface SchemaPayloadSplit<T> {
  /** The compiled schema S. */
  readonly plan: T;
  /** Byte range of the payload P. */
  readonly payloadStart: number;
  readonly payloadEnd: number;
}

/**
 * Splits `{"schema":S,"payload":P}` and compiles S (once per distinct S, through `cache`), or returns
 * undefined when the bytes have another layout (the caller then parses them whole). A record whose S
 * equals, byte for byte, one seen recently costs a memory compare: neither decoded, hashed nor parsed.
 */
export function splitSchemaPayload<T>(
  bytes: Buffer,
  cache: SchemaCache<T>,
  compile: (schemaText: string) => T,
): SchemaPayloadSplit<T> | undefined {
  const n = bytes.length;
  if (bytes[n - 1] !== 125 || !startsWithAt(bytes, SCHEMA_HEAD, 0)) return undefined;
  const start = SCHEMA_HEAD.length;
  const known = cache.match(bytes, start, PAYLOAD_HEAD);
  if (known !== undefined) {
    const payloadStart = start + known.bytes.length + PAYLOAD_HEAD.length;
    return { plan: known.plan, payloadStart, payloadEnd: n - 1 };
  }
  const end = skipValue(bytes, start);
  if (end < 0 || !startsWithAt(bytes, PAYLOAD_HEAD, end)) return undefined;
  const schemaBytes = bytes.subarray(start, end);
  const plan = cache.get(schemaBytes.toString('utf8'), compile);
  // A copy: the record's bytes are a view into a fetched batch that must not stay alive for this.
  cache.remember(Buffer.from(schemaBytes), plan);
  return { plan, payloadStart: end + PAYLOAD_HEAD.length, payloadEnd: n - 1 };
}

/** A schema's exact bytes and its compiled plan. */
interface KnownSchema<T> {
  readonly bytes: Buffer;
  readonly plan: T;
}

/** Schemas compared byte for byte before any other lookup (a handful of tables is the common case). */
const RECENT_SCHEMAS = 16;

/**
 * A bounded cache of compiled schemas keyed by their JSON text, with the most recently used schemas'
 * bytes for {@link splitSchemaPayload}'s compare-only fast path.
 */
export class SchemaCache<T> {
  readonly #entries = new Map<string, T>();
  readonly #limit: number;
  /** Most recently used first. */
  readonly #recent: KnownSchema<T>[] = [];

  constructor(limit = 1024) {
    this.#limit = limit;
  }

  get(schemaText: string, compile: (schemaText: string) => T): T {
    let entry = this.#entries.get(schemaText);
    if (entry === undefined) {
      entry = compile(schemaText);
      if (this.#entries.size >= this.#limit) this.#entries.clear();
      this.#entries.set(schemaText, entry);
    }
    return entry;
  }

  /** The recent schema whose bytes start at `bytes[at]` and are followed by `next`, if any. */
  match(bytes: Buffer, at: number, next: Buffer): KnownSchema<T> | undefined {
    const recent = this.#recent;
    for (let i = 0; i < recent.length; i++) {
      const known = recent[i]!;
      const end = at + known.bytes.length;
      if (
        end + next.length <= bytes.length &&
        bytes[end] === next[0] &&
        bytes.compare(known.bytes, 0, known.bytes.length, at, end) === 0 &&
        bytes.compare(next, 0, next.length, end, end + next.length) === 0
      ) {
        if (i > 0) {
          recent[i] = recent[0]!;
          recent[0] = known;
        }
        return known;
      }
    }
    return undefined;
  }

  remember(bytes: Buffer, plan: T): void {
    this.#recent.unshift({ bytes, plan });
    if (this.#recent.length > RECENT_SCHEMAS) this.#recent.pop();
  }
}
