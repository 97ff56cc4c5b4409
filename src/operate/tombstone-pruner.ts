/**
 * Prunes `pgbisync.tombstones`, which otherwise grows with every delete for good. `pgbisync run` calls
 * a round every PRUNE_INTERVAL_MS; each round is two small queries per node.
 *
 * A tombstone (T, N) on a node exists to refuse a change of its key older than T arriving later (a
 * change from N itself is N's later write and wins anyway). The watermark W is the smallest commit time
 * applied in any direction of the mesh (`pgbisync.apply_progress.commit_time` on every target, for
 * every source), less `conflicts.tombstoneRetentionMs`. A tombstone older than W can go, on every node:
 *
 * 1. Every change still to arrive anywhere is newer than W. Each direction applies its source's
 *    transactions in commit order, and a node's changes travel only from that node (applied ones are
 *    never published again), so what a target has yet to apply from a source committed after the last
 *    transaction it applied from it. Commit times follow commit order only roughly (two commits racing
 *    on the source, a clock stepped back): the retention covers that slack. So no change to come is
 *    older than the tombstone: none would be refused by it.
 * 2. Every node applied every node's changes up to W, the delete included: no node still holds a
 *    version of the key older than T, so a re-copy (`resync`, a table added later) has none to send.
 *
 * What still could bring an older version (a clock stepped back by more than the retention, a restored
 * backup, a connector's re-snapshot) meets the table's horizon: the round records W as
 * `pgbisync.tombstone_horizon.pruned_before` in the same transaction as the delete, and the applier
 * refuses a change older than it for a key the target lacks, as a tombstone would (conflict
 * `update_deleted`, `keep_deleted`, with the horizon as the local time and no local node).
 *
 * A direction that never applied anything holds pruning back (its source may still send anything), and
 * so would an idle source (its applied commit time moves only when it writes), but for `run`'s catch-up
 * tracker (./caught-up.ts): a direction known to have applied everything its source committed before T
 * counts as applied up to T, which (1) and (2) above need and no more.
 */
import type { Config } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import { sleep } from '../runtime/sleep.ts';
import type { CatchUpTracker } from './caught-up.ts';
import { directions, withNode } from './sync-plan.ts';

export const PRUNE_INTERVAL_MS = 60_000;
/** Tombstones deleted per statement: a round never holds a long lock on the table. */
const PRUNE_BATCH = 10_000;

export interface PruneRound {
  /** The watermark (ISO), or undefined when a direction has applied nothing yet. */
  readonly before: string | undefined;
  /** Tombstones pruned per node. */
  readonly pruned: ReadonlyMap<string, number>;
}

/**
 * One round: the watermark from every target's progress (or, for a direction `catchUp` saw caught up
 * later, that time: ./caught-up.ts), then the tombstones older than it, per node.
 */
export async function pruneTombstonesOnce(config: Config, catchUp?: CatchUpTracker): Promise<PruneRound> {
  let oldestMs: number | undefined;
  for (const d of directions(config)) {
    const applied = await withNode(d.target, 'prune', async (db) => {
      const r = await db.query<{ ms: string }>(
        `SELECT floor(extract(epoch FROM commit_time) * 1000)::bigint::text AS ms
           FROM pgbisync.apply_progress WHERE source_node = $1`,
        [d.source.name],
      );
      return r.rows[0] === undefined ? undefined : Number(r.rows[0].ms);
    });
    const caughtUp = catchUp?.caughtUpMs(d);
    const ms = applied === undefined ? caughtUp : Math.max(applied, caughtUp ?? applied);
    if (ms === undefined) return { before: undefined, pruned: new Map() };
    oldestMs = oldestMs === undefined ? ms : Math.min(oldestMs, ms);
  }
  if (oldestMs === undefined) return { before: undefined, pruned: new Map() };
  const before = new Date(oldestMs - config.conflicts.tombstoneRetentionMs).toISOString();
  const pruned = new Map<string, number>();
  for (const node of config.nodes.filter((n) => n.debezium === undefined)) {
    const n = await withNode(node, 'prune', async (db) => {
      let total = 0;
      for (;;) {
        const r = await db.query<{ n: number }>(PRUNE_SQL, [before, PRUNE_BATCH]);
        const batch = r.rows[0]?.n ?? 0;
        total += batch;
        if (batch < PRUNE_BATCH) return total;
      }
    });
    pruned.set(node.name, n);
  }
  return { before, pruned };
}

/**
 * Deletes up to $2 tombstones older than $1 and raises their tables' horizon to $1, in one statement
 * (one transaction): an applier sees either the tombstone or the horizon.
 */
const PRUNE_SQL = `WITH gone AS (
    DELETE FROM pgbisync.tombstones WHERE ctid = ANY (ARRAY(
      SELECT ctid FROM pgbisync.tombstones b WHERE pgbisync.version_time(b.xmin) < $1::timestamptz LIMIT $2))
    RETURNING table_name),
  horizon AS (
    INSERT INTO pgbisync.tombstone_horizon AS h (table_name, pruned_before)
      SELECT DISTINCT table_name, $1::timestamptz FROM gone
      ON CONFLICT (table_name) DO UPDATE SET pruned_before = greatest(h.pruned_before, EXCLUDED.pruned_before))
  SELECT count(*)::int AS n FROM gone`;

/** `pgbisync run`'s pruning loop: a failed round is logged once and tried again next interval. */
export async function pruneTombstones(
  config: Config,
  log: Logger,
  signal: AbortSignal,
  catchUp?: CatchUpTracker,
  intervalMs = PRUNE_INTERVAL_MS,
): Promise<void> {
  let failing = false;
  while (!signal.aborted) {
    await sleep(intervalMs, signal);
    if (signal.aborted) return;
    try {
      const round = await pruneTombstonesOnce(config, catchUp);
      const total = [...round.pruned.values()].reduce((a, b) => a + b, 0);
      if (total > 0)
        log.info({ before: round.before, pruned: Object.fromEntries(round.pruned) }, 'tombstones pruned');
      if (failing) log.info('tombstone pruning works again');
      failing = false;
    } catch (error) {
      if (!failing) log.warn({ err: error }, 'could not prune tombstones; trying again later');
      failing = true;
    }
  }
}
