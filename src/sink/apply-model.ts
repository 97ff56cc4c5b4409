/**
 * What the applier applies: source transactions made of row changes whose values are PostgreSQL text
 * literals (decoded from Debezium events; see ../events/). One ApplyTransaction becomes exactly one
 * target transaction (a snapshot chunk one per commit time: see ./apply-plan.ts).
 */

import type { ColumnValue } from '../events/change-event.ts';
import type { RowBatch } from '../events/row-batch.ts';
import type { TopicPosition } from '../offsets/apply-progress.ts';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';

export { type ColumnValue, UNCHANGED } from '../events/change-event.ts';
export type { TopicPosition } from '../offsets/apply-progress.ts';

export interface RowChange {
  readonly op: 'c' | 'u' | 'd' | 'r' | 't';
  readonly schema: string;
  readonly table: string;
  /** Primary key of the row before the change (delete, key-changing update), by column. */
  readonly beforeKey?: Readonly<Record<string, string | null>>;
  /** Row after the change (c, u, r), by column. */
  readonly after?: Readonly<Record<string, ColumnValue>>;
  /** Snapshot rows only: the row's own commit time on the source (rows of one chunk differ). */
  readonly commitTimeUs?: bigint;
  /**
   * op 'r' only: many rows of the initial copy at once, all of `commitTimeUs` (a row batch,
   * ../events/row-batch.ts), instead of `after`. Applied as one guarded upsert of all its rows.
   */
  readonly batch?: Pick<RowBatch, 'columns' | 'rows' | 'values'>;
}

/** The rows a change writes or deletes: a batch's rows, else one. */
export function changeRows(change: RowChange): number {
  return change.batch?.rows ?? 1;
}

/** The rows of a transaction's changes (see {@link changeRows}). */
export function transactionRows(txn: Pick<ApplyTransaction, 'changes'>): number {
  let rows = 0;
  for (const change of txn.changes) rows += changeRows(change);
  return rows;
}

export interface ApplyTransaction {
  readonly sourceNode: string;
  /** Source commit LSN: recorded as the origin's remote_lsn; used to skip re-published transactions. */
  readonly commitLsn: bigint;
  /** Source commit time, microseconds since the Unix epoch: becomes the target commit timestamp. */
  readonly commitTimeUs: bigint;
  /** True when commitLsn orders transactions (our capture's header); false for foreign topics. */
  readonly lsnOrdered: boolean;
  /** Rows of the initial snapshot (chunks share one LSN; never skipped by LSN). */
  readonly snapshot: boolean;
  /**
   * The identity of the WAL commitLsn is of (system identifier, timeline: our capture's header on the
   * last record); absent from older captures and foreign topics. See ../offsets/source-watermark.ts.
   */
  readonly source?: SourceIdentity;
  /**
   * The newest capture run the applier read from the source's records when it handed this out
   * (../kafka/wire-headers.ts RUN_HEADER), stored with the position; absent before any named one.
   */
  readonly captureRun?: bigint;
  readonly changes: readonly RowChange[];
  /** Kafka position of the transaction's last record: the applier resumes after it. */
  readonly topic: string;
  readonly partition: number;
  readonly lastOffset: bigint;
  /**
   * Offset of the transaction's first record, where a stored position may point while only a part of
   * the transaction committed (a snapshot chunk split by commit time); absent: not known.
   */
  readonly firstOffset?: bigint;
  /**
   * A piece of a source transaction too large to hold at once (more than apply.maxBatchRows rows), in
   * arrival order: 'first' opens one target transaction, 'middle' adds to it, 'last' ends it (commits it,
   * with the position after the source transaction's last record). Absent: the whole transaction. Only
   * a 'last' piece carries the commit LSN; the other pieces write no position, so a failure anywhere
   * rolls the target transaction back and the applier reads the source transaction again from its first
   * record.
   */
  readonly piece?: 'first' | 'middle' | 'last';
  /**
   * Sources spread over several topics (Debezium's per-table topics): the position after this
   * transaction in each topic it has records in, stored with it (pgbisync.apply_positions).
   */
  readonly topicPositions?: readonly TopicPosition[];
}
