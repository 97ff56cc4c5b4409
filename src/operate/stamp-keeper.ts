/**
 * Keeps the commit times last-writer-wins compares for as long as another node may still send an older
 * change (issue: long lag). A row's version is `pg_xact_commit_timestamp(xmin)`, and PostgreSQL
 * truncates commit timestamps behind the cluster's oldest frozen xid (../conflicts/commit-ts-horizon.ts):
 * without a hold, a direction lagging behind a vacuum that froze its target's rows would find them of
 * unknown time and overwrite newer rows with older changes.
 *
 * Each node gets a physical slot, `pgbisync__stamps_<node>` (../pg/replication/slot-xmin.ts), whose xmin
 * vacuum cannot freeze past. `pgbisync run` plays a round every STAMP_KEEP_INTERVAL_MS:
 * 1. per node, a mark: its snapshot xmin and the time on its clock (../conflicts/stamp-hold.ts);
 * 2. per direction, the time before which its source has nothing left to deliver: the source commit time
 *    it last applied, or later when it is known to have caught up (./caught-up.ts: an idle source would
 *    otherwise pin the hold to its last write);
 * 3. per node, the watermark: the oldest of those times over the directions into it, less the slack
 *    (commits racing on a source, clocks apart: `conflicts.maxClockSkewMs` plus a minute), and the
 *    candidate, the newest mark not later than it;
 * 4. the slot holds the candidate once it is older than half of `vacuum_freeze_min_age` xids (vacuum
 *    does not freeze younger rows in its normal course), and nothing before: a hold costs every write
 *    workload, since vacuum keeps the dead rows of the span it holds (../conflicts/stamp-hold.ts).
 * A row written after the hold keeps its commit time; one written before it can only meet changes that
 * are newer than it anyway. The hold never reaches further back than three quarters of
 * `autovacuum_freeze_max_age` xids (then `run` warns, and `status`'s horizon warning takes over).
 *
 * Marks live in memory: a restarted process keeps what the slot holds until it has a mark older than
 * the watermark (../conflicts/stamp-hold.ts).
 * Several processes may run rounds; a node's slot is set by whichever holds the node's advisory lock.
 * `conflicts.keepCommitTimes: false` drops the slots instead.
 */
import type { Config } from '../config/schema.ts';
import { candidateMark, chooseHold, marksFrom, type XidMark } from '../conflicts/stamp-hold.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { ensureXminSlot, readSlotXmin, setSlotXmin } from '../pg/replication/slot-xmin.ts';
import { objectNames } from '../pg/sql-names.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { sleep } from '../runtime/sleep.ts';
import { CatchUpTracker } from './caught-up.ts';
import { LEASE_CLASS_ID, leaseKey } from './ownership.ts';
import { directions, withNode } from './sync-plan.ts';

export const STAMP_KEEP_INTERVAL_MS = 60_000;
/** Slack besides the clock skew limit: commit times racing on a source, the round's own length. */
export const STAMP_SLACK_MS = 60_000;

/** What one round saw and did on a node. */
export interface NodeHold {
  /** The slot's xmin after the round (a full xid), or null. */
  readonly hold: bigint | null;
  /** When (the node's clock, ms) the held mark was read; undefined when the hold is not one of ours. */
  readonly heldSinceMs: number | undefined;
  /** The watermark (ms), or undefined while a direction into the node has nothing to tell. */
  readonly watermarkMs: number | undefined;
  /** The hold was kept younger than the watermark asked (the xid age limit). */
  readonly capped: boolean;
  /** The slot was made this round. */
  readonly made: boolean;
  /** Another process held the node's lock: the slot was left to it. */
  readonly skipped: boolean;
}

export class StampKeeper {
  readonly #marks = new Map<string, XidMark[]>();
  readonly #slackMs: number;
  /** When each direction was last seen caught up; the tombstone pruner reads it too. */
  readonly catchUp: CatchUpTracker;

  readonly #minAgeXids: bigint | undefined;

  /**
   * `slackMs` and `minAgeXids` (instead of half the server's vacuum_freeze_min_age) are for tests; a
   * `catchUp` tracker may be shared with the tombstone pruner.
   */
  constructor(options: { slackMs?: number; minAgeXids?: bigint; catchUp?: CatchUpTracker } = {}) {
    this.#slackMs = options.slackMs ?? STAMP_SLACK_MS;
    this.#minAgeXids = options.minAgeXids;
    this.catchUp = options.catchUp ?? new CatchUpTracker();
  }

  /** One round over every node of `config` (`tables`: the resolved table list, for per-table topics). */
  async round(config: Config, tables: readonly string[]): Promise<Map<string, NodeHold>> {
    const nodes = config.nodes.filter((n) => n.debezium === undefined);
    const out = new Map<string, NodeHold>();
    await this.catchUp.probe(config, tables);
    if (!config.conflicts.keepCommitTimes) {
      for (const node of nodes) await withNode(node, 'stamps', (db) => dropStampSlot(db, node.name));
      return out;
    }
    const slack = this.#slackMs + config.conflicts.maxClockSkewMs;
    for (const node of nodes) {
      const into = directions(config).filter((d) => d.target.name === node.name);
      const hold = await withNode(node, 'stamps', async (db) => {
        const mark = await db.query<{
          xid: string;
          ms: number;
          next: string;
          max_age: string;
          min_age: string;
        }>(
          `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid,
                  pg_snapshot_xmax(pg_current_snapshot())::text AS next,
                  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms,
                  current_setting('autovacuum_freeze_max_age') AS max_age,
                  current_setting('vacuum_freeze_min_age') AS min_age`,
        );
        const m = mark.rows[0]!;
        const marks = [...(this.#marks.get(node.name) ?? []), { atMs: m.ms, xid: BigInt(m.xid) }];
        this.#marks.set(node.name, marks);
        // No direction into the node: nothing can arrive, the newest mark will do.
        let watermarkMs: number | undefined = Number.POSITIVE_INFINITY;
        for (const d of into) {
          const applied = await db.query<{ ms: number }>(
            `SELECT (extract(epoch FROM commit_time) * 1000)::float8 AS ms
               FROM pgbisync.apply_progress WHERE source_node = $1`,
            [d.source.name],
          );
          const known = Math.max(applied.rows[0]?.ms ?? -1, this.catchUp.caughtUpMs(d) ?? -1);
          if (known < 0) {
            watermarkMs = undefined; // the direction applied nothing and never caught up: anything may come
            break;
          }
          watermarkMs = Math.min(watermarkMs, known - slack);
        }
        const slot = objectNames.stampSlot(node.name);
        const lock = leaseKey(`stamps ${node.name}`);
        const locked = await db.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [
          LEASE_CLASS_ID,
          lock,
        ]);
        if (locked.rows[0]?.ok !== true) {
          // The holder's rounds decide; only the marks this one can no longer use go.
          this.#marks.set(node.name, marksFrom(marks, candidateMark(marks, watermarkMs)?.xid));
          return {
            hold: null,
            heldSinceMs: undefined,
            watermarkMs,
            capped: false,
            made: false,
            skipped: true,
          };
        }
        const made = await ensureXminSlot(db, slot);
        const held = await readSlotXmin(db, slot);
        const limits = {
          minAgeXids: this.#minAgeXids ?? BigInt(m.min_age) / 2n,
          maxAgeXids: (BigInt(m.max_age) * 3n) / 4n,
        };
        const choice = chooseHold(marks, watermarkMs, held, BigInt(m.next), limits);
        // 0: no xmin (the slot lets vacuum go on).
        if (choice.hold !== held) await setSlotXmin(node.url, slot, choice.hold ?? 0n, 'pgbisync-stamps');
        const candidate = candidateMark(marks, watermarkMs)?.xid;
        const from =
          choice.hold !== null && candidate !== undefined && choice.hold < candidate
            ? choice.hold
            : candidate;
        this.#marks.set(node.name, marksFrom(marks, from));
        const heldSinceMs = marks.find((k) => k.xid === choice.hold)?.atMs;
        return { hold: choice.hold, heldSinceMs, watermarkMs, capped: choice.capped, made, skipped: false };
      });
      out.set(node.name, hold);
    }
    return out;
  }
}

/** Drops the node's stamp slot if it exists (teardown, or `conflicts.keepCommitTimes: false`). */
export async function dropStampSlot(db: Queryable, node: string): Promise<string[]> {
  const slot = objectNames.stampSlot(node);
  const r = await db.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  return r.rows.length > 0 ? [slot] : [];
}

/** `pgbisync run`'s loop: a failed round is logged once and tried again next interval. */
export async function keepStamps(
  config: Config,
  tables: readonly string[],
  metrics: Metrics,
  log: Logger,
  signal: AbortSignal,
  catchUp: CatchUpTracker,
  intervalMs = STAMP_KEEP_INTERVAL_MS,
): Promise<void> {
  const keeper = new StampKeeper({ catchUp });
  let failing = false;
  let capped = false;
  while (!signal.aborted) {
    try {
      const round = await keeper.round(config, tables);
      for (const [node, h] of round) {
        if (h.made)
          log.info({ node, slot: objectNames.stampSlot(node) }, 'made the slot that keeps commit times');
      }
      const nowCapped = [...round].filter(([, h]) => h.capped).map(([node]) => node);
      if (nowCapped.length > 0 && !capped)
        log.warn(
          { nodes: nowCapped },
          'a direction lags so far that keeping its commit times would block freezing: they are no longer kept (status warns once they are gone)',
        );
      capped = nowCapped.length > 0;
      for (const [node, h] of round) {
        if (h.skipped) continue;
        const kept =
          h.hold === null ? 0 : h.heldSinceMs === undefined ? undefined : (Date.now() - h.heldSinceMs) / 1000;
        if (kept !== undefined) metrics.commitTimesKeptSeconds.set({ node }, kept);
      }
      if (failing) log.info('keeping commit times works again');
      failing = false;
    } catch (error) {
      if (!failing) log.warn({ err: error }, 'could not keep commit times this round; trying again later');
      failing = true;
    }
    await sleep(intervalMs, signal);
  }
}
