/**
 * The decoded form of a change event: what the applier consumes. Column values are PostgreSQL text
 * literals, to be bound as `$n::<column type>`; {@link UNCHANGED} marks an unchanged TOASTed value
 * (the row keeps its current value for that column).
 */

/** Marks a column whose value the source did not send (unchanged TOAST): leave it as it is. */
export const UNCHANGED: unique symbol = Symbol.for('pgbisync.unchanged-toast');
export type Unchanged = typeof UNCHANGED;

export type ColumnValue = string | null | Unchanged;

export type ChangeOp = 'c' | 'u' | 'd' | 'r' | 't';

/**
 * How `source.version` begins in the events pgbisync's capture writes ('pgbisync-0.1.0'); a Debezium
 * connector's is its release ('3.6.1.Final').
 */
export const PGBISYNC_VERSION_PREFIX = 'pgbisync-';

export interface EventSource {
  readonly version: string;
  readonly connector: string;
  /** Logical server name (topic prefix) of the producing connector. */
  readonly name: string;
  readonly db: string;
  /** Commit time of the source transaction (ts_us, or ts_ms * 1000 from older connectors). */
  readonly tsUs: bigint;
  /** 'false' when streaming; 'true' / 'first' / 'last' ... in a snapshot (booleans of 1.x mapped). */
  readonly snapshot: string;
  readonly txId: bigint | null;
  readonly lsn: bigint | null;
  readonly sequence: string | null;
}

export interface EventTransaction {
  readonly id: string;
  readonly totalOrder: bigint;
  readonly dataCollectionOrder: bigint;
}

export interface ChangeEvent {
  readonly kind: 'change';
  readonly op: ChangeOp;
  readonly schema: string;
  readonly table: string;
  /** Primary-key columns from the record key; null for a truncate or a keyless table. */
  readonly key: ReadonlyMap<string, string | null> | null;
  readonly before: ReadonlyMap<string, ColumnValue> | null;
  readonly after: ReadonlyMap<string, ColumnValue> | null;
  readonly source: EventSource;
  readonly transaction: EventTransaction | null;
}

/** A record with a null value: marks a deleted key for log compaction. Appliers skip it. */
export interface TombstoneEvent {
  readonly kind: 'tombstone';
  /** The key's columns when the key carries a schema (schemas.enable=true), else null. */
  readonly key: ReadonlyMap<string, string | null> | null;
  /** The key schema name (`<prefix>.<schema>.<table>.Key`), when the key carries a schema. */
  readonly keySchemaName: string | null;
}

export type DecodedRecord = ChangeEvent | TombstoneEvent;
