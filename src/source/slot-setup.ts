/**
 * The source node's replication objects: the publication over the synced tables and the permanent slot.
 * Creating the slot exports a snapshot that stays valid until the next command on the same replication
 * connection; the initial copy must be read inside it (see ./snapshot.ts).
 */
import { parseLsn } from '../pg/lsn.ts';
import type { ReplicationConnection } from '../pg/replication/replication-connection.ts';
import { qualifiedName, quoteIdent, splitTableName } from '../pg/sql-names.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode, RetryableError } from '../runtime/errors.ts';

/**
 * A partitioned table's changes are published as its root's (pgoutput converts its partitions' rows),
 * so they are applied to the root on the targets, whatever partitions those have.
 */
export const VIA_ROOT = 'publish_via_partition_root';

/** Creates or updates the publication so it holds exactly `tables`, partitioned ones by their root. */
export async function ensurePublication(
  db: Queryable,
  publication: string,
  tables: readonly string[],
): Promise<void> {
  const list = tables.map((t) => {
    const { schema, table } = splitTableName(t);
    return qualifiedName(schema, table);
  });
  const exists = await db.query<{ viaroot: boolean }>(
    'SELECT pubviaroot AS viaroot FROM pg_publication WHERE pubname = $1',
    [publication],
  );
  const row = exists.rows[0];
  if (row === undefined) {
    await db.query(
      `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list.join(', ')} WITH (${VIA_ROOT} = true)`,
    );
  } else {
    await db.query(`ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${list.join(', ')}`);
    if (!row.viaroot) await db.query(`ALTER PUBLICATION ${quoteIdent(publication)} SET (${VIA_ROOT} = true)`);
  }
}

export interface CreatedSlot {
  readonly consistentPoint: bigint;
  readonly snapshotName: string;
}

/** CREATE_REPLICATION_SLOT ... LOGICAL pgoutput, exporting its snapshot (FAILOVER: PostgreSQL 17+). */
export async function createSlotWithSnapshot(
  conn: ReplicationConnection,
  slot: string,
  failover = false,
): Promise<CreatedSlot> {
  const r = await conn.command<{ consistent_point: string; snapshot_name: string }>(
    `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${failover ? "(SNAPSHOT 'export', FAILOVER true)" : 'EXPORT_SNAPSHOT'}`,
  );
  const row = r.rows[0];
  if (row === undefined) {
    // Retried: a next attempt that finds the slot made but not recorded drops it and makes a new one.
    throw new RetryableError(
      `creating replication slot ${slot}: the server answered without the slot's row`,
      {
        code: ErrorCode.PG_CONNECTION,
        hint: 'check that the node url points at PostgreSQL itself, not at a connection pooler',
      },
    );
  }
  return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
}

/**
 * nodes[].failoverSlot: the node's slot must be a FAILOVER slot, which standbys with
 * sync_replication_slots = on keep in step, so that a promoted standby has it (PostgreSQL 17+). An
 * existing slot without the flag gets it (ALTER_REPLICATION_SLOT, while no walsender uses it: before
 * streaming). An older server blocks the capture with the fix.
 */
export async function ensureFailover(
  admin: Queryable,
  conn: ReplicationConnection,
  node: string,
  slot: string,
  exists: boolean,
): Promise<void> {
  const v = await admin.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  if (Number(v.rows[0]?.v ?? 0) < 170000) {
    throw new BlockedError(`capture of node ${node}: nodes[].failoverSlot needs PostgreSQL 17 or later`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: `upgrade ${node} to PostgreSQL 17+, or set failoverSlot: false (then a failover loses the slot: \`pgbisync resync ${node}\` re-copies)`,
    });
  }
  if (!exists) return; // created FAILOVER (createSlotWithSnapshot)
  const r = await admin.query<{ failover: boolean }>(
    'SELECT failover FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  if (r.rows[0]?.failover === false) {
    await conn.command(`ALTER_REPLICATION_SLOT ${quoteIdent(slot)} (FAILOVER true)`);
  }
}
