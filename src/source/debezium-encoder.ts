/**
 * The Debezium implementation of the {@link ChangeEncoder} port: capture's positions mapped onto
 * {@link EventEncoder}'s `source` and `transaction` blocks.
 *
 * Mapping of {@link SourcePosition}: lsn -> source.lsn; txId -> source.txId; commitTimeUs ->
 * source.ts_ms / ts_us / ts_ns; snapshot -> source.snapshot; `[commitLsn, lsn]` -> source.sequence
 * (Debezium's `["<last committed LSN>","<LSN>"]` string). Our commitLsn is the commit LSN of the
 * event's own transaction rather than of the one before it: it still grows with every transaction,
 * which is what consumers of `sequence` rely on for ordering and deduplication.
 *
 * An update is always one `u` record, also when the key changed (Debezium emits delete + tombstone +
 * create then): `before` carries the old key, from which the applier deletes the old row.
 */

import {
  type EventContext,
  EventEncoder,
  type RelationEncoder as EventRelationEncoder,
  type EventSchema,
} from '../events/envelope.ts';
import type { TypeRegistry } from '../events/pg-types.ts';
import type { TypeHandling } from '../events/type-handling.ts';
import { BASE_WIRE_VERSION, ENCODED_STRINGS_WIRE_VERSION } from '../kafka/wire-headers.ts';
import type { RelationMessage, Tuple, TypeMessage } from '../pg/pgoutput/messages.ts';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import type {
  ChangeEncoder,
  ChangeOp,
  EncodedRecord,
  RelationEncoder,
  SourcePosition,
  TransactionPosition,
} from './change-encoder.ts';

export interface DebeziumChangeEncoderOptions {
  /** Logical server name: topic and schema-name prefix and source.name, e.g. 'pgbisync.db1'. */
  readonly serverName: string;
  /** source.db */
  readonly database: string;
  /**
   * JsonConverter `schemas.enable`. Default true. False: records without schemas, each naming its
   * schema in a header (see RelationEncoder.schema); pgbisync's applier reads it from the source.
   */
  readonly schemas?: boolean;
  /** source.version, e.g. 'pgbisync-0.1.0'. */
  readonly connectorVersion: string;
  /**
   * Catalog facts of enums and domains (see CUSTOM_TYPE_QUERY). pgoutput's Type messages name a
   * type but not its kind, so without a registry such columns use the plain-string fallback.
   */
  readonly registry?: TypeRegistry;
  /** The connector's type-handling options (`capture.types`); unset ones take pgbisync's defaults. */
  readonly types?: Partial<TypeHandling>;
  /** Processing time (envelope ts_ms/ts_us/ts_ns) in epoch microseconds; default the wall clock. */
  readonly clockUs?: () => number;
}

/** Encodes capture's changes as Debezium PostgreSQL connector events (Kafka Connect JSON). */
export class DebeziumChangeEncoder implements ChangeEncoder {
  readonly #encoder: EventEncoder;

  constructor(options: DebeziumChangeEncoderOptions) {
    this.#encoder = new EventEncoder({
      serverName: options.serverName,
      database: options.database,
      connectorVersion: options.connectorVersion,
      ...(options.schemas === undefined ? {} : { schemas: options.schemas }),
      ...(options.registry === undefined ? {} : { registry: options.registry }),
      ...(options.types === undefined ? {} : { types: options.types }),
      ...(options.clockUs === undefined ? {} : { clockUs: options.clockUs }),
    });
  }

  useCatalog(registry: TypeRegistry): void {
    this.#encoder.useRegistry(registry);
  }

  /**
   * `types` is not consulted: a Type message carries no kind, and unknown types already map to the
   * string fallback. Enums and domains are typed through the `registry` option.
   */
  forRelation(relation: RelationMessage, _types: ReadonlyMap<number, TypeMessage>): RelationEncoder {
    return new DebeziumRelationEncoder(this.#encoder.compile(relation));
  }
}

class DebeziumRelationEncoder implements RelationEncoder {
  readonly #encoder: EventRelationEncoder;
  readonly schema: EventSchema | undefined;
  readonly wireVersion: number;

  constructor(encoder: EventRelationEncoder) {
    this.#encoder = encoder;
    this.schema = encoder.schema;
    this.wireVersion = encoder.namesEncoding ? ENCODED_STRINGS_WIRE_VERSION : BASE_WIRE_VERSION;
  }

  change(
    op: ChangeOp,
    before: Tuple | undefined,
    after: Tuple | undefined,
    source: SourcePosition,
    transaction: TransactionPosition,
  ): EncodedRecord {
    const ctx = context(source, transaction);
    switch (op) {
      case 'c':
        return this.#encoder.create(this.#require(after, op, 'new'), ctx);
      case 'r':
        return this.#encoder.read(this.#require(after, op, 'new'), ctx);
      case 'u':
        return this.#encoder.update(before, this.#require(after, op, 'new'), ctx);
      case 'd':
        return this.#encoder.delete(this.#require(before, op, 'old'), ctx);
      default:
        return op satisfies never;
    }
  }

  tombstone(before: Tuple): EncodedRecord {
    return this.#encoder.tombstone(before);
  }

  truncate(source: SourcePosition, transaction: TransactionPosition): EncodedRecord {
    return this.#encoder.truncate(context(source, transaction));
  }

  #require(tuple: Tuple | undefined, op: ChangeOp, which: 'old' | 'new'): Tuple {
    if (tuple !== undefined) return tuple;
    const { schema, table } = this.#encoder.relation;
    throw new MalformedInputError(`${schema}.${table}: op '${op}' without the ${which} tuple`, {
      code: ErrorCode.PGOUTPUT_MALFORMED,
    });
  }
}

function context(source: SourcePosition, transaction: TransactionPosition): EventContext {
  const ctx: EventContext = {
    lsn: source.lsn,
    txId: source.txId,
    commitTimeUs: source.commitTimeUs,
    snapshot: source.snapshot,
    sequence: [source.commitLsn, source.lsn],
    transaction: {
      id: transaction.id,
      totalOrder: transaction.totalOrder,
      dataCollectionOrder: transaction.dataCollectionOrder,
    },
  };
  return source.origin === undefined
    ? ctx
    : { ...ctx, origin: source.origin, originLsn: source.originLsn ?? null };
}
