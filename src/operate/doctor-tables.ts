/**
 * doctor's table checks: each synced table on each node (exists, primary key, replica identity, owned by
 * the user, sequence-filled columns) and across nodes (same columns, types and primary key).
 */
import type pg from 'pg';
import type { Config, NodeConfig } from '../config/schema.ts';
import { qualifiedName, quoteIdent, splitTableName } from '../pg/sql-names.ts';
import { type CatalogTable, readTable } from '../pg/table-catalog.ts';
import type { Emit } from './doctor-report.ts';

export async function checkTable(
  db: pg.Client,
  node: NodeConfig,
  name: string,
  firstNode: string,
  emit: Emit,
  /** Setup ran on this node: ownership is the setup role's need, not this user's. */
  setupDone = false,
): Promise<CatalogTable | undefined> {
  const { schema, table } = splitTableName(name);
  const check = `table ${name}`;
  const found = await readTable(db, schema, table);
  if (found === undefined) {
    emit(
      check,
      'FAIL',
      `table ${name} does not exist on ${node.name}`,
      node.name === firstNode
        ? `create ${name} on ${node.name}, or remove it from 'tables'`
        : `create ${name} on ${node.name} with the same definition as on ${firstNode}, or remove it from 'tables'`,
    );
    return undefined;
  }
  const qualified = qualifiedName(schema, table);
  let problems = 0;
  const fail: Emit = (c, status, detail, fix) => {
    problems++;
    emit(c, status, detail, fix);
  };
  if (found.primaryKey.length === 0) {
    // REPLICA IDENTITY FULL would let capture publish updates, but the applier and verify match rows by
    // primary key (ON CONFLICT, guarded deletes): a key is required.
    const unique = await db.query<{ idx: string }>(
      `SELECT quote_ident(ic.relname) AS idx FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
          AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k(n) JOIN pg_attribute a
                           ON a.attrelid = i.indrelid AND a.attnum = k.n WHERE NOT a.attnotnull)
        ORDER BY i.indnatts LIMIT 1`,
      [qualified],
    );
    const idx = unique.rows[0]?.idx;
    fail(
      check,
      'FAIL',
      `${name} has no primary key${found.replicaIdentity === 'full' ? ' (REPLICA IDENTITY FULL is not enough: the applier matches rows by primary key)' : ''}`,
      idx === undefined
        ? `ALTER TABLE ${qualified} ADD PRIMARY KEY (<columns that identify a row>);`
        : `ALTER TABLE ${qualified} ADD PRIMARY KEY USING INDEX ${idx};`,
    );
  }
  if (found.replicaIdentity === 'nothing') {
    fail(
      check,
      'FAIL',
      `${name} has REPLICA IDENTITY NOTHING: updates and deletes cannot be published`,
      `ALTER TABLE ${qualified} REPLICA IDENTITY DEFAULT;`,
    );
  } else if (found.replicaIdentity === 'index') {
    fail(
      check,
      'warn',
      `${name} has REPLICA IDENTITY USING INDEX: old keys of updates and deletes are not the primary key`,
      `ALTER TABLE ${qualified} REPLICA IDENTITY DEFAULT;`,
    );
  }
  if (found.replicaIdentity === 'default' && found.primaryKey.length > 0) {
    // An update that leaves a TOASTed value alone sends it as unchanged; a node that lacks the row then
    // cannot bring it back whole from the event (recorded as needs_repair, then read from the source:
    // src/sink/toast-repair.ts). FULL logs the old row whole, and capture fills the unchanged values from it.
    const toastable = await db.query<{ cols: string | null }>(
      `SELECT string_agg(attname, ', ' ORDER BY attnum) AS cols FROM pg_attribute
        WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attstorage <> 'p'`,
      [qualified],
    );
    const cols = toastable.rows[0]?.cols;
    if (cols !== null && cols !== undefined) {
      fail(
        check,
        'warn',
        `${name} has TOASTable columns (${cols}) and REPLICA IDENTITY DEFAULT: an update that leaves a large value unchanged does not carry it, so a node that lacks the row (deleted there earlier) records it as needs_repair and its applier reads the row from the source afterwards (one more read per such key)`,
        `ALTER TABLE ${qualified} REPLICA IDENTITY FULL; (costs more WAL per update and delete: the whole old row is logged)`,
      );
    }
  }
  const owner = await db.query<{ owner: string; owned: boolean; usr: string }>(
    `SELECT pg_get_userbyid(c.relowner) AS owner, current_user AS usr,
            (pg_has_role(c.relowner, 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) AS owned
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [qualified],
  );
  const o = owner.rows[0]!;
  if (!o.owned && !setupDone) {
    fail(
      check,
      'FAIL',
      `${name} is owned by ${o.owner}: CREATE PUBLICATION ... FOR TABLE and the delete trigger need ownership`,
      `ALTER TABLE ${qualified} OWNER TO ${quoteIdent(o.usr)};`,
    );
  }
  if (problems === 0) {
    emit(
      check,
      'ok',
      `primary key (${found.primaryKey.join(', ')}), ${found.columns.length} columns, replica identity ${found.replicaIdentity}`,
    );
  }
  return found;
}

/**
 * Sequence-filled key columns: with N nodes each handing out 1, 2, 3..., inserts on two nodes collide
 * (last-writer-wins then silently keeps one of the rows). Interleaved sequences (node k of N gives
 * k, k+N, ...; `setup --interleave-sequences`) or UUIDs avoid that.
 */
export async function checkSequences(
  db: pg.Client,
  config: Config,
  tables: readonly CatalogTable[],
  nodeIndex: number,
  emit: Emit,
): Promise<void> {
  const n = config.nodes.length;
  for (const t of tables) {
    const cols = t.columns.filter((c) => c.sequenceBacked);
    if (cols.length === 0) continue;
    const name = `${t.schema}.${t.table}`;
    const seqs = await db.query<{ col: string; seq: string }>(
      `SELECT a.attname AS col, format('%I.%I', sn.nspname, s.relname) AS seq FROM pg_depend d
         JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.refobjid = $1::regclass AND d.deptype IN ('a', 'i')`,
      [qualifiedName(t.schema, t.table)],
    );
    const notInterleaved: string[] = [];
    for (const c of cols) {
      const seq = seqs.rows.find((r) => r.col === c.name)?.seq;
      if (seq === undefined) {
        notInterleaved.push(c.name);
        continue;
      }
      const v = await db.query<{ inc: string; last: string }>(
        `SELECT s.seqincrement::text AS inc, l.last_value::text AS last FROM pg_sequence s, ${seq} l
          WHERE s.seqrelid = $1::regclass`,
        [seq],
      );
      const inc = BigInt(v.rows[0]?.inc ?? '1');
      const last = BigInt(v.rows[0]?.last ?? '1');
      const residue = (((last - BigInt(nodeIndex + 1)) % BigInt(n)) + BigInt(n)) % BigInt(n);
      if (inc % BigInt(n) !== 0n || residue !== 0n) notInterleaved.push(c.name);
    }
    if (notInterleaved.length === 0) {
      emit(
        `sequences ${name}`,
        'ok',
        `${cols.map((c) => c.name).join(', ')} interleaved (node ${nodeIndex + 1} of ${n})`,
      );
    } else {
      emit(
        `sequences ${name}`,
        'warn',
        `${notInterleaved.join(', ')} filled by a sequence on a table synced both ways: inserts on two nodes can take the same value`,
        'pgbisync setup --interleave-sequences  (or generate keys with gen_random_uuid())',
      );
    }
  }
}

/** Same columns (name, type) and primary key on every node as on the first; names the differing column. */
export function compareTables(
  first: { node: string; tables: Map<string, CatalogTable> },
  other: { node: string; tables: Map<string, CatalogTable> },
  emit: Emit,
): void {
  for (const [name, a] of first.tables) {
    const b = other.tables.get(name);
    if (b === undefined) continue; // reported by checkTable
    const check = `columns ${name}`;
    const qualified = qualifiedName(a.schema, a.table);
    const bCols = new Map(b.columns.map((c) => [c.name, c]));
    const aCols = new Map(a.columns.map((c) => [c.name, c]));
    let problems = 0;
    for (const c of a.columns) {
      const d = bCols.get(c.name);
      if (d === undefined) {
        problems++;
        emit(
          check,
          'FAIL',
          `column ${c.name} (${c.type}) exists on ${first.node} but not on ${other.node}`,
          `on ${other.node}: ALTER TABLE ${qualified} ADD COLUMN ${quoteIdent(c.name)} ${c.type};`,
        );
      } else if (d.type !== c.type) {
        problems++;
        emit(
          check,
          'FAIL',
          `column ${c.name} is ${c.type} on ${first.node} but ${d.type} on ${other.node}`,
          `on ${other.node}: ALTER TABLE ${qualified} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.type};`,
        );
      }
    }
    for (const d of b.columns) {
      if (aCols.has(d.name)) continue;
      problems++;
      emit(
        check,
        'FAIL',
        `column ${d.name} (${d.type}) exists on ${other.node} but not on ${first.node}`,
        `on ${first.node}: ALTER TABLE ${qualified} ADD COLUMN ${quoteIdent(d.name)} ${d.type};`,
      );
    }
    if (a.primaryKey.join(',') !== b.primaryKey.join(',') && b.primaryKey.length > 0) {
      problems++;
      emit(
        check,
        'FAIL',
        `primary key is (${a.primaryKey.join(', ')}) on ${first.node} but (${b.primaryKey.join(', ')}) on ${other.node}`,
        `give ${name} the same primary key on every node`,
      );
    }
    if (problems === 0) emit(check, 'ok', `same columns and primary key as on ${first.node}`);
  }
}
