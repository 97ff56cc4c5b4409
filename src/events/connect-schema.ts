/**
 * Kafka Connect schemas as Kafka's JsonConverter writes them (`schemas.enable=true`), and the codec
 * contracts shared by every type family.
 *
 * JsonConverter (connect/json JsonConverter#asJsonSchema) writes a schema's keys in this order:
 * `type`, then `items` (array) / `keys`,`values` (map) / `fields` (struct), then `optional`, `name`,
 * `version`, `doc`, `parameters`, `default`; a struct field appends `field` last. Type names are
 * lowercase, with FLOAT32 -> "float" and FLOAT64 -> "double". {@link schemaJson} follows that order
 * so our bytes match the real connector's.
 */
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';

export type ConnectType =
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float'
  | 'double'
  | 'boolean'
  | 'string'
  | 'bytes'
  | 'array'
  | 'map'
  | 'struct';

/** A Connect schema. `optional` is decided by the place the schema is used (see {@link schemaJson}). */
export interface ConnectSchema {
  readonly type: ConnectType;
  readonly optional?: boolean;
  readonly name?: string;
  readonly version?: number;
  readonly doc?: string;
  readonly parameters?: Readonly<Record<string, string>>;
  /** The default value as JSON text. */
  readonly defaultJson?: string;
  /** Array element schema. */
  readonly items?: ConnectSchema;
  /** Map key and value schemas. */
  readonly keys?: ConnectSchema;
  readonly values?: ConnectSchema;
  /** Struct fields, in order. */
  readonly fields?: readonly ConnectField[];
}

export interface ConnectField extends ConnectSchema {
  readonly field: string;
}

/**
 * A parsed JSON value as the decoder sees it: integers outside ±2^53 arrive as bigint (see
 * {@link parseJson}) so int64 values stay exact.
 */
export type JsonValue = null | boolean | number | bigint | string | readonly JsonValue[] | JsonObject;
export interface JsonObject {
  readonly [key: string]: JsonValue;
}

/** Serializes a schema in JsonConverter's key order. `optional` overrides the schema's own flag. */
export function schemaJson(
  schema: ConnectSchema,
  optional = schema.optional ?? false,
  field?: string,
): string {
  let out = `{"type":"${schema.type}"`;
  if (schema.type === 'array' && schema.items !== undefined) {
    out += `,"items":${schemaJson(schema.items)}`;
  } else if (schema.type === 'map' && schema.keys !== undefined && schema.values !== undefined) {
    out += `,"keys":${schemaJson(schema.keys)},"values":${schemaJson(schema.values)}`;
  } else if (schema.type === 'struct') {
    out += `,"fields":[${(schema.fields ?? []).map((f) => schemaJson(f, f.optional ?? false, f.field)).join(',')}]`;
  }
  out += `,"optional":${optional}`;
  if (schema.name !== undefined) out += `,"name":${JSON.stringify(schema.name)}`;
  if (schema.version !== undefined) out += `,"version":${schema.version}`;
  if (schema.doc !== undefined) out += `,"doc":${JSON.stringify(schema.doc)}`;
  if (schema.parameters !== undefined) out += `,"parameters":${JSON.stringify(schema.parameters)}`;
  if (schema.defaultJson !== undefined) out += `,"default":${schema.defaultJson}`;
  if (field !== undefined) out += `,"field":${JSON.stringify(field)}`;
  return `${out}}`;
}

/**
 * Debezium's default `unavailable.value.placeholder`: emitted in place of an unchanged TOASTed value
 * that the WAL record does not carry. The applier leaves such a column unchanged.
 */
export const UNAVAILABLE_PLACEHOLDER = '__debezium_unavailable_value';
/** The placeholder's UTF-8 bytes, base64: what Debezium emits for a BYTES column. */
export const UNAVAILABLE_PLACEHOLDER_BASE64 = Buffer.from(UNAVAILABLE_PLACEHOLDER, 'utf8').toString('base64');
/** The placeholder's bytes as numbers: what Debezium emits for an int2/int4/int8/oid array column. */
export const UNAVAILABLE_PLACEHOLDER_CODES: readonly number[] = [
  ...Buffer.from(UNAVAILABLE_PLACEHOLDER, 'utf8'),
];
/** JSON text of the string placeholder. */
export const UNAVAILABLE_JSON = JSON.stringify(UNAVAILABLE_PLACEHOLDER);

/** Capture side of one column type, chosen once per relation column. */
export interface FieldCodec {
  /** The field's Connect schema (optional-ness is set by the envelope). */
  readonly schema: ConnectSchema;
  /**
   * PostgreSQL text output -> JSON text of the payload value. Hot path: no allocation beyond the
   * result string where possible. Throws {@link MalformedInputError} (PGOUTPUT_MALFORMED) when the
   * text is not what the type's output function produces.
   */
  readonly toJson: (text: string) => string;
  /** JSON text emitted for an unchanged TOASTed value of this column. */
  readonly unavailableJson: string;
}

/** Apply side of one Connect field schema. */
export interface FieldDecoder {
  /** Payload value (never null) -> PostgreSQL text literal, to bind as `$n::<column type>`. */
  readonly toText: (value: JsonValue) => string;
  /** True when the value is the unchanged-TOAST placeholder for this schema. */
  readonly isUnavailable: (value: JsonValue) => boolean;
}

/** Thrown by converters; the caller adds the field path. */
export function badText(what: string, text: string): MalformedInputError {
  const shown = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return new MalformedInputError(`invalid ${what} text ${JSON.stringify(shown)}`, {
    code: ErrorCode.PGOUTPUT_MALFORMED,
  });
}

/** Thrown by decoders; the caller adds the field path. */
export function badValue(what: string, value: unknown): MalformedInputError {
  let shown: string;
  try {
    shown = typeof value === 'bigint' ? value.toString() : (JSON.stringify(value) ?? String(value));
  } catch {
    shown = String(value);
  }
  if (shown.length > 80) shown = `${shown.slice(0, 80)}...`;
  return new MalformedInputError(`expected ${what}, got ${shown}`, { code: ErrorCode.EVENT_MALFORMED });
}

/**
 * JSON.parse that keeps integers beyond ±2^53 exact (as bigint), using the reviver's source text
 * (V8's JSON.parse source text access, Node 21+).
 */
export function parseJson(text: string): JsonValue {
  return JSON.parse(text, exactIntegers) as JsonValue;
}

const INTEGER = /^-?\d+$/;
function exactIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined) {
    if (INTEGER.test(context.source)) return BigInt(context.source);
  }
  return value;
}

/** Standard padded base64 (what Jackson writes for BYTES). */
export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** True for a JSON integer (number or bigint). */
export function isInteger(value: JsonValue): value is number | bigint {
  return typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
}
