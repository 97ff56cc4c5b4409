/**
 * SQL for the version (commit time and node) of a target row, read from its xmin, as the applier's
 * guards compare it with an incoming change's (./statement-builder.ts). Parameters: $2 source node,
 * $3 this (target) node, $4 table name.
 */

/** The commit time of the row version whose xmin is `xmin`. */
export const versionTime = (xmin: string) => `pgbisync.version_time(${xmin})`;
/**
 * The node that wrote the row version whose xmin is `xmin`. A version this very transaction wrote (an
 * earlier change of the same source transaction, in another statement) is the incoming source's: no
 * conflict with itself.
 */
export const versionNode = (xmin: string) =>
  `CASE WHEN ${xmin} = xid(pg_current_xact_id_if_assigned()) THEN $2::text ELSE pgbisync.version_node(${xmin}, $3::text) END`;
export const VERSION_TIME = (x: string) => versionTime(`${x}.xmin`);
export const VERSION_NODE = (x: string) => versionNode(`${x}.xmin`);

/**
 * The xmin of the row ON CONFLICT found, on a partitioned table (`qualified`): there that row comes
 * without system columns ("cannot retrieve a system column in this context"), so it is read by key
 * (`keyJoin` of alias x to t), locked: FOR UPDATE reads the latest version, the one ON CONFLICT locked.
 * A row the statement's snapshot does not show (inserted by a concurrent transaction) fails the
 * statement with a serialization failure: the transaction is applied again, with a snapshot that shows it.
 */
export function lockedConflictXmin(qualified: string, keyJoin: string, keyJson: string): string {
  return `coalesce((SELECT x.xmin FROM ${qualified} x WHERE ${keyJoin} FOR UPDATE),
      pgbisync.inserted_meanwhile($4::text, ${keyJson}))`;
}

/**
 * On a partitioned table, RETURNING has no system columns of an updated row, so `xmax = 0` cannot tell
 * a key the snapshot saw (`seen`) that the INSERT had to insert anew (deleted meanwhile). Such a key is
 * locked first (FOR UPDATE, `keyJoin` of alias x to i): no delete can come between; a key deleted
 * meanwhile fails the statement with the same serialization failure.
 */
export function insertAfterLockingSeen(
  qualified: string,
  seen: string,
  keyJoin: string,
  keyJson: string,
): string {
  return `CASE WHEN NOT ${seen} THEN true
        WHEN EXISTS (SELECT 1 FROM ${qualified} x WHERE ${keyJoin} FOR UPDATE) THEN true
        ELSE pgbisync.deleted_meanwhile(true, $4::text, ${keyJson}) END`;
}
