/**
 * The apply side's "where are we", in one place (the capture side's is ./ack-tracker.ts): the row of
 * pgbisync.apply_progress a target node keeps per source node (Kafka topic, partition and next offset,
 * source commit LSN and time), and for a source spread over several topics its rows of
 * pgbisync.apply_positions (see ../pg/pgbisync-schema.ts).
 *
 * Ordering contract:
 * - The Kafka position after a source transaction is written INSIDE the target transaction that applies
 *   it, together with the replication origin's commit LSN and time (the leading CTEs of its single
 *   statement, or its first statement after BEGIN). The changes and the position commit or roll back
 *   together, so the stored position is exactly what the target holds. Kafka consumer-group offsets are
 *   not a position.
 * - Each write requires the row to hold the position the previously queued transaction leaves (no row:
 *   null fields; a missing row where one is expected fails too). Transactions are pipelined: when one fails, every later one finds the row where the
 *   failed one should have moved it and fails too, so nothing commits after a failed transaction and
 *   none is skipped when the applier resumes. A row changed by anything else stops the writer too.
 * - On restart the applier consumes from the stored next offset: what committed is not read again.
 *   What is read again and skipped: a transaction whose commit LSN is not after the stored one on the
 *   same source timeline, which a restarted capture re-published (the capture is at-least-once). Its
 *   changes are not written; only the position moves past it. Only LSN-ordered transactions (our
 *   capture's header) outside the snapshot are skipped so: snapshot chunks share one LSN, and foreign
 *   topics' LSNs do not order transactions. The rule, with the source's identity (system identifier,
 *   timeline: a failover or a restore reuses LSNs on a new timeline), is ./source-watermark.ts. The
 *   row also keeps the commit time of the transaction at the watermark (watermark_us): one the rule
 *   would skip but committed well after it is no re-send (a disk snapshot of the source restored) and
 *   blocks the direction (PGB4005) instead of being lost.
 * - The other topics' offsets only grow (`greatest`); the stored commit LSN too, but where the rule
 *   lowers it (a newer timeline forked below it, another cluster, a snapshot below it: the source's WAL
 *   positions went back) and the write then sets it exactly.
 */
import { formatLsn, parseLsn } from '../pg/lsn.ts';
import { formatHistory, parseIdentity, type SourceIdentity } from '../pg/replication/source-identity.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import { judge, type Watermark, wentBack } from './source-watermark.ts';

/** The stored progress of one source node on a target node. */
export interface AppliedPosition {
  readonly topic: string;
  readonly partition: number;
  readonly nextOffset: bigint;
  readonly commitLsn: bigint;
  readonly commitTimeUs: bigint;
  /** The source identity the commit LSN is of (undefined: stored before identities, or none sent). */
  readonly source?: SourceIdentity | undefined;
  /** The newest capture run read from the source's records (undefined: none named one yet). */
  readonly captureRun?: bigint | undefined;
}

/** Where to resume in one topic partition. */
export interface TopicPosition {
  readonly topic: string;
  readonly partition: number;
  readonly nextOffset: bigint;
}

/** What the progress of a source transaction depends on (an ApplyTransaction fits). */
export interface ProgressOf {
  readonly topic: string;
  readonly partition: number;
  /** Offset of the transaction's last record: the applier resumes after it. */
  readonly lastOffset: bigint;
  /** Offset of its first record: where a part of it that is not the last leaves the position. */
  readonly firstOffset?: bigint;
  readonly commitLsn: bigint;
  /** True when commitLsn orders transactions (our capture's header). */
  readonly lsnOrdered: boolean;
  /** Rows of the initial snapshot (chunks share one LSN). */
  readonly snapshot: boolean;
  /** The commit time the target transaction is dated by (`$1`: the progress row's commit_time). */
  readonly commitTimeUs: bigint;
  /** The identity of the WAL it comes from (our capture's header; absent from older captures). */
  readonly source?: SourceIdentity | undefined;
  /** The newest capture run read when it was handed out (stored: it only grows). */
  readonly captureRun?: bigint | undefined;
}

/**
 * The progress of one source node on the target, as this applier's queued transactions leave it. Not
 * safe for concurrent use: call {@link alreadyApplied}, {@link nextWrite} and {@link queued} in the
 * order the transactions are queued on the connection.
 */
export class ApplyProgress {
  readonly #sourceNode: string;
  #lastCommitLsn = 0n;
  /** The identity of the source timeline #lastCommitLsn is on (undefined: not known). */
  #source: SourceIdentity | undefined;
  /** The commit time of the transaction at #lastCommitLsn (undefined: not known). */
  #watermarkUs: bigint | undefined;
  /** How much later than the watermark's a re-published transaction may have committed (clock slack). */
  readonly #slackUs: bigint;
  /**
   * The Kafka position the stored row holds once every queued transaction committed; null fields when
   * there is no row. Each transaction's progress write requires the row to hold exactly this.
   */
  #position: StoredPosition = NO_POSITION;
  /** The row may not exist: none was stored at {@link read} and no transaction is known to have committed. */
  #rowMayBeMissing = true;

  /** `maxClockSkewMs`: conflicts.maxClockSkewMs, the slack of {@link wentBack}. */
  constructor(sourceNode: string, maxClockSkewMs = 5_000) {
    this.#sourceNode = sourceNode;
    this.#slackUs = BigInt(Math.round(maxClockSkewMs)) * 1000n;
  }

  /** Reads the stored progress (undefined: none yet) and continues from it. */
  async read(db: Queryable): Promise<AppliedPosition | undefined> {
    const r = await db.query<{
      topic: string;
      kafka_partition: number;
      next_offset: string;
      commit_lsn: string;
      us: string;
      source_identity: string | null;
      source_history: string | null;
      capture_run: string | null;
      watermark_us: string | null;
    }>(
      `SELECT topic, kafka_partition, next_offset::text, commit_lsn::text,
              (extract(epoch FROM commit_time) * 1000000)::bigint::text AS us,
              source_system_id || ':' || source_timeline AS source_identity,
              source_timeline_history AS source_history, capture_run::text,
              watermark_us::text AS watermark_us
         FROM pgbisync.apply_progress WHERE source_node = $1`,
      [this.#sourceNode],
    );
    const row = r.rows[0];
    if (row === undefined) return undefined;
    this.#rowMayBeMissing = false;
    this.#position = {
      topic: row.topic,
      partition: row.kafka_partition,
      nextOffset: row.next_offset,
      commitUs: row.us,
    };
    this.#lastCommitLsn = parseLsn(row.commit_lsn);
    this.#watermarkUs =
      row.watermark_us === null || row.watermark_us === undefined ? undefined : BigInt(row.watermark_us);
    this.#source =
      row.source_identity === null || row.source_identity === undefined
        ? undefined
        : parseIdentity(row.source_identity, row.source_history ?? '');
    return {
      topic: row.topic,
      partition: row.kafka_partition,
      nextOffset: BigInt(row.next_offset),
      commitLsn: this.#lastCommitLsn,
      commitTimeUs: BigInt(row.us),
      ...(this.#source === undefined ? {} : { source: this.#source }),
      ...(row.capture_run === null || row.capture_run === undefined
        ? {}
        : { captureRun: BigInt(row.capture_run) }),
    };
  }

  /**
   * The stored positions of a source spread over several topics (see ApplyTransaction.topicPositions);
   * empty when there are none (or the table predates them: `pgbisync setup` adds it).
   */
  async readTopicPositions(db: Queryable): Promise<TopicPosition[]> {
    const exists = await db.query<{ e: boolean }>(
      "SELECT to_regclass('pgbisync.apply_positions') IS NOT NULL AS e",
    );
    if (exists.rows[0]?.e !== true) return [];
    const r = await db.query<{ topic: string; kafka_partition: number; next_offset: string }>(
      'SELECT topic, kafka_partition, next_offset::text FROM pgbisync.apply_positions WHERE source_node = $1',
      [this.#sourceNode],
    );
    return r.rows.map((row) => ({
      topic: row.topic,
      partition: row.kafka_partition,
      nextOffset: BigInt(row.next_offset),
    }));
  }

  /** Commit LSN of the last applied (non-snapshot) source transaction. */
  get lastCommitLsn(): bigint {
    return this.#lastCommitLsn;
  }

  /**
   * `txn` was applied before (a restarted capture re-published it), or is of a timeline branch the
   * source left: only its position is to be written (./source-watermark.ts).
   */
  alreadyApplied(txn: ProgressOf): boolean {
    const stored = this.#stored();
    const verdict = judge(stored, txn);
    if (wentBack(stored, txn, verdict, this.#slackUs)) {
      const at = (us: bigint) => new Date(Number(us / 1000n)).toISOString();
      throw new BlockedError(
        `source ${this.#sourceNode}: a transaction at commit LSN ${formatLsn(txn.commitLsn)} committed at ${at(txn.commitTimeUs)}, after the applied one at ${formatLsn(this.#lastCommitLsn)} (committed at ${at(this.#watermarkUs!)}), though its WAL position is not after it: the node's WAL went back on the same timeline (a disk snapshot of ${this.#sourceNode} restored?), and its new transactions reuse positions applied here; skipped as re-sent, they would be lost`,
        {
          code: ErrorCode.SOURCE_WENT_BACK,
          hint: `stop \`pgbisync run\`, then \`pgbisync resync ${this.#sourceNode} --new-slot\`: a new slot from ${this.#sourceNode}'s current WAL and a copy of its rows to the other nodes under last-writer-wins (the copy restarts this watermark); then start run again`,
        },
      );
    }
    return verdict.duplicate;
  }

  /**
   * `txn` is queued (applied or skipped as {@link alreadyApplied}): later transactions up to its commit
   * LSN are duplicates; its identity becomes the watermark's as the rule says. A snapshot at an LSN
   * before the watermark restarts it there: the source's WAL positions went back (a failover to a
   * standby that had not replayed everything, a restore; its slot was lost and `pgbisync resync` made
   * a new one), and what the new slot streams after the snapshot is new, however low its LSNs.
   */
  queued(txn: ProgressOf): void {
    const next = this.#verdict(txn).next;
    this.#lastCommitLsn = next.commitLsn;
    this.#source = next.source;
    this.#watermarkUs = next.commitTimeUs;
  }

  #stored(): Watermark {
    return { commitLsn: this.#lastCommitLsn, source: this.#source, commitTimeUs: this.#watermarkUs };
  }

  #verdict(txn: ProgressOf) {
    return judge(this.#stored(), txn);
  }

  /** A transaction queued here committed: the row exists from now on (no one else deletes it). */
  committed(): void {
    this.#rowMayBeMissing = false;
  }

  /**
   * The parameters of the progress write of one target transaction applying `txn` (see
   * {@link PROGRESS_STATEMENT}): from now on, the next write requires the row to hold `txn`'s position.
   */
  nextWrite(txn: ProgressOf): unknown[] {
    return this.#write(txn, String(txn.lastOffset + 1n));
  }

  /**
   * Like {@link nextWrite}, for a target transaction that applies only a part of `txn` and not its last
   * (a snapshot chunk is applied as one target transaction per commit time): the position stays where
   * it is, or, with none stored yet, is set to `txn`'s first record — if a later part fails, the applier
   * reads the whole of `txn` again (its upserts are idempotent) instead of resuming after it.
   */
  holdWrite(txn: ProgressOf): unknown[] {
    const held = this.#position;
    if (held.nextOffset === null) return this.#write(txn, String(txn.firstOffset ?? 0n));
    return this.#write({ ...txn, topic: held.topic!, partition: held.partition! }, held.nextOffset);
  }

  #write(txn: ProgressOf, nextOffset: string): unknown[] {
    const was = this.#position;
    // The watermark the row holds once this transaction commits: snapshot rows do not raise it (a
    // snapshot read again after an interruption is read at a newer LSN than the slot streams from, and
    // stored, it would make the streamed transactions below it look applied already); where the rule
    // lowers it, the write sets it exactly instead of only raising it.
    const next = this.#verdict(txn).next;
    // A foreign topic's LSN orders nothing here, but the row shows it (status: last applied LSN): it
    // only raises the stored one (`greatest`), as before identities.
    const lsn = txn.lsnOrdered || txn.commitLsn < next.commitLsn ? next.commitLsn : txn.commitLsn;
    this.#position = {
      topic: txn.topic,
      partition: txn.partition,
      nextOffset,
      commitUs: String(txn.commitTimeUs),
    };
    return [
      txn.topic,
      txn.partition,
      nextOffset,
      formatLsn(lsn),
      was.topic,
      was.partition,
      was.nextOffset,
      this.#rowMayBeMissing,
      next.commitLsn < this.#lastCommitLsn,
      was.commitUs,
      next.source?.systemId ?? null,
      next.source?.timeline ?? null,
      next.source === undefined ? null : formatHistory(next.source.history),
      txn.captureRun === undefined ? null : String(txn.captureRun),
      next.commitTimeUs === undefined ? null : String(next.commitTimeUs),
    ];
  }
}

interface StoredPosition {
  readonly topic: string | null;
  readonly partition: number | null;
  /** Decimal text (a bigint parameter). */
  readonly nextOffset: string | null;
  /**
   * The row's commit_time in microseconds (decimal text). Part of the chain: the parts of a split
   * snapshot chunk leave the offset where it is (holdWrite), so only their commit times (one per part)
   * tell whether the part before committed.
   */
  readonly commitUs: string | null;
}

const NO_POSITION: StoredPosition = { topic: null, partition: null, nextOffset: null, commitUs: null };

/**
 * Leading CTEs of a transaction's statement: sets the replication origin's commit LSN and time for
 * this transaction, and writes the progress row. `$1` is the commit time, `$2` the source node; from
 * `$p`: the parameters of {@link ApplyProgress.nextWrite} (topic, partition, next offset, commit LSN,
 * then the position the row must hold now, null fields: no row yet; whether the row may be missing;
 * whether the commit LSN restarts from this one instead of only growing; the commit time in
 * microseconds the row must hold now, null: not known, with the position; the source identity the
 * commit LSN is of: system identifier, timeline and its history, nulls: not known; the newest capture
 * run read, null: none named yet).
 *
 * That last condition chains the pipelined transactions (see the ordering contract above): a row not
 * where the previous transaction leaves it fails the update. A missing row fails the insert too when a
 * row was expected and may be missing (last parameter; see {@link ApplyProgress.committed}): else, when
 * a target's very first transaction failed, the next one would insert the row afresh and commit, and the
 * failed one would be skipped for good. (Once a row is known to exist, that lookup is skipped: a probe of
 * a row updated by every transaction costs a few microseconds each.) The error is a cast of an
 * explanation to bigint (plain SQL has no RAISE); it names the position found, or expected.
 */
const PROGRESS_CTE = (p: number) => {
  const [
    topic,
    partition,
    next,
    lsn,
    wasTopic,
    wasPartition,
    wasNext,
    rowMayBeMissing,
    restart,
    wasUs,
    systemId,
    timeline,
    history,
    run,
    watermarkUs,
  ] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14].map((i) => `$${p + i}`);
  return `pgbisync_origin AS (SELECT pg_replication_origin_xact_setup(${lsn}::pg_lsn, $1::timestamptz)),
  pgbisync_progress AS (INSERT INTO pgbisync.apply_progress AS a
      (source_node, topic, kafka_partition, next_offset, commit_lsn, commit_time, applied_at,
       source_system_id, source_timeline, source_timeline_history, capture_run, watermark_us)
    SELECT $2::text, ${topic}::text, ${partition}::int,
        CASE WHEN ${wasTopic}::text IS NULL OR NOT ${rowMayBeMissing}::boolean THEN ${next}::bigint
        WHEN EXISTS (SELECT 1 FROM pgbisync.apply_progress p WHERE p.source_node = $2::text) THEN ${next}::bigint
        ELSE ('pgbisync: apply_progress of ' || $2::text || ' has no row, not where this applier left it (' || ${wasTopic}::text || '['
              || ${wasPartition}::int || ']@' || ${wasNext}::bigint || '): an earlier transaction of the batch failed, or the row was deleted by someone else')::bigint
        END,
        ${lsn}::pg_lsn, $1::timestamptz, clock_timestamp(), ${systemId}::text, ${timeline}::bigint, ${history}::text,
        ${run}::bigint, ${watermarkUs}::bigint
      FROM pgbisync_origin
    ON CONFLICT (source_node) DO UPDATE SET topic = EXCLUDED.topic, kafka_partition = EXCLUDED.kafka_partition,
      next_offset = CASE
        WHEN (a.topic, a.kafka_partition, a.next_offset) IS NOT DISTINCT FROM (${wasTopic}::text, ${wasPartition}::int, ${wasNext}::bigint)
          AND (${wasUs}::bigint IS NULL OR (extract(epoch FROM a.commit_time) * 1000000)::bigint = ${wasUs}::bigint)
        THEN EXCLUDED.next_offset
        ELSE ('pgbisync: apply_progress of ' || a.source_node || ' is at ' || a.topic || '[' || a.kafka_partition || ']@'
              || a.next_offset || ' (commit time ' || a.commit_time || '), not where this applier left it: an earlier transaction of the batch failed, or the row was changed by someone else')::bigint
        END,
      commit_lsn = CASE WHEN ${restart}::boolean THEN EXCLUDED.commit_lsn ELSE greatest(a.commit_lsn, EXCLUDED.commit_lsn) END,
      commit_time = EXCLUDED.commit_time,
      applied_at = EXCLUDED.applied_at,
      source_system_id = EXCLUDED.source_system_id,
      source_timeline = EXCLUDED.source_timeline,
      source_timeline_history = EXCLUDED.source_timeline_history,
      capture_run = greatest(a.capture_run, EXCLUDED.capture_run),
      watermark_us = EXCLUDED.watermark_us)`;
};

/**
 * `text`, a WITH statement taking `params` parameters whose `$1` is the commit time and `$2` the source
 * node, with the progress CTEs in front: the progress write's parameters follow the statement's own.
 */
export function withProgress(text: string, params: number): string {
  return `WITH ${PROGRESS_CTE(params + 1)},\n${text.slice('WITH '.length)}`;
}

/**
 * The progress write alone (inside BEGIN ... COMMIT, or as the whole transaction of a duplicate): `$1`
 * commit time, `$2` source node, then the parameters of {@link ApplyProgress.nextWrite}.
 */
export const PROGRESS_STATEMENT = `WITH ${PROGRESS_CTE(3)} SELECT 1`;

/** Positions in the other topics of a multi-topic source: $1 source node, $2..$4 topic/partition/offset arrays. */
const POSITIONS_STATEMENT = `INSERT INTO pgbisync.apply_positions AS a (source_node, topic, kafka_partition, next_offset)
  SELECT $1::text, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
  ON CONFLICT (source_node, topic, kafka_partition) DO UPDATE SET next_offset = greatest(a.next_offset, EXCLUDED.next_offset)`;

/** The write of a multi-topic source's positions after a transaction, in the same target transaction. */
export function positionsWrite(
  sourceNode: string,
  positions: readonly TopicPosition[],
): { readonly text: string; readonly values: unknown[] } {
  return {
    text: POSITIONS_STATEMENT,
    values: [
      sourceNode,
      positions.map((p) => p.topic),
      positions.map((p) => p.partition),
      positions.map((p) => String(p.nextOffset)),
    ],
  };
}
