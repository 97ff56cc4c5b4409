/**
 * The upsert's checks that keep a deleted key deleted (./statement-builder.ts): SQL for the INSERT's
 * WHERE, over the incoming rows `i`. Parameters as the statements have them: $1 incoming commit time,
 * $2 source node, $3 this (target) node, $4 table name.
 *
 * The key's tombstone and the table's (key '{}', its latest TRUNCATE: see TableStatements.truncate) both
 * block, and so does the table's horizon: tombstones older than it were pruned
 * (../operate/tombstone-pruner.ts), so a change older than it, for a key this node lacks, is refused as
 * they would refuse it (no local node). A key the statement's snapshot shows a row at is not blocked:
 * its row goes through the upsert's ON CONFLICT guard. A blocked row's conflict is recorded
 * (update_deleted, keep_deleted).
 */
import { type ConflictPolicy, incomingWinsSql } from '../conflicts/policy.ts';
import { quoteLiteral } from '../pg/sql-names.ts';
import { VERSION_NODE, VERSION_TIME } from './row-version-sql.ts';

/**
 * The policy's guard as a text constant over $1 incoming time, $2 its node, $3 the version's time, $4
 * its node, for the functions that decide a conflict (pgbisync.incoming_wins, ../pg/pgbisync-schema.ts).
 * They run only where a conflict may be, so a statement carries this one constant instead of the
 * conflict branches' expressions, which PostgreSQL would build at every execution, taken or not.
 */
export function guardText(policy: ConflictPolicy): string {
  return quoteLiteral(incomingWinsSql(policy, '$1', '$2', '$3', '$4'));
}

export interface InsertCheckOptions {
  readonly policy: ConflictPolicy;
  /** A statement of one row (every one-row transaction). */
  readonly one: boolean;
  /** The incoming row's key as jsonb (keyJson of `i`). */
  readonly key: string;
  /** Whether the statement's snapshot shows a row at the incoming key (seenSql of `i`). */
  readonly seen: string;
  /** What decides an insert nothing blocks (`true`, or a partitioned table's lock of a seen key). */
  readonly insertMayGoOn: string;
}

/** The INSERT's WHERE: false where a tombstone or the horizon keeps the key deleted. */
export function insertUnlessDeleted(o: InsertCheckOptions): string {
  const policy = quoteLiteral(o.policy.policy);
  if (o.one) {
    // A statement of one row asks pgbisync.insert_blocked only when its key or table has a tombstone
    // or the table's horizon is not older than the change: a superset of where one blocks under every
    // policy (a horizon blocks only a change older than it). Its checks inline, as a statement of many
    // rows has them below, made PostgreSQL build their plans and expressions at every execution, taken
    // or not: with the conflict branch of ON CONFLICT in a call too, backend CPU per one-row
    // transaction of the steady mix 191 -> 167 us (docs/performance.md).
    const mayBlock = `(EXISTS (SELECT 1 FROM pgbisync.tombstones b
                  WHERE b.table_name = $4::text AND b.key IN (${o.key}, '{}'::jsonb))
                OR EXISTS (SELECT 1 FROM pgbisync.tombstone_horizon h
                  WHERE h.table_name = $4::text AND h.pruned_before >= $1::timestamptz))`;
    return `CASE WHEN CASE WHEN ${mayBlock} THEN CASE WHEN ${o.seen} THEN false
                  ELSE pgbisync.insert_blocked($4::text, ${o.key}, $1::timestamptz, $2::text, $3::text, ${policy}, ${guardText(o.policy)}) END
                ELSE false END THEN false ELSE ${o.insertMayGoOn} END`;
  }
  const wins = (time: string, node: string) => incomingWinsSql(o.policy, '$1', '$2', time, node);
  // The key's tombstone is a per-row subquery of the INSERT's input (OFFSET 0: not flattened into a
  // join, see TableStatements' #existingCte) that finds a tombstone only where it blocks the row,
  // recording that conflict as it does: one index probe per incoming row, and no tombstone CTE to
  // materialize and scan again (backend CPU per one-row transaction through the writer, PostgreSQL 18,
  // four alternated runs: 75.5-82.5 -> 71.5-79 us). CASE fixes the order of evaluation, so a conflict
  // is recorded only where its condition holds. (`IS NOT NULL`, not `OR true`: the planner folds
  // `x OR true` to true and drops the call.)
  const blocks = (where: string) => `EXISTS (SELECT 1 FROM pgbisync.tombstones b
                WHERE b.table_name = $4::text AND ${where}
                  AND CASE WHEN ${wins(VERSION_TIME('b'), VERSION_NODE('b'))} THEN false WHEN ${o.seen} THEN false
                    ELSE pgbisync.record_conflict($4::text, 'update_deleted', ${o.key}, NULL, ${VERSION_TIME('b')}, ${VERSION_NODE('b')},
                      NULL, $1::timestamptz, $2::text, 'keep_deleted', ${policy}) IS NOT NULL END OFFSET 0)`;
  const keyBlocks = blocks(`b.key = ${o.key}`);
  const truncateBlocks = blocks(`b.key = '{}'::jsonb`);
  const horizonBlocks = `EXISTS (SELECT 1 FROM pgbisync.tombstone_horizon h
                WHERE h.table_name = $4::text
                  AND CASE WHEN ${wins('h.pruned_before', "''::text")} THEN false WHEN ${o.seen} THEN false
                    ELSE pgbisync.record_conflict($4::text, 'update_deleted', ${o.key}, NULL, h.pruned_before, NULL,
                      NULL, $1::timestamptz, $2::text, 'keep_deleted', ${policy}) IS NOT NULL END OFFSET 0)`;
  const tableBlocks = `CASE WHEN ${truncateBlocks} THEN true ELSE ${horizonBlocks} END`;
  // The table's truncate tombstone and horizon are the same for every row of the statement: whether
  // either beats the incoming change is asked once (an uncorrelated subquery, one InitPlan per
  // execution), and only then row by row, to record each row's conflict. Asked per row, they took two
  // more index probes per row: 1,000-row transactions through the writer, backend CPU (three
  // alternated runs): inserts 590-630 -> 520-540 ms, updates 1230-1310 -> 1150-1220 ms per 100,000
  // rows. IS NOT TRUE: where the comparison is null, the per-row checks above block (their CASE falls
  // to ELSE).
  const tableMayBlock = `(SELECT EXISTS (SELECT 1 FROM pgbisync.tombstones b
                  WHERE b.table_name = $4::text AND b.key = '{}'::jsonb AND (${wins(VERSION_TIME('b'), VERSION_NODE('b'))}) IS NOT TRUE)
                OR EXISTS (SELECT 1 FROM pgbisync.tombstone_horizon h
                  WHERE h.table_name = $4::text AND (${wins('h.pruned_before', "''::text")}) IS NOT TRUE))`;
  // Likewise whether the table has any key's tombstone at all, asked once: a table with none (an
  // initial copy into a new node) skips the per-row probe and its key's jsonb. Row batches of an
  // initial copy (2,000 rows per statement, PostgreSQL 15, three alternated runs): 674-877 -> 565-689
  // ms per 100,000 rows. The per-row probe would see no more than this: both read the statement's
  // snapshot.
  const keyMayBlock = `(SELECT EXISTS (SELECT 1 FROM pgbisync.tombstones b
                  WHERE b.table_name = $4::text AND b.key <> '{}'::jsonb))`;
  return `CASE WHEN CASE WHEN ${keyMayBlock} THEN ${keyBlocks} ELSE false END THEN false
              WHEN CASE WHEN ${tableMayBlock} THEN ${tableBlocks} ELSE false END THEN false ELSE ${o.insertMayGoOn} END`;
}
