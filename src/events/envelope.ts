/**
 * Builds Debezium change events (key + value, Kafka Connect JsonConverter bytes) from pgoutput tuples.
 *
 * Per relation version everything constant is prepared once ({@link EventEncoder.compile}): the
 * column codecs, the key and envelope schema JSON (as UTF-8 bytes), the quoted field names. Encoding an
 * event is then string concatenation of the payload's pieces and each column's JSON text, and one
 * buffer holding the schema bytes, copied, followed by the payload's UTF-8 (the schema, most of a
 * record's bytes, is never re-encoded).
 *
 * Debezium semantics kept here: `before` is null for an insert and for an update without old values
 * (REPLICA IDENTITY DEFAULT, key unchanged); unchanged TOASTed values become the
 * `__debezium_unavailable_value` placeholder; a truncate has a null key; a delete is followed by a
 * tombstone (key, null value) when the caller emits one. A key change is one update whose `before`
 * holds the old key, not Debezium's delete + tombstone + create (see ../source/debezium-encoder.ts).
 */
import { createHash } from 'node:crypto';
import type { RelationMessage, Tuple, TupleValue } from '../pg/pgoutput/messages.ts';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import { type ConnectSchema, type FieldCodec, UNAVAILABLE_JSON } from './connect-schema.ts';
import { envelopeSchemaJson, keySchemaJson, type SnapshotMarker } from './envelope-schema.ts';
import type { TypeRegistry } from './pg-types.ts';
import { codecForColumn, type TypeMappingOptions } from './type-mapping.ts';
import { ENCODING_PARAMETER } from './types-modes.ts';

export interface EncoderOptions extends TypeMappingOptions {
  /** source.version, e.g. 'pgbisync-0.1.0'. */
  readonly connectorVersion: string;
  /** Logical server name / topic prefix (source.name and schema-name prefix), e.g. 'pgbisync.db1'. */
  readonly serverName: string;
  /** source.db */
  readonly database: string;
  /** false: schemaless (`schemas.enable=false`), the payload only. Default true. */
  readonly schemas?: boolean;
  /** Processing time in epoch microseconds for the envelope's ts_ms/ts_us/ts_ns. Default: wall clock. */
  readonly clockUs?: () => number;
}

/** Where and when a change happened: the `source` and `transaction` blocks. */
export interface EventContext {
  /** LSN of the change (source.lsn). */
  readonly lsn: bigint;
  readonly txId: number | bigint | null;
  /** Commit time, epoch microseconds (source.ts_ms / ts_us / ts_ns). */
  readonly commitTimeUs: bigint;
  /** Default 'false' (streaming). */
  readonly snapshot?: SnapshotMarker;
  /** source.sequence: [last committed LSN, current LSN], as Debezium's PostgreSQL connector fills it. */
  readonly sequence?: readonly [bigint | null, bigint | null];
  readonly transaction?: TransactionBlock | null;
  /** source.origin / source.origin_lsn: the replication origin of a replicated transaction. */
  readonly origin?: string | null;
  readonly originLsn?: bigint | null;
}

export interface TransactionBlock {
  readonly id: string;
  readonly totalOrder: number | bigint;
  readonly dataCollectionOrder: number | bigint;
}

/** One Kafka record. `value` null is a tombstone; `key` null means no key (truncate, keyless table). */
export interface KafkaRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/** Encodes change events for any number of relations; holds the per-connector constants. */
export class EventEncoder {
  #options: EncoderOptions;
  readonly #sourcePrefix: string;

  constructor(options: EncoderOptions) {
    this.#options = options;
    this.#sourcePrefix = `{"version":${JSON.stringify(options.connectorVersion)},"connector":"postgresql","name":${JSON.stringify(options.serverName)},"ts_ms":`;
  }

  /** Types relations compiled from now on with these catalog facts (enums, domains, hstore). */
  useRegistry(registry: TypeRegistry): void {
    this.#options = { ...this.#options, registry };
  }

  /** Prepares a relation (once per Relation message); its key is the columns flagged as key. */
  compile(relation: RelationMessage): RelationEncoder {
    return new RelationEncoder(relation, this.#options, this.#sourcePrefix);
  }
}

/**
 * The value schema a schemaless record was encoded with: `json` is the envelope schema JsonConverter
 * would have written, `id` a digest of it (named by the record header `pgbisync.schema`, see
 * src/kafka/wire-headers.ts). Capture stores
 * `json` by `id` in the source's pgbisync.event_schemas; an applier reads it from there.
 */
export interface EventSchema {
  readonly id: string;
  readonly json: string;
}

/** The id of a value schema: 16 bytes of its SHA-256, hex. */
export function eventSchemaId(json: string): string {
  return createHash('sha256').update(json).digest('hex').slice(0, 32);
}

/** The compiled plan of one relation version. */
export class RelationEncoder {
  readonly relation: RelationMessage;
  /** Debezium's per-table topic name: `<serverName>.<schema>.<table>`. */
  readonly topic: string;
  /** Set when records are schemaless: the schema they were encoded with. */
  readonly schema: EventSchema | undefined;
  /**
   * A field is a string whose encoding its schema names (`pgbisync.encoding`: bytea as base64 or hex,
   * hstore as JSON), which an applier that does not know the parameter would take for text.
   */
  readonly namesEncoding: boolean;
  readonly #codecs: readonly FieldCodec[];
  readonly #names: readonly string[];
  readonly #fieldPrefixes: readonly string[];
  readonly #keyIndexes: readonly number[];
  /** `{"schema":<schema>,"payload":` of values and keys, and the closing `}` (all empty when schemaless). */
  readonly #valuePrefix: Buffer;
  readonly #keyPrefix: Buffer;
  readonly #suffix: Buffer;
  readonly #sourceMiddle: string;
  readonly #sourcePrefix: string;
  readonly #dbJson: string;
  readonly #clockUs: () => number;

  constructor(relation: RelationMessage, options: EncoderOptions, sourcePrefix: string) {
    this.relation = relation;
    this.topic = `${options.serverName}.${relation.schema}.${relation.table}`;
    this.#codecs = relation.columns.map((c) => codecForColumn(c, options));
    this.namesEncoding = this.#codecs.some((c) => namesEncoding(c.schema));
    this.#names = relation.columns.map((c) => c.name);
    this.#fieldPrefixes = relation.columns.map((c, i) => `${i === 0 ? '' : ','}${JSON.stringify(c.name)}:`);
    const keyIndexes = relation.columns.flatMap((c, i) => (c.isKey ? [i] : []));
    this.#keyIndexes = keyIndexes;
    const columns = relation.columns.map((c, i) => ({
      name: c.name,
      schema: this.#codecs[i]!.schema,
      isKey: c.isKey,
    }));
    const schemas = options.schemas ?? true;
    const valueSchema = envelopeSchemaJson(this.topic, columns);
    this.schema = schemas ? undefined : { id: eventSchemaId(valueSchema), json: valueSchema };
    this.#valuePrefix = Buffer.from(schemas ? `{"schema":${valueSchema},"payload":` : '', 'utf8');
    this.#keyPrefix = Buffer.from(
      schemas
        ? `{"schema":${keySchemaJson(
            this.topic,
            keyIndexes.map((i) => columns[i]!),
          )},"payload":`
        : '',
      'utf8',
    );
    this.#suffix = Buffer.from(schemas ? '}' : '', 'utf8');
    this.#sourcePrefix = sourcePrefix;
    this.#dbJson = JSON.stringify(options.database);
    this.#sourceMiddle = `,"schema":${JSON.stringify(relation.schema)},"table":${JSON.stringify(relation.table)},"txId":`;
    this.#clockUs =
      options.clockUs ?? (() => Math.round((performance.timeOrigin + performance.now()) * 1000));
  }

  /** op 'c'. */
  create(after: Tuple, ctx: EventContext): KafkaRecord {
    return this.#record(this.#key(after), this.#envelope('c', 'null', this.#row(after), ctx));
  }

  /** op 'r' (snapshot read); set ctx.snapshot ('true', 'first', 'last'...). */
  read(after: Tuple, ctx: EventContext): KafkaRecord {
    return this.#record(this.#key(after), this.#envelope('r', 'null', this.#row(after), ctx));
  }

  /** op 'u'. `before` is the old tuple when pgoutput sent one (REPLICA IDENTITY FULL, or the old key). */
  update(before: Tuple | undefined, after: Tuple, ctx: EventContext): KafkaRecord {
    const beforeJson = before === undefined ? 'null' : this.#row(before);
    return this.#record(this.#key(after), this.#envelope('u', beforeJson, this.#row(after), ctx));
  }

  /** op 'd'. `before` is the old key tuple or the whole old row. */
  delete(before: Tuple, ctx: EventContext): KafkaRecord {
    return this.#record(this.#key(before), this.#envelope('d', this.#row(before), 'null', ctx));
  }

  /** The tombstone that follows a delete: the row's key and a null value. */
  tombstone(before: Tuple): KafkaRecord {
    return { key: this.#record(this.#key(before), null).key, value: null };
  }

  /** op 't': null key, no before/after. */
  truncate(ctx: EventContext): KafkaRecord {
    return {
      key: null,
      value: splice(this.#valuePrefix, this.#envelope('t', 'null', 'null', ctx), this.#suffix),
    };
  }

  #record(keyPayload: string | null, valuePayload: string | null): KafkaRecord {
    return {
      key: keyPayload === null ? null : splice(this.#keyPrefix, keyPayload, this.#suffix),
      value: valuePayload === null ? null : splice(this.#valuePrefix, valuePayload, this.#suffix),
    };
  }

  #key(tuple: Tuple): string | null {
    const indexes = this.#keyIndexes;
    if (indexes.length === 0) return null;
    this.#checkArity(tuple);
    let out = '{';
    for (let k = 0; k < indexes.length; k++) {
      const i = indexes[k]!;
      out += `${k === 0 ? '' : ','}${JSON.stringify(this.#names[i])}:${this.#value(tuple[i]!, i)}`;
    }
    return `${out}}`;
  }

  #row(tuple: Tuple): string {
    this.#checkArity(tuple);
    let out = '{';
    const prefixes = this.#fieldPrefixes;
    for (let i = 0; i < prefixes.length; i++) out += prefixes[i]! + this.#value(tuple[i]!, i);
    return `${out}}`;
  }

  #value(value: TupleValue, i: number): string {
    switch (value.kind) {
      case 'text':
        try {
          return this.#codecs[i]!.toJson(value.text);
        } catch (cause) {
          throw this.#error(`column ${this.#names[i]}: cannot encode the value`, cause);
        }
      case 'null':
        return 'null';
      case 'unchanged-toast':
        return this.#codecs[i]?.unavailableJson ?? UNAVAILABLE_JSON;
      default:
        return value satisfies never;
    }
  }

  #envelope(op: string, before: string, after: string, ctx: EventContext): string {
    const nowUs = this.#clockUs();
    const tx = ctx.transaction;
    const transaction =
      tx === undefined || tx === null
        ? 'null'
        : `{"id":${JSON.stringify(tx.id)},"total_order":${tx.totalOrder},"data_collection_order":${tx.dataCollectionOrder}}`;
    const seq = ctx.sequence;
    const sequence =
      seq === undefined
        ? 'null'
        : JSON.stringify(JSON.stringify([seq[0]?.toString() ?? null, seq[1]?.toString() ?? null]));
    const commitUs = ctx.commitTimeUs;
    const origin =
      ctx.origin === undefined || ctx.origin === null
        ? NO_ORIGIN
        : `,"origin":${JSON.stringify(ctx.origin)},"origin_lsn":${ctx.originLsn ?? 'null'}`;
    const source = `${this.#sourcePrefix}${commitUs / 1000n},"snapshot":"${ctx.snapshot ?? 'false'}","db":${this.#dbJson},"sequence":${sequence},"ts_us":${commitUs},"ts_ns":${commitUs * 1000n}${this.#sourceMiddle}${ctx.txId ?? 'null'},"lsn":${ctx.lsn},"xmin":null${origin}}`;
    return `{"before":${before},"after":${after},"source":${source},"transaction":${transaction},"op":"${op}","ts_ms":${Math.floor(nowUs / 1000)},"ts_us":${nowUs},"ts_ns":${nanosJson(nowUs)}}`;
  }

  #checkArity(tuple: Tuple): void {
    if (tuple.length !== this.#codecs.length) {
      throw this.#error(`tuple has ${tuple.length} columns, relation has ${this.#codecs.length}`);
    }
  }

  #error(message: string, cause?: unknown): MalformedInputError {
    return new MalformedInputError(`${this.relation.schema}.${this.relation.table}: ${message}`, {
      code: ErrorCode.PGOUTPUT_MALFORMED,
      cause,
    });
  }
}

function namesEncoding(schema: ConnectSchema): boolean {
  if (schema.parameters?.[ENCODING_PARAMETER] !== undefined) return true;
  return schema.items !== undefined && namesEncoding(schema.items);
}

/** source.origin and origin_lsn of a local write. */
const NO_ORIGIN = ',"origin":null,"origin_lsn":null';

/** `prefix` + the UTF-8 of `payload` + `suffix` in one new buffer. */
function splice(prefix: Buffer, payload: string, suffix: Buffer): Buffer {
  const payloadBytes = Buffer.byteLength(payload, 'utf8');
  const out = Buffer.allocUnsafe(prefix.length + payloadBytes + suffix.length);
  prefix.copy(out, 0);
  out.write(payload, prefix.length, payloadBytes, 'utf8');
  suffix.copy(out, prefix.length + payloadBytes);
  return out;
}

/**
 * Microseconds -> nanoseconds as JSON integer text. Appending "000" is exact beyond 2^53 where a
 * multiplication in doubles is not; zero must stay "0" (a leading zero is not JSON).
 */
function nanosJson(us: number): string {
  return us === 0 ? '0' : `${us}000`;
}
