/**
 * The rule that recognises a source transaction applied before (a restarted capture re-published it:
 * capture is at-least-once), by its commit LSN and the identity of the WAL it comes from
 * (../pg/replication/source-identity.ts). One home for it; ./apply-progress.ts keeps the watermark in
 * pgbisync.apply_progress and applies the verdicts in queue order. docs/correctness.md, "failover or
 * point-in-time restore of a source".
 *
 * The watermark is the highest commit LSN applied on the stored identity's timeline. A transaction:
 * - without an identity (a capture before identities, a foreign topic), or while none is stored: the
 *   LSN rule alone (skipped when its commit LSN is not after the watermark); an identity it brings is
 *   stored from then on;
 * - of the same system and timeline: the LSN rule;
 * - of the same system and a newer timeline (a promoted standby, a point-in-time restore): that
 *   timeline shares the stored one's WAL only below their fork point, so the watermark becomes
 *   min(watermark, the last LSN before the fork point) before the LSN rule. What lies below the fork (both timelines hold it)
 *   is still recognised; what is at or after it is new on the source, whatever its LSN;
 * - of the same system and an older timeline (a former primary's capture sending after its successor's):
 *   below the fork point, the LSN rule (that WAL is shared); at or after it, a transaction of the branch
 *   the source left, which the source itself no longer holds: skipped, so the nodes stay equal to it;
 * - of a different system (a different cluster behind the node's name): nothing of it was applied, the
 *   watermark restarts from 0 on its identity.
 * Snapshot chunks are never skipped and never raise the watermark (they are read at a newer LSN than
 * the slot streams from); one below the watermark restarts it (the source's positions went back: a
 * failover with a lost slot re-copied by `pgbisync resync`).
 *
 * What the LSN rule cannot tell on one timeline, the watermark's commit time can: {@link wentBack}.
 */
import { forkLsn, type SourceIdentity } from '../pg/replication/source-identity.ts';

/** What is stored: the highest applied commit LSN, on the timeline of `source` (when known). */
export interface Watermark {
  readonly commitLsn: bigint;
  readonly source: SourceIdentity | undefined;
  /**
   * The commit time of the transaction at `commitLsn` (undefined: not known, e.g. a watermark lowered
   * to a fork point, or stored before it was kept). See {@link wentBack}.
   */
  readonly commitTimeUs?: bigint | undefined;
}

/** What the rule reads of a transaction (an ApplyTransaction fits). */
export interface WatermarkInput {
  readonly commitLsn: bigint;
  /** True when commitLsn orders transactions (our capture's header). */
  readonly lsnOrdered: boolean;
  readonly snapshot: boolean;
  readonly source?: SourceIdentity | undefined;
  readonly commitTimeUs: bigint;
}

export interface Verdict {
  /** Applied before (or of a branch the source left): only its Kafka position moves. */
  readonly duplicate: boolean;
  /** The watermark once it is queued (duplicate or not). */
  readonly next: Watermark;
}

export function judge(stored: Watermark, txn: WatermarkInput): Verdict {
  if (!txn.lsnOrdered) return { duplicate: false, next: stored };
  const lsn = txn.commitLsn;
  let base = stored.commitLsn;
  let source = txn.source ?? stored.source;
  const had = stored.source;
  if (txn.source !== undefined && had !== undefined) {
    if (txn.source.systemId !== had.systemId) {
      base = 0n;
    } else if (txn.source.timeline > had.timeline) {
      // Below the fork point both timelines hold the same WAL; a commit at or after it is new.
      const fork = forkLsn(had, txn.source);
      const shared = fork === undefined ? base : fork > 0n ? fork - 1n : 0n;
      if (shared < base) base = shared;
    } else if (txn.source.timeline < had.timeline) {
      source = had;
      const fork = forkLsn(had, txn.source) ?? base;
      if (!txn.snapshot && lsn >= fork) return { duplicate: true, next: stored };
    }
  }
  // The watermark's commit time stays known only while the watermark stays where it was.
  const kept = base === stored.commitLsn ? stored.commitTimeUs : undefined;
  if (txn.snapshot)
    return { duplicate: false, next: lsn < base ? mark(lsn, source) : mark(base, source, kept) };
  if (lsn <= base) return { duplicate: true, next: mark(base, source, kept) };
  return { duplicate: false, next: mark(lsn, source, txn.commitTimeUs) };
}

function mark(commitLsn: bigint, source: SourceIdentity | undefined, commitTimeUs?: bigint): Watermark {
  return commitTimeUs === undefined ? { commitLsn, source } : { commitLsn, source, commitTimeUs };
}

/**
 * True when `txn`, which the LSN rule takes for applied before (on the stored watermark's own timeline),
 * committed more than `slackUs` after the watermark's transaction: a re-published transaction has the
 * commit time it had (commits follow their WAL order, up to a clock stepped back, which
 * conflicts.maxClockSkewMs bounds), so this one was written at a WAL position the source had already
 * passed: its WAL went back without a new timeline (a disk snapshot of the node restored, its slot with
 * it). Skipped, it would be lost.
 */
export function wentBack(stored: Watermark, txn: WatermarkInput, verdict: Verdict, slackUs: bigint): boolean {
  if (!verdict.duplicate || !txn.lsnOrdered || txn.snapshot || stored.commitTimeUs === undefined)
    return false;
  if (verdict.next.commitLsn !== stored.commitLsn || txn.commitLsn > stored.commitLsn) return false;
  const had = stored.source;
  const now = txn.source;
  if (
    had !== undefined &&
    now !== undefined &&
    (had.systemId !== now.systemId || had.timeline !== now.timeline)
  ) {
    return false;
  }
  return txn.commitTimeUs > stored.commitTimeUs + slackUs;
}
