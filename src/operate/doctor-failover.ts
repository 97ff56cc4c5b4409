/**
 * doctor's checks for a node whose slot is to survive a failover (nodes[].failoverSlot): PostgreSQL
 * 17+, the slot marked FAILOVER, and the primary waiting for its standbys' slot sync before it sends
 * changes to pgbisync (synchronized_standby_slots), so a promoted standby's slot is never behind what
 * pgbisync already received. What the standby needs (sync_replication_slots = on, hot_standby_feedback
 * = on, primary_slot_name, a dbname in primary_conninfo) is said in the fix: doctor only reaches the
 * primary.
 */
import type pg from 'pg';
import type { NodeConfig } from '../config/schema.ts';
import { objectNames } from '../pg/sql-names.ts';
import type { Emit } from './doctor-report.ts';

const STANDBY_SETTINGS =
  'on each standby: sync_replication_slots = on, hot_standby_feedback = on, primary_slot_name set, dbname in primary_conninfo';

export async function checkFailoverSlot(db: pg.Client, node: NodeConfig, emit: Emit): Promise<void> {
  if (!node.failoverSlot) return;
  const r = await db.query<{ v: number; standby_slots: string | null; failover: boolean | null }>(
    `SELECT current_setting('server_version_num')::int AS v,
            current_setting('synchronized_standby_slots', true) AS standby_slots,
            (SELECT (to_jsonb(s) ->> 'failover')::boolean FROM pg_replication_slots s WHERE slot_name = $1) AS failover`,
    [objectNames.slot(node.name)],
  );
  const row = r.rows[0]!;
  if (row.v < 170000) {
    emit(
      'failover_slot',
      'FAIL',
      'nodes[].failoverSlot needs PostgreSQL 17 or later (failover slots)',
      `upgrade ${node.name}, or set failoverSlot: false (a failover then loses the slot: pgbisync resync ${node.name} re-copies)`,
    );
    return;
  }
  if (row.failover === false) {
    emit(
      'failover_slot',
      'warn',
      `slot ${objectNames.slot(node.name)} is not a failover slot yet`,
      'the capture marks it at its next start (pgbisync run)',
    );
  } else if ((row.standby_slots ?? '') === '') {
    emit(
      'failover_slot',
      'warn',
      'synchronized_standby_slots is empty: pgbisync may receive changes a standby slot has not synced, which a promoted standby would send again or lack',
      `ALTER SYSTEM SET synchronized_standby_slots = '<the standbys' physical slots>'; SELECT pg_reload_conf(); and ${STANDBY_SETTINGS}`,
    );
  } else {
    emit(
      'failover_slot',
      'ok',
      `failover slot; synchronized_standby_slots = ${row.standby_slots}; ${STANDBY_SETTINGS}`,
    );
  }
}
