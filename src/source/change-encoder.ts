/**
 * The port between capture and the event format: turns decoded pgoutput changes into Kafka record
 * key/value bytes. The Debezium implementation is ./debezium-encoder.ts (on ../events/envelope.ts); tests
 * may use a trivial one.
 */
import type { EventSchema } from '../events/envelope.ts';
import type { TypeRegistry } from '../events/pg-types.ts';
import { relationWireHeaders, SCHEMA_HEADER } from '../kafka/wire-headers.ts';
import type { RelationMessage, Tuple, TypeMessage } from '../pg/pgoutput/messages.ts';

/** Fields of Debezium's `source` block that vary per event. */
export interface SourcePosition {
  /** LSN of the change (or of the snapshot's consistent point). */
  readonly lsn: bigint;
  /** Commit LSN of the transaction (Debezium's `sequence` first element: the last committed LSN). */
  readonly commitLsn: bigint;
  readonly txId: number;
  /** Commit time (snapshot time for snapshot rows), microseconds since the Unix epoch. */
  readonly commitTimeUs: bigint;
  /** Debezium `snapshot`: 'false' when streaming; 'true'/'first'/'last' for snapshot rows. */
  readonly snapshot: 'false' | 'true' | 'first' | 'last';
  /**
   * source.origin and source.origin_lsn: the replication origin (and its commit LSN) of a transaction
   * that another replication applied (pgoutput's Origin message); unset for local writes.
   */
  readonly origin?: string;
  readonly originLsn?: bigint;
}

/** Debezium's `transaction` block. */
export interface TransactionPosition {
  /** `<txId>:<commitLsn>` as Debezium writes it. */
  readonly id: string;
  readonly totalOrder: number;
  readonly dataCollectionOrder: number;
}

export type ChangeOp = 'c' | 'u' | 'd' | 'r';

export interface EncodedRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/** Encodes the events of one relation (compiled once per Relation message). */
export interface RelationEncoder {
  /**
   * Set when the records carry no schema: the one they were encoded with, which capture stores (in the
   * source's pgbisync.event_schemas) before sending them and names in each record's `pgbisync.schema`
   * header.
   */
  readonly schema?: EventSchema | undefined;
  /**
   * The wire version its records need (src/kafka/wire-headers.ts): more than 1 when an older applier
   * would misread them; capture then puts it on every record of the relation. Unset: 1.
   */
  readonly wireVersion?: number;
  change(
    op: ChangeOp,
    before: Tuple | undefined,
    after: Tuple | undefined,
    source: SourcePosition,
    transaction: TransactionPosition,
  ): EncodedRecord;
  /** The tombstone that follows a delete: same key, null value. */
  tombstone(before: Tuple): EncodedRecord;
  truncate(source: SourcePosition, transaction: TransactionPosition): EncodedRecord;
}

export interface ChangeEncoder {
  /**
   * The catalog facts of the synced tables' non-built-in types (enums, domains, hstore...), which
   * pgoutput's Type messages do not carry. The capture reads them at each start, before the snapshot
   * and the stream compile any relation; relations compiled afterwards use them.
   */
  useCatalog?(registry: TypeRegistry): void;
  /** Compiles an encoder for `relation`; `types` holds Type messages seen so far (enums, domains). */
  forRelation(relation: RelationMessage, types: ReadonlyMap<number, TypeMessage>): RelationEncoder;
}

/**
 * The headers of a relation's records with a value: the schema of schemaless records, the wire version
 * when it is above 1. Undefined when none.
 */
export function recordHeaders(encoder: RelationEncoder): Readonly<Record<string, string>> | undefined {
  const headers = {
    ...(encoder.schema === undefined ? {} : { [SCHEMA_HEADER]: encoder.schema.id }),
    ...relationWireHeaders(encoder.wireVersion ?? 1),
  };
  return Object.keys(headers).length === 0 ? undefined : headers;
}
