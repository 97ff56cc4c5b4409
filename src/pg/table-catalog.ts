/**
 * What pgbisync needs to know of a synced table, read from the catalog: columns with types, the primary
 * key, the replica identity. Used by setup/doctor (refuse tables without a key) and by the applier (column
 * types for casts, key columns for ON CONFLICT).
 */
import type pg from 'pg';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import type { ReplicaIdentity } from './pgoutput/messages.ts';
import { qualifiedName, splitTableName } from './sql-names.ts';

export interface CatalogColumn {
  readonly name: string;
  /** format_type(): e.g. "numeric(10,2)", "timestamp with time zone", "public.mood". */
  readonly type: string;
  /**
   * The type without its modifier, as a cast target: `"pg_catalog"."varchar"`, `"public"."mood"`. An
   * explicit cast to `varchar(3)` silently truncates (and to `bit(3)` pads); a cast to the bare type
   * leaves the length check to the assignment into the column, which rejects what does not fit.
   */
  readonly castType: string;
  readonly typeOid: number;
  readonly notNull: boolean;
  /** Column default is an identity or nextval(): inserts on two nodes can collide. */
  readonly sequenceBacked: boolean;
}

export interface CatalogTable {
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly CatalogColumn[];
  /** Primary key column names in key order; empty when there is none. */
  readonly primaryKey: readonly string[];
  readonly replicaIdentity: ReplicaIdentity;
  /** A partitioned table (relkind 'p'): synced through its root, its partitions are not listed. */
  readonly partitioned?: boolean;
  /** A partition: the root table of its tree ('schema.table'), which is what gets synced. */
  readonly partitionOf?: string;
}

/** Minimal client surface used here (pg.Client or pg.Pool). */
export interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * pg_class.relreplident, the letter pgoutput's Relation message also sends as its replica identity byte.
 * https://www.postgresql.org/docs/current/catalog-pg-class.html
 */
const REPLICA_IDENTITIES: Readonly<Record<string, ReplicaIdentity>> = {
  d: 'default', // the primary key
  n: 'nothing',
  f: 'full', // every column
  i: 'index', // the columns of the index named by REPLICA IDENTITY USING INDEX
};

/** The replica identity a relreplident letter stands for; undefined for a letter PostgreSQL does not use. */
export function replicaIdentityOf(relreplident: string): ReplicaIdentity | undefined {
  return Object.hasOwn(REPLICA_IDENTITIES, relreplident) ? REPLICA_IDENTITIES[relreplident] : undefined;
}

/**
 * The primary-key columns, in key order, of each table (empty for a table without one, or that does not
 * exist), in the order `tables` names them. The project's one reader of the primary key: the catalog view
 * below (setup, doctor, verify, the applier), the capture's record keys and the snapshot's key flags all
 * come from here. Returns text only, so it also works on a client that parses no types (the snapshot's).
 */
export async function readPrimaryKeys(
  db: Queryable,
  tables: readonly { readonly schema: string; readonly table: string }[],
): Promise<string[][]> {
  const r = await db.query<{ ord: string; name: string }>(
    `SELECT t.ord::text AS ord, a.attname AS name
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema_name, table_name, ord)
       JOIN pg_namespace n ON n.nspname = t.schema_name
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
       JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      ORDER BY t.ord, k.ord`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  const keys = tables.map((): string[] => []);
  for (const row of r.rows) keys[Number(row.ord) - 1]?.push(row.name);
  return keys;
}

/**
 * The tables among `tables` ('schema.table') that each of them references by a foreign key (itself
 * excluded), by name; a table referencing none of them is absent.
 */
export async function readReferencedTables(
  db: Queryable,
  tables: readonly string[],
): Promise<Map<string, string[]>> {
  const r = await db.query<{ child: string; parent: string }>(
    `SELECT DISTINCT cn.nspname || '.' || c.relname AS child, pn.nspname || '.' || p.relname AS parent
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
        AND cn.nspname || '.' || c.relname = ANY ($1::text[]) AND pn.nspname || '.' || p.relname = ANY ($1::text[])
      ORDER BY 1, 2`,
    [tables],
  );
  const out = new Map<string, string[]>();
  for (const { child, parent } of r.rows) out.set(child, [...(out.get(child) ?? []), parent]);
  return out;
}

/**
 * The leaf partitions of `qualified` (a quoted, qualified name), quoted and qualified; none for a table
 * that is not partitioned.
 */
export async function leafPartitions(db: Queryable, qualified: string): Promise<string[]> {
  const r = await db.query<{ name: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
       FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.isleaf AND t.relid <> $1::regclass ORDER BY 1`,
    [qualified],
  );
  return r.rows.map((row) => row.name);
}

/**
 * `tables` ('schema.table') with the leaf partitions of each partitioned one added: a partitioned
 * table's changes are published, and applied, as its partitions' (pgoutput without
 * publish_via_partition_root).
 */
export async function withLeafPartitions(db: Queryable, tables: readonly string[]): Promise<string[]> {
  const r = await db.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name
       FROM unnest($1::text[]) AS t(name)
       JOIN pg_class p ON p.oid = to_regclass(t.name) AND p.relkind = 'p'
       JOIN LATERAL pg_partition_tree(p.oid) tree ON tree.isleaf
       JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [
      tables.map((t) => {
        const { schema, table } = splitTableName(t);
        return qualifiedName(schema, table);
      }),
    ],
  );
  return [...tables, ...r.rows.map((row) => row.name)];
}

/** The root table ('schema.table') of the partition with OID `relid`; undefined for another relation. */
export async function partitionRootOf(db: Queryable, relid: number): Promise<string | undefined> {
  const r = await db.query<{ root: string }>(
    `SELECT n.nspname || '.' || c.relname AS root FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = pg_partition_root($1::oid::regclass) AND c.oid <> $1::oid`,
    [relid],
  );
  return r.rows[0]?.root;
}

/** Reads one table; undefined when it does not exist. */
export async function readTable(
  db: Queryable,
  schema: string,
  table: string,
): Promise<CatalogTable | undefined> {
  const rel = await db.query<{ oid: number; relreplident: string; relkind: string; root: string | null }>(
    `SELECT c.oid, c.relreplident, c.relkind,
            CASE WHEN c.relispartition THEN (SELECT rn.nspname || '.' || r.relname FROM pg_class r
              JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = pg_partition_root(c.oid)) END AS root
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, table],
  );
  const row = rel.rows[0];
  if (row === undefined) return undefined;
  const columns = await db.query<{
    name: string;
    type: string;
    cast_type: string;
    typeoid: number;
    notnull: boolean;
    seq: boolean;
  }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::int AS typeoid,
            quote_ident(tn.nspname) || '.' || quote_ident(t.typname) AS cast_type,
            a.attnotnull AS notnull,
            (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%') AS seq
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [row.oid],
  );
  const [primaryKey = []] = await readPrimaryKeys(db, [{ schema, table }]);
  return {
    schema,
    table,
    columns: columns.rows.map((c) => ({
      name: c.name,
      type: c.type,
      castType: c.cast_type,
      typeOid: c.typeoid,
      notNull: c.notnull,
      sequenceBacked: c.seq,
    })),
    primaryKey,
    replicaIdentity: replicaIdentityOf(row.relreplident) ?? 'default',
    ...(row.relkind === 'p' ? { partitioned: true } : {}),
    ...(row.root === null ? {} : { partitionOf: row.root }),
  };
}

/**
 * Reads a table that must exist and be syncable: it needs a primary key. REPLICA IDENTITY FULL is not
 * enough: the applier finds a row on the target, and last-writer-wins compares its versions, by the
 * primary key (without one, two nodes' rows cannot be told apart or matched, not even for insert-only
 * tables, whose replays would duplicate rows). `doctor` says the same, with the statement that fixes it.
 */
export async function requireSyncableTable(
  db: Queryable,
  node: string,
  schema: string,
  table: string,
): Promise<CatalogTable> {
  const found = await readTable(db, schema, table);
  if (found === undefined) {
    throw new FatalError(`table ${schema}.${table} does not exist on node ${node}`, {
      code: ErrorCode.SCHEMA_MISMATCH,
      hint: `create it on ${node} with the same definition as on the other nodes, or remove it from 'tables'`,
    });
  }
  if (found.partitionOf !== undefined) {
    throw new FatalError(`table ${schema}.${table} on node ${node} is a partition of ${found.partitionOf}`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `sync the partitioned table: put ${found.partitionOf} in 'tables' instead of its partitions (its changes are published, copied and applied through it)`,
    });
  }
  if (found.primaryKey.length === 0) {
    throw new FatalError(
      `table ${schema}.${table} on node ${node} has no primary key${found.replicaIdentity === 'full' ? ' (REPLICA IDENTITY FULL is not enough: rows are matched across nodes by primary key)' : ''}`,
      {
        code: ErrorCode.PG_NO_KEY,
        hint: `ALTER TABLE ${schema}.${table} ADD PRIMARY KEY (<columns that identify a row>) on every node; for an insert-only table without such columns (e.g. pgbench_history): ALTER TABLE ${schema}.${table} ADD COLUMN row_id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY; or remove it from 'tables'`,
      },
    );
  }
  return found;
}

/**
 * Expands include/exclude patterns (`*` wildcard) against the node's ordinary and partitioned tables;
 * partitions are left out (a partitioned table is synced through its root).
 */
export async function matchTables(
  db: Queryable,
  include: readonly string[],
  exclude: readonly string[],
): Promise<string[]> {
  const all = await db.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgbisync')
        AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1`,
  );
  const toRegex = (p: string) =>
    new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*')}$`);
  const inc = include.map(toRegex);
  const exc = exclude.map(toRegex);
  return all.rows.map((r) => r.name).filter((n) => inc.some((r) => r.test(n)) && !exc.some((r) => r.test(n)));
}

/**
 * Primary-key columns of the synced tables that have one ('schema.table' -> columns). pgoutput flags the
 * replica identity's columns as the key, which under REPLICA IDENTITY FULL is every column; the record
 * key must still be the primary key (as Debezium keys it, and as the snapshot does).
 */
export async function primaryKeysByTable(
  db: Queryable,
  tables: readonly string[],
): Promise<Map<string, readonly string[]>> {
  const keys = await readPrimaryKeys(db, tables.map(splitTableName));
  const byTable = new Map<string, readonly string[]>();
  for (const [i, table] of tables.entries()) {
    const key = keys[i] ?? [];
    if (key.length > 0) byTable.set(table, key);
  }
  return byTable;
}
