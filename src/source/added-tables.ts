/**
 * Tables added to `tables` after a node's initial snapshot. The slot streams only what its publication
 * holds, and the initial snapshot copied only the tables of its day: a table added later would carry
 * over its future changes (once `pgbisync setup` put it in the publication) but never its existing rows,
 * silently.
 *
 * So the capture records which tables its copies covered (pgbisync.capture_state.copied_tables) and, at
 * its start, (1) refuses to stream while a synced table is missing from its publication (blocked, with
 * `pgbisync setup` as the fix), and (2) copies the tables not covered yet, with each row's own commit
 * time, before it streams on (./capture.ts). The copy is read while the node takes writes: the stream
 * replays every change since the slot's position after it, and the appliers keep the newer version of
 * every row (last-writer-wins), as for a re-copy after a lost slot.
 */
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';

/** Blocks when a table of `tables` is not in `publication` (its changes would never be streamed). */
export async function requirePublished(
  db: Queryable,
  node: string,
  publication: string,
  tables: readonly string[],
): Promise<void> {
  // pg_publication_rel: the tables named in the publication (pg_publication_tables would list a
  // partitioned table's partitions instead of it when the publication is not via its root).
  const r = await db.query<{ t: string; partitioned: boolean; viaroot: boolean }>(
    `SELECT n.nspname || '.' || c.relname AS t, c.relkind = 'p' AS partitioned, p.pubviaroot AS viaroot
       FROM pg_publication_rel pr
       JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = $1`,
    [publication],
  );
  const published = new Set(r.rows.map((row) => row.t));
  const missing = tables.filter((t) => !published.has(t));
  const byPartition = r.rows.filter((row) => row.partitioned && !row.viaroot).map((row) => row.t);
  if (missing.length === 0 && byPartition.length > 0) {
    // Set up by an earlier version: the partitions' changes would be named by partition, and the
    // deletes this node remembers are named by the partitioned table.
    throw new BlockedError(
      `capture of node ${node}: publication ${publication} publishes partitioned table(s) ${byPartition.join(', ')} partition by partition (publish_via_partition_root is off)`,
      {
        code: ErrorCode.PG_PREREQUISITE,
        hint: 'run `pgbisync setup` (it sets publish_via_partition_root, so the changes are published, and applied, by the partitioned table)',
      },
    );
  }
  if (missing.length === 0) return;
  throw new BlockedError(
    `capture of node ${node}: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} synced (config tables) but not in publication ${publication}: ${missing.length === 1 ? 'its' : 'their'} changes would not be captured`,
    {
      code: ErrorCode.PG_PREREQUISITE,
      hint: 'run `pgbisync setup` (it adds synced tables to the publication, with their triggers); the capture then copies the added tables and streams on',
    },
  );
}

/**
 * The synced tables the node's copies did not cover. A capture state from before this record existed
 * (NULL) counts as having copied every table synced now: nothing is re-copied on upgrade.
 */
export async function tablesToCopy(
  db: Queryable,
  node: string,
  tables: readonly string[],
): Promise<string[]> {
  // to_jsonb: a schema set up before the column existed has none (`pgbisync setup` adds it; until
  // then nothing is recorded, and the publication check still guards the stream).
  const r = await db.query<{ copied: string[] | null; known: boolean }>(
    `SELECT to_jsonb(s) -> 'copied_tables' AS copied, to_jsonb(s) ? 'copied_tables' AS known
       FROM pgbisync.capture_state s WHERE s.node = $1`,
    [node],
  );
  const row = r.rows[0];
  if (row === undefined || !row.known) return [];
  const copied = row.copied;
  if (copied === null) {
    await recordCopied(db, node, tables);
    return [];
  }
  const synced = new Set(tables);
  const done = new Set(copied);
  // A table no longer synced leaves the record: added again later, it is copied again.
  if (copied.some((t) => !synced.has(t))) {
    await recordCopied(
      db,
      node,
      copied.filter((t) => synced.has(t)),
    );
  }
  return tables.filter((t) => !done.has(t));
}

/** Records that the node's copies cover `tables` (exactly: a table no longer synced is copied again if re-added). */
export async function recordCopied(db: Queryable, node: string, tables: readonly string[]): Promise<void> {
  await db.query('UPDATE pgbisync.capture_state SET copied_tables = $2::text[] WHERE node = $1', [
    node,
    [...tables],
  ]);
}
