/**
 * Decodes Kafka records carrying Debezium change events — ours ({@link ./envelope.ts}) and the real
 * Debezium PostgreSQL connector's (2.x, 3.x) — into the {@link ChangeEvent} model the applier consumes.
 *
 * Records must be Kafka Connect JsonConverter output with `schemas.enable=true`: the schema is what
 * says how a payload value maps back to a PostgreSQL text literal (an int64 may be a bigint, a
 * MicroTimestamp or a MicroDuration). pgbisync's own schemaless records are the exception: the caller
 * passes the schema they name (events/schema-store.ts). Each distinct schema text is compiled once
 * ({@link SchemaCache}); per record only the payload is parsed, and the schema is split off by a byte
 * compare when it equals a recently seen one (JsonConverter writes `{"schema":S,"payload":P}` without
 * whitespace).
 *
 * Payloads are parsed by plain JSON.parse (several times faster than with a reviver). An integer beyond
 * ±2^53 loses precision there, so wherever the decoder reads a number that may have been rounded it
 * starts over on that record with {@link parseJson}, which keeps such integers exact as bigint: the
 * result is always the exact one, and the slow parse is paid only by records that need it (an unread
 * field such as ts_ns never does).
 *
 * Everything that is not a well-formed change event throws {@link MalformedInputError} whose message
 * starts with the offending field's path (`value.payload.after.price: cannot convert the value`, the
 * column decoder's `expected ..., got ...` as its cause). A column whose schema has no PostgreSQL
 * mapping throws FatalError TYPE_UNSUPPORTED (an operator must reconfigure the producer or exclude the
 * column; see docs/type-mapping.md).
 */
import type { MalformedInputError } from '../runtime/errors.ts';
import type {
  ChangeEvent,
  ChangeOp,
  ColumnValue,
  DecodedRecord,
  EventSource,
  EventTransaction,
  TombstoneEvent,
} from './change-event.ts';
import { UNCHANGED } from './change-event.ts';
import { isInteger, type JsonObject, type JsonValue, parseJson } from './connect-schema.ts';
import {
  type CompiledStruct,
  compileEnvelope,
  compileStruct,
  isObject,
  malformed,
  readSchema,
  SchemaCache,
  splitSchemaPayload,
} from './decode-schema.ts';

const OPS: ReadonlySet<string> = new Set<ChangeOp>(['c', 'u', 'd', 'r', 't']);

/** Schemaless values' compiled schemas kept (one per relation version seen recently). */
const MAX_IMPLIED_PLANS = 256;

/**
 * Thrown (never outside this module) when a plainly parsed payload holds a number that may have lost
 * precision where the decoder reads it: the record is then decoded again from an exact parse.
 */
class InexactNumber extends Error {}
const INEXACT = new InexactNumber('a number needs an exact parse');

/** True for an integer-valued double outside ±2^53 (anywhere inside `value`): it may have been rounded. */
function mayBeRounded(value: JsonValue): boolean {
  if (typeof value === 'number') return !Number.isSafeInteger(value) && Number.isInteger(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return (value as readonly JsonValue[]).some(mayBeRounded);
  return Object.values(value as JsonObject).some(mayBeRounded);
}

/**
 * A record part: `envelope` is `{"schema":S,"payload":P}` with `plan` compiled from S (null when S is
 * JSON null); `bare` is any other JSON, all of it the payload (a schemaless key).
 */
interface Parsed<T> {
  readonly form: 'envelope' | 'bare';
  readonly plan: T | null;
  readonly payload: JsonValue;
}

/**
 * Decodes records of any number of topics and tables. Keeps a bounded cache of compiled schemas, so
 * one instance per consumer is the fast path; it holds no other state and never blocks.
 */
export class EventDecoder {
  readonly #values = new SchemaCache<CompiledStruct>();
  readonly #keys = new SchemaCache<CompiledStruct>();
  /** Plans of schemaless values' schemas, by schema text. */
  readonly #implied = new Map<string, CompiledStruct>();

  /**
   * Decodes one record. A null value is a tombstone. Throws {@link MalformedInputError} naming the
   * field path for anything malformed, never a TypeError. `valueSchema`: the envelope schema (JSON text)
   * of a value that carries none (pgbisync's schemaless events, see events/schema-store.ts); a value with
   * its own schema is read by that one.
   */
  decode(key: Buffer | null, value: Buffer | null, valueSchema?: string): DecodedRecord {
    try {
      return this.#decode(key, value, valueSchema, false);
    } catch (error) {
      if (error !== INEXACT) throw error;
      return this.#decode(key, value, valueSchema, true);
    }
  }

  /** `exact`: parse payloads keeping big integers exact; else a possibly rounded number throws INEXACT. */
  #decode(
    key: Buffer | null,
    value: Buffer | null,
    valueSchema: string | undefined,
    exact: boolean,
  ): DecodedRecord {
    if (value === null) return this.#tombstone(key, exact);
    let parsed = parsePart(value, 'value', this.#values, compileEnvelope, exact);
    if (parsed.plan === null && parsed.form === 'bare' && valueSchema !== undefined) {
      parsed = { form: 'envelope', plan: this.#impliedPlan(valueSchema), payload: parsed.payload };
    }
    if (parsed.plan === null) {
      if (parsed.form === 'bare' && isObject(parsed.payload) && 'schema' in parsed.payload) {
        throw malformed('value.payload', 'missing');
      }
      throw malformed(
        'value.schema',
        'missing: change events must be written by JsonConverter with schemas.enable=true',
      );
    }
    const row = parsed.plan;
    const payload = parsed.payload;
    if (!isObject(payload)) throw malformed('value.payload', 'must be a change-event envelope object');
    const op = payload.op;
    if (typeof op !== 'string' || !OPS.has(op)) {
      throw malformed('value.payload.op', `unknown op ${describe(op)} (expected c, u, d, r or t)`);
    }
    const before = decodeRow(row, payload.before, 'value.payload.before', exact);
    const after = decodeRow(row, payload.after, 'value.payload.after', exact);
    const { source, schema, table } = readSource(payload.source, exact);
    const transaction = readTransaction(payload.transaction, exact);
    const keyColumns = key === null ? null : this.#key(key, after ?? before, exact);
    if ((op === 'c' || op === 'r' || op === 'u') && after === null) {
      throw malformed('value.payload.after', `op '${op}' requires an after row`);
    }
    if (op === 'd' && before === null && keyColumns === null) {
      throw malformed('value.payload.before', `op 'd' requires a before row or a record key`);
    }
    return {
      kind: 'change',
      op: op as ChangeOp,
      schema,
      table,
      key: keyColumns,
      before,
      after,
      source,
      transaction,
    } satisfies ChangeEvent;
  }

  #impliedPlan(schemaText: string): CompiledStruct {
    let plan = this.#implied.get(schemaText);
    if (plan === undefined) {
      plan = compileEnvelope(parseText(schemaText, 'value.schema', true), 'value.schema');
      if (this.#implied.size >= MAX_IMPLIED_PLANS) this.#implied.clear();
      this.#implied.set(schemaText, plan);
    }
    return plan;
  }

  #tombstone(key: Buffer | null, exact: boolean): TombstoneEvent {
    if (key === null) return { kind: 'tombstone', key: null, keySchemaName: null };
    const parsed = parsePart(key, 'key', this.#keys, compileKey, exact);
    if (parsed.plan === null) return { kind: 'tombstone', key: null, keySchemaName: null };
    return {
      kind: 'tombstone',
      key: decodeKey(parsed.plan, parsed.payload, exact),
      keySchemaName: parsed.plan.name,
    };
  }

  /** The key's columns: typed by the key schema, or (schemaless key) taken from the row by name. */
  #key(
    key: Buffer,
    row: ReadonlyMap<string, ColumnValue> | null,
    exact: boolean,
  ): ReadonlyMap<string, string | null> | null {
    const parsed = parsePart(key, 'key', this.#keys, compileKey, exact);
    if (parsed.plan !== null) return decodeKey(parsed.plan, parsed.payload, exact);
    const payload = parsed.payload;
    if (payload === null) return null;
    if (!isObject(payload)) throw malformed('key.payload', 'must be an object of key columns');
    const out = new Map<string, string | null>();
    for (const name of Object.keys(payload)) {
      const value = row?.get(name);
      if (value === undefined || value === UNCHANGED) {
        throw malformed(
          `key.payload${fieldPath(name)}`,
          'a key without a schema needs the column in the before/after row',
        );
      }
      out.set(name, value);
    }
    return out;
  }
}

const shared = new EventDecoder();

/** Decodes one record with a process-wide {@link EventDecoder}. See {@link EventDecoder.decode}. */
export function decodeRecord(key: Buffer | null, value: Buffer | null, valueSchema?: string): DecodedRecord {
  return shared.decode(key, value, valueSchema);
}

function compileKey(node: JsonValue, path: string): CompiledStruct {
  return compileStruct(readSchema(node, path), path);
}

function parseText(text: string, path: string, exact: boolean): JsonValue {
  try {
    return exact ? parseJson(text) : (JSON.parse(text) as JsonValue);
  } catch (cause) {
    throw malformed(path, 'not valid JSON', cause);
  }
}

/**
 * Parses `{"schema":S,"payload":P}`. Fast path: split the bytes and compile S once per distinct text.
 * Other layouts (whitespace, other key order) are parsed whole and compiled uncached. A part that is
 * not such an object, or whose schema is null, is schemaless: plan null, the whole JSON is the payload.
 */
function parsePart(
  bytes: Buffer,
  part: 'key' | 'value',
  cache: SchemaCache<CompiledStruct>,
  compile: (node: JsonValue, path: string) => CompiledStruct,
  exact: boolean,
): Parsed<CompiledStruct> {
  if (bytes.length === 0) throw malformed(part, 'empty (a tombstone has a null value, not an empty one)');
  const schemaPath = `${part}.schema`;
  const split = splitSchemaPayload(bytes, cache, (schemaText) =>
    compile(parseText(schemaText, schemaPath, true), schemaPath),
  );
  if (split !== undefined) {
    const payloadText = bytes.toString('utf8', split.payloadStart, split.payloadEnd);
    return { form: 'envelope', plan: split.plan, payload: parseText(payloadText, `${part}.payload`, exact) };
  }
  const whole = parseText(bytes.toString('utf8'), part, exact);
  if (!isObject(whole) || !('schema' in whole) || !('payload' in whole)) {
    return { form: 'bare', plan: null, payload: whole };
  }
  const schema = whole.schema ?? null;
  return {
    form: 'envelope',
    plan: schema === null ? null : compile(schema, schemaPath),
    payload: whole.payload ?? null,
  };
}

/** before/after: null (absent or JSON null) or every column of the value schema, decoded. */
function decodeRow(
  plan: CompiledStruct,
  node: JsonValue | undefined,
  path: string,
  exact: boolean,
): ReadonlyMap<string, ColumnValue> | null {
  if (node === undefined || node === null) return null;
  if (!isObject(node)) throw malformed(path, 'must be an object or null');
  const out = new Map<string, ColumnValue>();
  for (const { name, decoder } of plan.columns) {
    const value = own(node, name);
    if (value === undefined) throw missingColumn(path, name);
    if (!exact && mayBeRounded(value)) throw INEXACT;
    if (value === null) out.set(name, null);
    else if (decoder.isUnavailable(value)) out.set(name, UNCHANGED);
    else out.set(name, toText(decoder.toText, value, path, name));
  }
  return out;
}

function decodeKey(
  plan: CompiledStruct,
  payload: JsonValue,
  exact: boolean,
): ReadonlyMap<string, string | null> {
  if (!isObject(payload)) throw malformed('key.payload', 'must be an object of key columns');
  const out = new Map<string, string | null>();
  for (const { name, decoder } of plan.columns) {
    const value = own(payload, name);
    if (value === undefined) throw missingColumn('key.payload', name);
    if (!exact && mayBeRounded(value)) throw INEXACT;
    if (value === null) out.set(name, null);
    else if (decoder.isUnavailable(value)) {
      throw malformed(`key.payload${fieldPath(name)}`, 'a key column cannot be an unavailable (TOAST) value');
    } else out.set(name, toText(decoder.toText, value, 'key.payload', name));
  }
  return out;
}

function toText(convert: (value: JsonValue) => string, value: JsonValue, path: string, name: string): string {
  try {
    return convert(value);
  } catch (cause) {
    // The decoder's error says what is wrong with the value ('expected ..., got ...'); this one where.
    throw malformed(`${path}${fieldPath(name)}`, 'cannot convert the value', cause);
  }
}

function missingColumn(path: string, name: string): MalformedInputError {
  return malformed(`${path}${fieldPath(name)}`, 'missing (the schema declares this field)');
}

function readSource(
  node: JsonValue | undefined,
  exact: boolean,
): {
  source: EventSource;
  schema: string;
  table: string;
} {
  const path = 'value.payload.source';
  if (!isObject(node)) throw malformed(path, 'must be an object');
  return {
    source: {
      version: string(node, 'version', path),
      connector: string(node, 'connector', path),
      name: string(node, 'name', path),
      db: string(node, 'db', path),
      tsUs: commitTimeUs(node, path, exact),
      snapshot: snapshot(node.snapshot, `${path}.snapshot`),
      txId: optionalInteger(node, 'txId', path, exact),
      lsn: optionalInteger(node, 'lsn', path, exact),
      sequence: optionalString(node, 'sequence', path),
    },
    schema: string(node, 'schema', path),
    table: string(node, 'table', path),
  };
}

/** ts_us (Debezium 2.6+ and us), else ts_ms * 1000 (older connectors). */
function commitTimeUs(node: JsonObject, path: string, exact: boolean): bigint {
  const us = optionalInteger(node, 'ts_us', path, exact);
  if (us !== null) return us;
  const ms = optionalInteger(node, 'ts_ms', path, exact);
  if (ms === null) throw malformed(`${path}.ts_ms`, 'missing (neither ts_us nor ts_ms is set)');
  return ms * 1000n;
}

/** A string marker ('true', 'last', 'incremental'...); old connectors and Debezium's docs use booleans. */
function snapshot(value: JsonValue | undefined, path: string): string {
  if (value === undefined || value === null) return 'false';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  throw malformed(path, `expected a snapshot marker string, got ${describe(value)}`);
}

function readTransaction(node: JsonValue | undefined, exact: boolean): EventTransaction | null {
  const path = 'value.payload.transaction';
  if (node === undefined || node === null) return null;
  if (!isObject(node)) throw malformed(path, 'must be an object or null');
  return {
    id: string(node, 'id', path),
    totalOrder: integer(node, 'total_order', path, exact),
    dataCollectionOrder: integer(node, 'data_collection_order', path, exact),
  };
}

function string(node: JsonObject, field: string, path: string): string {
  const value = node[field];
  if (typeof value !== 'string')
    throw malformed(`${path}.${field}`, `expected a string, got ${describe(value)}`);
  return value;
}

function optionalString(node: JsonObject, field: string, path: string): string | null {
  const value = node[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string')
    throw malformed(`${path}.${field}`, `expected a string, got ${describe(value)}`);
  return value;
}

function integer(node: JsonObject, field: string, path: string, exact: boolean): bigint {
  const value = optionalInteger(node, field, path, exact);
  if (value === null) throw malformed(`${path}.${field}`, 'missing');
  return value;
}

function optionalInteger(node: JsonObject, field: string, path: string, exact: boolean): bigint | null {
  const value = node[field];
  if (value === undefined || value === null) return null;
  if (!exact && mayBeRounded(value)) throw INEXACT;
  if (!isInteger(value)) throw malformed(`${path}.${field}`, `expected an integer, got ${describe(value)}`);
  return BigInt(value);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** `.name`, or `["odd name"]` when the column name is not a plain identifier. */
function fieldPath(name: string): string {
  return IDENTIFIER.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`;
}

function describe(value: JsonValue | undefined): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

/** The payload's own field (never an inherited one such as `constructor` for a column of that name). */
function own(node: JsonObject, name: string): JsonValue | undefined {
  return Object.hasOwn(node, name) ? node[name] : undefined;
}
