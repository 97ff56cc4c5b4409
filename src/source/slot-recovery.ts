/**
 * What a capture's failure means for its slot (./capture.ts calls it after every failed attempt): a slot
 * gone or invalidated blocks the capture (PGB2005, ./slot-health.ts); one PostgreSQL cannot decode past
 * a change blocks it too (PGB2006, ./decode-failure.ts), unless it is a fresh slot hit by PostgreSQL's
 * slot-creation bug, which is replaced without loss; and, against that bug, the catalog change made
 * right after a slot's creation.
 */
import type pg from 'pg';
import { newPgClient } from '../pg/client.ts';
import type { PgbisyncError } from '../runtime/errors.ts';
import {
  freshSlotReplacedError,
  isSlotCreationBug,
  MAX_FRESH_SLOT_REPLACEMENTS,
  RepeatedFailures,
  SAME_FAILURES_TO_BLOCK,
  serverError,
  transientServerError,
  undecodableSlotError,
} from './decode-failure.ts';
import { readSlotHealth, slotLoss, slotLostError } from './slot-health.ts';

/** How long the check of the slot after a failure may take (connecting included). */
const SLOT_CHECK_TIMEOUT_MS = 5_000;

/**
 * Per slot, the walsender failures of consecutive attempts (./decode-failure.ts). Module state: an
 * attempt's Capture is new, the count must span attempts (the components of one node run in one thread).
 */
const failuresBySlot = new Map<string, RepeatedFailures>();
/** Per slot, how many times a fresh slot hit PostgreSQL's slot-creation bug and was replaced. */
const replacementsBySlot = new Map<string, number>();

/**
 * After a failure: a slot invalidated meanwhile (START_REPLICATION fails with SQLSTATE 55000, or the
 * checkpointer ended the walsender) or dropped meanwhile blocks the capture (PGB2005), and so does the
 * same walsender error at the same slot position on {@link SAME_FAILURES_TO_BLOCK} attempts in a row
 * (PGB2006, ./decode-failure.ts); `error` is the cause. Undefined when the slot is fine or cannot be
 * checked: the failure is then retried as it is.
 */
export async function judgeFailure(
  o: { readonly node: string; readonly url: string },
  slot: string,
  error: unknown,
  streaming: boolean,
): Promise<PgbisyncError | undefined> {
  const failures = failuresBySlot.get(slot) ?? new RepeatedFailures();
  failuresBySlot.set(slot, failures);
  // Bounded: a node that does not answer must not hold up the restart of the failed capture.
  const db = newPgClient({
    connectionString: o.url,
    application_name: `pgbisync-capture-${o.node}`,
    connectionTimeoutMillis: SLOT_CHECK_TIMEOUT_MS,
    query_timeout: SLOT_CHECK_TIMEOUT_MS,
  });
  try {
    await db.connect();
    const health = await readSlotHealth(db, o.node, slot);
    const loss = slotLoss(health);
    if (loss !== undefined) {
      failures.reset();
      return health.resyncRequestedAt === null ? slotLostError(health, loss, error) : undefined;
    }
    const server = streaming ? serverError(error) : undefined;
    if (server === undefined || transientServerError(server.code)) {
      failures.reset();
      return undefined;
    }
    const failure = { ...server, confirmedLsn: health.confirmedFlushLsn };
    const replaced = replacementsBySlot.get(slot) ?? 0;
    if (
      isSlotCreationBug(failure) &&
      replaced < MAX_FRESH_SLOT_REPLACEMENTS &&
      health.resyncRequestedAt === null &&
      (await replaceFreshSlot(db, o.node, slot))
    ) {
      replacementsBySlot.set(slot, replaced + 1);
      failures.reset();
      return freshSlotReplacedError(o.node, slot, failure, error);
    }
    const count = failures.record(failure);
    return count >= SAME_FAILURES_TO_BLOCK
      ? undecodableSlotError(o.node, slot, failure, count, error)
      : undefined;
  } catch {
    return undefined;
  } finally {
    await db.end().catch(() => undefined);
  }
}

/**
 * A slot that confirmed nothing beyond the consistent point its creation recorded is dropped and a
 * re-copy requested, in one transaction with the check (the capture then makes a new slot and copies,
 * as after `pgbisync resync`): true when it was. Its walsender may still be ending: the drop waits
 * for it a few seconds. False when the slot moved on since its creation (then changes were confirmed
 * from it, and only an operator may decide: PGB2006) or was not this capture's.
 */
async function replaceFreshSlot(db: pg.Client, node: string, slot: string): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await db.query('BEGIN');
      const r = await db.query(
        `UPDATE pgbisync.capture_state s SET resync_requested_at = now()
           FROM pg_replication_slots r
          WHERE s.node = $1 AND s.slot = $2 AND r.slot_name = $2 AND r.confirmed_flush_lsn = s.consistent_lsn`,
        [node, slot],
      );
      if ((r.rowCount ?? 0) === 0) {
        await db.query('ROLLBACK');
        return false;
      }
      await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
      await db.query('COMMIT');
      return true;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => undefined);
      // 55006: the failed walsender has not released the slot yet.
      if ((error as { code?: string }).code !== '55006' || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** pgbisync.capture_state holds the consistent point of `slot`: `node`'s capture created it. */
export async function recordedSlot(db: pg.Client, node: string, slot: string): Promise<boolean> {
  const r = await db.query(
    'SELECT 1 FROM pgbisync.capture_state WHERE node = $1 AND slot = $2 AND consistent_lsn IS NOT NULL',
    [node, slot],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Clears the way for a new slot where one this capture never recorded making is (./capture.ts). Held by
 * a walsender of a pgbisync capture of the node, it is a former run's: a capture cut off (killed, its
 * lease lost) while its slot waited for running transactions, which slot creation does, leaves its
 * walsender making the slot alone, for as long as the longest of them lasts. The caller holds the
 * node's capture lease, so that walsender is ended (as a takeover ends a former owner's backend),
 * and the slot with it if unfinished. Returns the session that still holds it (another one: wait), or
 * undefined once the slot is gone.
 */
export async function releaseUnrecordedSlot(
  db: pg.Client,
  node: string,
  slot: string,
): Promise<{ readonly pid: number; readonly application: string } | undefined> {
  await db.query(
    `SELECT pg_terminate_backend(s.active_pid, 5000)
       FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
      WHERE s.slot_name = $1 AND a.application_name = $2`,
    [slot, `pgbisync-capture-${node}`],
  );
  const r = await db.query<{ pid: number | null; application: string | null }>(
    `SELECT s.active_pid AS pid, a.application_name AS application
       FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
      WHERE s.slot_name = $1`,
    [slot],
  );
  const left = r.rows[0];
  if (left === undefined) return undefined;
  if (left.pid !== null) return { pid: left.pid, application: left.application ?? '' };
  await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
  return undefined;
}

/**
 * Commits a catalog change (a temporary table dropped at commit) right after a slot's creation. Against
 * PostgreSQL's slot-creation bug (./decode-failure.ts): the historic catalog snapshot the decoder built
 * while the slot was being created, which may lack a relation's new file, is otherwise reused for every
 * later transaction until the database's next catalog change, hours later in a database without DDL;
 * this change makes the decoder build a new one from here on. Best effort: a role without the TEMP
 * privilege on the database skips it (the failure, should it come, is still caught: PGB2006).
 */
export async function nudgeCatalog(db: pg.Client): Promise<void> {
  try {
    await db.query('BEGIN');
    await db.query('CREATE TEMP TABLE pgbisync_slot_created () ON COMMIT DROP');
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    if ((error as { code?: string }).code !== '42501') throw error;
  }
}
