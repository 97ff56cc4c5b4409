/**
 * `pgbisync verify --repair`: makes the differing rows found by verify equal on both nodes by copying the
 * winning version, decided by the conflict policy the applier uses (`beats` in ../conflicts/policy.ts; by
 * default last-writer-wins on `pg_xact_commit_timestamp(xmin)`, ties broken by node name).
 *
 * - Row on both nodes: the later version is upserted onto the other node.
 * - Row on one node only: the other node's pgbisync.tombstones decides, the key's or the table's (its
 *   last TRUNCATE), the newer of the two. A tombstone newer than the row means the row was deleted
 *   after it was written: the row is deleted where it remains. Without a newer
 *   tombstone the existing row wins and is copied.
 *
 * Every repair write is one target transaction in a session bound to the replication origin
 * `pgbisync_<winning node>@<target>`, with `pg_replication_origin_xact_setup` giving it the winner's commit time:
 * the target's capture drops it (no loop, nothing re-published), and the copy carries the same version
 * (time and node) as the original, so later conflicts resolve the same way on every node. Writes go
 * through the applier's guarded statements (../sink/statement-builder.ts): a change committed on the
 * target after verify read it is not overwritten by an older version. Like the applier's, the session
 * writes with session_replication_role = replica (../sink/apply-session.ts): the node's ordinary
 * triggers and rules do not fire on the copies.
 *
 * The applier of `pgbisync run` holds these origins while it runs (an origin is bound to one session at a
 * time): stop `run` during a repair. Rows sharing a version are written in one transaction; each other
 * version is its own transaction (one commit timestamp per transaction).
 */
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { beats, type ConflictPolicy, type RowVersion } from '../conflicts/policy.ts';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { objectNames, quoteIdent, quoteLiteral, splitTableName } from '../pg/sql-names.ts';
import { type CatalogTable, readTable } from '../pg/table-catalog.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { classifyPgError } from '../runtime/pg-errors.ts';
import { setReplicaRole } from '../sink/apply-session.ts';
import { TableStatements } from '../sink/statement-builder.ts';
import { connectNode, policyFor } from './sync-plan.ts';
import type { PairDifferences } from './verify.ts';
import { prepareComparableSession } from './verify-sql.ts';

export interface PairRepair {
  readonly table: string;
  readonly reference: string;
  readonly node: string;
  /** Rows written (inserted or updated) on the reference / on the node. */
  readonly copiedToReference: number;
  readonly copiedToNode: number;
  readonly deletedOnReference: number;
  readonly deletedOnNode: number;
  /** Keys whose two versions are equal in time and node: no winner, left as they are. */
  readonly unresolved: number;
}

/** A row version as read from a node: commit time (null = unknown/frozen, the oldest) and writing node. */
interface Version extends RowVersion {
  /** The commit time as timestamptz text (the Unix epoch when unknown), for pg_replication_origin_xact_setup. */
  readonly ts: string;
  readonly node: string;
}

/** One connection per node, shared by every table; bound to at most one origin at a time. */
interface Session {
  readonly node: string;
  readonly db: pg.Client;
  origin: string | undefined;
}

interface Side {
  readonly node: string;
  readonly db: pg.Client;
  readonly session: Session;
  readonly catalog: CatalogTable;
  readonly statements: TableStatements;
}

interface Action {
  readonly kind: 'upsert' | 'delete';
  readonly target: Side;
  readonly holder: Side;
  readonly version: Version;
  readonly key: readonly string[];
}

const BATCH_KEYS = 1000;

export async function repair(config: Config, differences: readonly PairDifferences[]): Promise<PairRepair[]> {
  const sessions = new Map<string, Session>();
  const policies = policyFor(config);
  const session = async (node: string): Promise<Session> => {
    const existing = sessions.get(node);
    if (existing !== undefined) return existing;
    const db = await connectNode(config.nodes.find((n) => n.name === node)!, 'repair');
    const created: Session = { node, db, origin: undefined };
    sessions.set(node, created);
    await prepareComparableSession(db);
    // Idempotent (as in setup): the guard functions, tombstones and conflict log the writes use.
    await ensurePgbisyncSchema(db);
    // A copy is an applied row: the node's ordinary triggers must not fire on it (a trigger stamping
    // rows would make the copy differ from the original), as for the applier's writes.
    await setReplicaRole(db, `repairing ${node}`, node);
    return created;
  };
  try {
    const out: PairRepair[] = [];
    for (const diff of differences) {
      if (diff.keys.length === 0) continue;
      const { schema, table } = splitTableName(diff.table);
      const policy = policies(diff.table);
      const side = async (node: string): Promise<Side> => {
        const s = await session(node);
        const catalog = (await readTable(s.db, schema, table))!;
        return { node, db: s.db, session: s, catalog, statements: new TableStatements(catalog, policy) };
      };
      const ref = await side(diff.reference);
      const other = await side(diff.node);
      const counts = {
        copiedToReference: 0,
        copiedToNode: 0,
        deletedOnReference: 0,
        deletedOnNode: 0,
        unresolved: 0,
      };
      for (let i = 0; i < diff.keys.length; i += BATCH_KEYS) {
        const keys = diff.keys.slice(i, i + BATCH_KEYS);
        const actions = await decide(diff.table, policy, ref, other, keys, counts);
        await execute(diff.table, actions);
        for (const a of actions) {
          const onRef = a.target === ref;
          if (a.kind === 'upsert') counts[onRef ? 'copiedToReference' : 'copiedToNode']++;
          else counts[onRef ? 'deletedOnReference' : 'deletedOnNode']++;
        }
      }
      out.push({ table: diff.table, reference: diff.reference, node: diff.node, ...counts });
    }
    return out;
  } finally {
    for (const s of sessions.values()) await s.db.end().catch(() => undefined);
  }
}

/** Reads both sides' versions (and tombstones for missing rows) and picks the winner per key. */
async function decide(
  table: string,
  policy: ConflictPolicy,
  a: Side,
  b: Side,
  keys: readonly (readonly string[])[],
  counts: { unresolved: number },
): Promise<Action[]> {
  const [va, vb] = await Promise.all([rowVersions(a, keys), rowVersions(b, keys)]);
  // Tombstones are looked up by the key as the delete trigger wrote it (jsonb of the key columns).
  const missingOn = async (side: Side, holder: Map<number, { version: Version; keyJson: string }>) => {
    const wanted = [...holder.entries()].filter(([i]) => !(side === a ? va : vb).has(i));
    return tombstones(side, table, policy, wanted);
  };
  const [ta, tb] = await Promise.all([missingOn(a, vb), missingOn(b, va)]);
  const actions: Action[] = [];
  keys.forEach((key, i) => {
    const ra = va.get(i)?.version;
    const rb = vb.get(i)?.version;
    if (ra !== undefined && rb !== undefined) {
      if (beats(policy, ra, rb)) actions.push({ kind: 'upsert', target: b, holder: a, version: ra, key });
      else if (beats(policy, rb, ra))
        actions.push({ kind: 'upsert', target: a, holder: b, version: rb, key });
      else counts.unresolved++;
      return;
    }
    const [row, holder, target, tomb] =
      ra !== undefined ? [ra, a, b, tb.get(i)] : rb !== undefined ? [rb, b, a, ta.get(i)] : [];
    if (row === undefined || holder === undefined || target === undefined) return; // gone on both since
    if (tomb !== undefined && beats(policy, tomb, row)) {
      actions.push({ kind: 'delete', target: holder, holder: target, version: tomb, key });
    } else if (tomb === undefined || beats(policy, row, tomb)) {
      actions.push({ kind: 'upsert', target, holder, version: row, key });
    } else {
      counts.unresolved++;
    }
  });
  return actions;
}

const VERSION_COLUMNS = (x: string, localParam: string) => `
  vt.v::text AS ts,
  (extract(epoch FROM vt.v) * 1000000)::bigint::text AS us,
  pgbisync.version_node(${x}.xmin, ${localParam}::text) AS node`;

interface VersionRow {
  readonly i: number;
  readonly ts: string;
  readonly us: string | null;
  readonly node: string;
}

const toVersion = (r: VersionRow): Version => ({
  commitUs: r.us === null ? null : BigInt(r.us),
  ts: r.ts,
  node: r.node,
});

/** Key arrays as unnest() input: one text[] per key column, plus a join on the typed key. */
function keyInput(catalog: CatalogTable, keys: readonly (readonly string[])[], first: number) {
  const types = new Map(catalog.columns.map((c) => [c.name, c.type]));
  const pk = catalog.primaryKey;
  return {
    from: `unnest(${pk.map((_, j) => `$${first + j}::text[]`).join(', ')}) WITH ORDINALITY AS o(${pk.map((_, j) => `k${j}`).join(', ')}, i)`,
    on: pk.map((k, j) => `t.${quoteIdent(k)} = o.k${j}::${types.get(k)}`).join(' AND '),
    values: pk.map((_, j) => keys.map((k) => k[j] ?? null)),
  };
}

/** Versions of the rows present on a side, by index into `keys`, with the key as the trigger's jsonb. */
async function rowVersions(
  side: Side,
  keys: readonly (readonly string[])[],
): Promise<Map<number, { version: Version; keyJson: string }>> {
  const input = keyInput(side.catalog, keys, 2);
  const keyJson = `jsonb_build_object(${side.catalog.primaryKey.map((k) => `${quoteLiteral(k)}, t.${quoteIdent(k)}`).join(', ')})::text`;
  const r = await side.db.query<VersionRow & { key_json: string }>(
    `SELECT (o.i - 1)::int AS i, ${VERSION_COLUMNS('t', '$1')}, ${keyJson} AS key_json
       FROM ${input.from} JOIN ${qualified(side.catalog)} t ON ${input.on}
       CROSS JOIN LATERAL (SELECT pgbisync.version_time(t.xmin) AS v) vt`,
    [side.node, ...input.values],
  );
  return new Map(r.rows.map((row) => [row.i, { version: toVersion(row), keyJson: row.key_json }]));
}

/**
 * The deletes a side remembers of keys it lacks, by index into the batch's keys: the key's tombstone or
 * the table's (key '{}', its last TRUNCATE), whichever the policy ranks newer.
 */
async function tombstones(
  side: Side,
  table: string,
  policy: ConflictPolicy,
  wanted: readonly [number, { keyJson: string }][],
): Promise<Map<number, Version>> {
  if (wanted.length === 0) return new Map();
  const r = await side.db.query<VersionRow>(
    `SELECT w.i, ${VERSION_COLUMNS('b', '$1')}
       FROM unnest($3::int[], $4::jsonb[]) AS w(i, k)
       JOIN pgbisync.tombstones b ON b.table_name = $2 AND b.key IN (w.k, '{}'::jsonb)
       CROSS JOIN LATERAL (SELECT pgbisync.version_time(b.xmin) AS v) vt`,
    [side.node, table, wanted.map(([i]) => i), wanted.map(([, w]) => w.keyJson)],
  );
  const newest = new Map<number, Version>();
  for (const row of r.rows) {
    const v = toVersion(row);
    const seen = newest.get(row.i);
    if (seen === undefined || beats(policy, v, seen)) newest.set(row.i, v);
  }
  return newest;
}

/** Writes the actions: one transaction per (target, kind, version), under the winner's origin. */
async function execute(table: string, actions: readonly Action[]): Promise<void> {
  const groups = new Map<string, Action[]>();
  for (const a of actions) {
    const id = `${a.target.node}\u0000${a.kind}\u0000${a.version.node}\u0000${a.version.ts}`;
    const g = groups.get(id);
    if (g === undefined) groups.set(id, [a]);
    else g.push(a);
  }
  for (const group of groups.values()) {
    const { target, holder, kind, version } = group[0]!;
    const keys = group.map((a) => a.key);
    const common = [version.ts, version.node, target.node, table];
    let text: string;
    let arrays: (string | null)[][];
    if (kind === 'delete') {
      text = target.statements.delete();
      arrays = target.catalog.primaryKey.map((_, j) => keys.map((k) => k[j] ?? null));
    } else {
      const columns = target.catalog.columns.map((c) => c.name);
      text = target.statements.upsert('u', columns);
      arrays = await rowValues(holder, columns, keys);
      if ((arrays[0]?.length ?? 0) === 0) continue; // deleted on the holder since
    }
    await bindOrigin(target, version.node);
    try {
      await target.db.query('BEGIN');
      await target.db.query("SELECT pg_replication_origin_xact_setup('0/0', $1::timestamptz)", [version.ts]);
      await target.db.query(text, [...common, ...arrays]);
      await target.db.query('COMMIT');
    } catch (error) {
      await target.db.query('ROLLBACK').catch(() => undefined);
      throw classifyPgError(error, `repairing ${table} on ${target.node}`);
    }
  }
}

/** Column values as text arrays (one per column) of the holder's rows for `keys`. */
async function rowValues(
  holder: Side,
  columns: readonly string[],
  keys: readonly (readonly string[])[],
): Promise<(string | null)[][]> {
  const input = keyInput(holder.catalog, keys, 1);
  const r = await holder.db.query<{ v: (string | null)[] }>(
    `SELECT ARRAY[${columns.map((c) => `t.${quoteIdent(c)}::text`).join(', ')}] AS v
       FROM ${input.from} JOIN ${qualified(holder.catalog)} t ON ${input.on} ORDER BY o.i`,
    input.values,
  );
  return columns.map((_, c) => r.rows.map((row) => row.v[c] ?? null));
}

/** Binds the session to the origin of `node` on this side (created when missing), switching from another. */
async function bindOrigin(side: Side, node: string): Promise<void> {
  const origin = objectNames.origin(node, side.node);
  const session = side.session;
  if (session.origin === origin) return;
  try {
    if (session.origin !== undefined) await side.db.query('SELECT pg_replication_origin_session_reset()');
    session.origin = undefined;
    await side.db.query(
      'SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)',
      [origin],
    );
    await side.db.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
    session.origin = origin;
  } catch (error) {
    if ((error as { code?: unknown }).code === '55006') {
      throw new FatalError(`replication origin ${origin} on ${side.node} is in use by another session`, {
        code: ErrorCode.PG_PREREQUISITE,
        hint: 'stop `pgbisync run` (its applier holds the origin) while repairing, then start it again',
        cause: error,
      });
    }
    throw classifyPgError(error, `binding ${side.node} to origin ${origin}`);
  }
}

function qualified(catalog: CatalogTable): string {
  return `${quoteIdent(catalog.schema)}.${quoteIdent(catalog.table)}`;
}
