/**
 * Is a node's slot still the one its capture streamed from, and how close is it to being lost?
 *
 * The slot's confirmed flush LSN is the only durable capture position (no loss): a change is captured
 * only while the slot retains its WAL. Two ways to lose that, both with no error from PostgreSQL at the
 * moment it happens:
 * - the slot is gone (dropped by hand, not carried over by a failover) while pgbisync.capture_state
 *   says the capture had streamed from it (its snapshot completed): a new slot would start at the
 *   present, and every change since the old one stopped would be lost;
 * - the server invalidated it (`wal_status = 'lost'`): a checkpoint removed WAL it still needed,
 *   because it fell further behind than `max_slot_wal_keep_size` (or, PostgreSQL 16+, a conflict on a
 *   standby; PostgreSQL 18, `idle_replication_slot_timeout`). START_REPLICATION then fails with SQLSTATE
 *   55000 for good.
 * Either way the capture of that node is blocked (PGB2005) until `pgbisync resync <node>` re-copies its
 * tables; the other components run on. Before it comes to that, `wal_status = 'unreserved'` (past the
 * limit, invalidated at the next checkpoint) and a small `safe_wal_size` are warned of by status and
 * doctor.
 *
 * Columns of pg_replication_slots: https://www.postgresql.org/docs/current/view-pg-replication-slots.html
 */
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';

/** A node's slot as pg_replication_slots shows it, with what its capture recorded. */
export interface SlotHealth {
  readonly node: string;
  readonly slot: string;
  readonly exists: boolean;
  readonly active: boolean;
  /** reserved | extended | unreserved | lost; null when the slot does not exist. */
  readonly walStatus: string | null;
  /** WAL that may still be written before the slot is at risk; null: no limit, or lost. */
  readonly safeWalBytes: number | null;
  /** max_slot_wal_keep_size in bytes; null: -1, no limit. */
  readonly maxSlotWalKeepBytes: number | null;
  /** Why it was invalidated (PostgreSQL 17+: wal_removed, rows_removed, ...); null otherwise. */
  readonly invalidationReason: string | null;
  readonly retainedWalBytes: number;
  readonly confirmedFlushLsn: string | null;
  /** pgbisync.capture_state says the capture streamed from a slot of this node (its snapshot completed). */
  readonly streamed: boolean;
  /** A re-copy asked for by `pgbisync resync` that the capture has not finished; ISO text, or null. */
  readonly resyncRequestedAt: string | null;
}

/**
 * The slot and the capture state of `node`, read on that node. Works before `pgbisync setup` (no
 * capture state: nothing streamed) and on a schema from before `resync` existed (no request column).
 */
export async function readSlotHealth(db: Queryable, node: string, slot: string): Promise<SlotHealth> {
  const s = await db.query<{
    exists: boolean;
    active: boolean;
    wal_status: string | null;
    safe: string | null;
    keep_mb: string;
    reason: string | null;
    retained: string | null;
    flush: string | null;
  }>(
    `SELECT s.slot_name IS NOT NULL AS exists, coalesce(s.active, false) AS active, s.wal_status,
            s.safe_wal_size::text AS safe, to_jsonb(s) ->> 'invalidation_reason' AS reason,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text AS retained,
            s.confirmed_flush_lsn::text AS flush,
            (SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep_mb
       FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
    [slot],
  );
  const row = s.rows[0]!;
  const state = await readCaptureState(db, node);
  const keepMb = Number(row.keep_mb);
  return {
    node,
    slot,
    exists: row.exists,
    active: row.active,
    walStatus: row.wal_status,
    safeWalBytes: row.safe === null ? null : Number(row.safe),
    maxSlotWalKeepBytes: keepMb < 0 ? null : keepMb * 1024 * 1024,
    invalidationReason: row.reason,
    retainedWalBytes: Number(row.retained ?? 0),
    confirmedFlushLsn: row.flush,
    streamed: state?.snapshotDone === true,
    resyncRequestedAt: state?.resyncRequestedAt ?? null,
  };
}

/** A node's row of pgbisync.capture_state. */
export interface CaptureState {
  readonly snapshotDone: boolean;
  /** Set by `pgbisync resync`, cleared by the capture once the re-copy it asked for is in Kafka. */
  readonly resyncRequestedAt: string | null;
}

/** Undefined: no row (the capture never started) or no pgbisync schema. */
export async function readCaptureState(db: Queryable, node: string): Promise<CaptureState | undefined> {
  const exists = await db.query<{ e: boolean }>(
    "SELECT to_regclass('pgbisync.capture_state') IS NOT NULL AS e",
  );
  if (exists.rows[0]?.e !== true) return undefined;
  // to_jsonb: a schema set up before resync existed has no request column (nothing requested then).
  const r = await db.query<{ done: boolean; resync: string | null }>(
    `SELECT s.snapshot_done_at IS NOT NULL AS done, to_jsonb(s) ->> 'resync_requested_at' AS resync
       FROM pgbisync.capture_state s WHERE s.node = $1`,
    [node],
  );
  const row = r.rows[0];
  return row === undefined ? undefined : { snapshotDone: row.done, resyncRequestedAt: row.resync };
}

/**
 * Below this share of max_slot_wal_keep_size left (safe_wal_size), the slot is warned of: its capture
 * is far behind, or not running, and a burst of writes would have it invalidated.
 */
const SAFE_WAL_WARN_SHARE = 0.25;

export type SlotVerdict =
  | { readonly kind: 'ok' }
  /** Still streamable, but close to being lost (or a resync is under way). */
  | { readonly kind: 'warn'; readonly problem: string; readonly fix: string }
  | { readonly kind: 'lost'; readonly error: BlockedError };

const MB = 1024 * 1024;
const mb = (bytes: number) => `${(bytes / MB).toFixed(bytes < 10 * MB ? 1 : 0)} MB`;

/** What status, doctor and the capture conclude from a slot's health. Pure. */
export function judgeSlot(h: SlotHealth): SlotVerdict {
  const lost = slotLoss(h);
  if (lost !== undefined) {
    if (h.resyncRequestedAt === null) return { kind: 'lost', error: slotLostError(h, lost) };
    return {
      kind: 'lost',
      error: slotLostError(h, lost, undefined, `a resync was requested at ${h.resyncRequestedAt}`),
    };
  }
  if (h.resyncRequestedAt !== null) {
    return {
      kind: 'warn',
      problem: `re-copy of ${h.node}'s tables requested at ${h.resyncRequestedAt}, not finished`,
      fix: `keep \`pgbisync run\` running; \`pgbisync resync ${h.node}\` follows it`,
    };
  }
  if (!h.exists) return { kind: 'ok' };
  const catchUp = `let the capture of ${h.node} catch up (is \`pgbisync run\` running?) or raise max_slot_wal_keep_size (ALTER SYSTEM SET max_slot_wal_keep_size = ...; SELECT pg_reload_conf();)`;
  if (h.walStatus === 'unreserved') {
    return {
      kind: 'warn',
      problem: `slot ${h.slot} on ${h.node} holds more WAL than max_slot_wal_keep_size (wal_status unreserved): the next checkpoint invalidates it`,
      fix: catchUp,
    };
  }
  if (
    h.safeWalBytes !== null &&
    h.maxSlotWalKeepBytes !== null &&
    h.safeWalBytes < h.maxSlotWalKeepBytes * SAFE_WAL_WARN_SHARE
  ) {
    return {
      kind: 'warn',
      problem: `slot ${h.slot} on ${h.node} can take ${mb(Math.max(0, h.safeWalBytes))} more WAL before max_slot_wal_keep_size (${mb(h.maxSlotWalKeepBytes)}) invalidates it`,
      fix: catchUp,
    };
  }
  return { kind: 'ok' };
}

/** Why the slot can no longer stream the node's changes, or undefined when it can (or never did). */
export function slotLoss(
  h: Pick<SlotHealth, 'exists' | 'walStatus' | 'streamed'>,
): 'missing' | 'invalidated' | undefined {
  if (h.exists) return h.walStatus === 'lost' ? 'invalidated' : undefined;
  return h.streamed ? 'missing' : undefined;
}

/** pg_replication_slots.invalidation_reason (PostgreSQL 17+) in an operator's words. */
const INVALIDATED_BECAUSE: Readonly<Record<string, string>> = {
  wal_removed:
    'it held more WAL than max_slot_wal_keep_size allows, and a checkpoint removed WAL of changes it had not sent',
  rows_removed: 'on this standby, recovery removed rows the slot still needed',
  wal_level_insufficient: "the primary's wal_level fell below logical",
  idle_timeout: 'it stayed inactive longer than idle_replication_slot_timeout',
};

/**
 * PGB2005 for `node`'s capture: blocked (only that capture stops; the other directions run on) until
 * `pgbisync resync <node>` re-copies. `cause`: what PostgreSQL said, when it said something.
 */
export function slotLostError(
  h: Pick<SlotHealth, 'node' | 'slot' | 'invalidationReason'>,
  loss: 'missing' | 'invalidated',
  cause?: unknown,
  note?: string,
): BlockedError {
  const what =
    loss === 'missing'
      ? `replication slot ${h.slot} is gone (dropped, or lost in a failover) though the capture streamed from it: changes made on ${h.node} since it was lost cannot be captured`
      : `replication slot ${h.slot} was invalidated by the server (wal_status lost${h.invalidationReason === null ? '' : `, invalidation_reason ${h.invalidationReason}`}): ${INVALIDATED_BECAUSE[h.invalidationReason ?? ''] ?? INVALIDATED_BECAUSE.wal_removed}`;
  return new BlockedError(`capture of node ${h.node}: ${what}${note === undefined ? '' : ` (${note})`}`, {
    code: ErrorCode.SLOT_LOST,
    hint: `run \`pgbisync resync ${h.node}\`: it re-copies ${h.node}'s rows and remembered deletes to the other nodes under last-writer-wins (newer versions there are kept) while the other directions run on`,
    ...(cause === undefined ? {} : { cause }),
  });
}
