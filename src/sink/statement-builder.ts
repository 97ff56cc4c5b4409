/**
 * SQL for applying a run of row changes to one table inside a target transaction: one statement per run
 * (a text value per column for one row, else unnest of text arrays; cast to the target column types),
 * guarded by the conflict policy, recording every conflict in pgbisync.conflicts and every delete in
 * pgbisync.tombstones.
 *
 * Parameters common to every statement: $1 incoming commit time (timestamptz), $2 source node,
 * $3 this (target) node, $4 table name 'schema.table'. Column values (or arrays) follow from $5.
 */

import { type ConflictPolicy, incomingWinsSql } from '../conflicts/policy.ts';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-names.ts';
import type { CatalogTable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import { keyJoin, keyJson, keyRangeAsked, seenInRange, seenSql } from './key-sql.ts';
import {
  insertAfterLockingSeen,
  lockedConflictXmin,
  VERSION_NODE,
  VERSION_TIME,
  versionNode,
  versionTime,
} from './row-version-sql.ts';
import { guardText, insertUnlessDeleted } from './tombstone-checks.ts';
import { truncateStatement } from './truncate-statement.ts';

/** An event column the target table lacks (the applier adds the source's type to the message). */
export class MissingColumnError extends BlockedError {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  constructor(schema: string, table: string, column: string) {
    super(`column ${schema}.${table}.${column} does not exist on the target`, {
      code: ErrorCode.SCHEMA_MISMATCH,
      hint: `ALTER TABLE ${schema}.${table} ADD COLUMN ${quoteIdent(column)} ...; the applier resumes from the same event`,
    });
    this.schema = schema;
    this.table = table;
    this.column = column;
  }
}

/** Compiled per target table and policy; reused for every run on that table. */
export class TableStatements {
  readonly table: CatalogTable;
  readonly #policy: ConflictPolicy;
  readonly #qualified: string;
  readonly #types: Map<string, string>;
  readonly #cache = new Map<string, string>();

  constructor(table: CatalogTable, policy: ConflictPolicy) {
    this.table = table;
    this.#policy = policy;
    this.#qualified = qualifiedName(table.schema, table.table);
    this.#types = new Map(table.columns.map((c) => [c.name, c.castType]));
    if (table.primaryKey.length === 0) {
      throw new BlockedError(`table ${table.schema}.${table.table} has no primary key on the target`, {
        code: ErrorCode.PG_NO_KEY,
        hint: `ALTER TABLE ${table.schema}.${table.table} ADD PRIMARY KEY (...)`,
      });
    }
  }

  /** Checks that the event's columns exist on the target; names the first that does not. */
  requireColumns(columns: Iterable<string>): void {
    for (const c of columns) {
      if (!this.#types.has(c)) {
        throw new MissingColumnError(this.table.schema, this.table.table, c);
      }
    }
  }

  /**
   * The incoming rows as `i`, typed by the target's columns: from one text array per column, or (`one`)
   * from one text value per column. A run of one row (every one-row transaction) skips the arrays'
   * literal on both ends and the server's unnest into a tuplestore.
   */
  #inputCte(columns: readonly string[], one: boolean): string {
    if (one) {
      const values = columns.map((c, i) => `$${i + 5}::text::${this.#types.get(c)} AS ${quoteIdent(c)}`);
      return `i AS (SELECT ${values.join(', ')})`;
    }
    const params = columns.map((_, i) => `$${i + 5}::text[]`).join(', ');
    const alias = columns.map((_, i) => `c${i}`).join(', ');
    const select = columns.map((c, i) => `u.c${i}::${this.#types.get(c)} AS ${quoteIdent(c)}`).join(', ');
    return `i AS (SELECT ${select} FROM unnest(${params}) AS u(${alias}))`;
  }

  #keyJoin(left: string, right: string): string {
    return keyJoin(this.table.primaryKey, left, right);
  }

  #keyJson(alias: string): string {
    return keyJson(this.table.primaryKey, alias);
  }

  /** Whether a statement asks for its keys' range first (#upsertResult). */
  #ranged(one: boolean): boolean {
    return !one && this.table.partitioned !== true && keyRangeAsked(this.table);
  }

  /** The target's row at the key of `alias`, as the statement's snapshot shows it. */
  #seen(alias: string): string {
    return seenSql(this.#qualified, this.table.primaryKey, alias);
  }

  /**
   * The target's current versions of the incoming keys. Written as a lateral lookup per incoming row
   * behind OFFSET 0 (which keeps the planner from flattening it into a join): the applier runs these
   * statements with cached generic plans, and a plan made while the table was small would otherwise
   * hash-join a sequential scan of the whole table for every statement once it has grown.
   */
  #existingCte(input = 'i'): string {
    const keys = this.table.primaryKey.map((k) => `t.${quoteIdent(k)}`).join(', ');
    return `e AS (SELECT x.* FROM ${input} CROSS JOIN LATERAL (
        SELECT ${keys}, to_jsonb(t.*) AS "~row", ${VERSION_TIME('t')} AS "~ts", ${VERSION_NODE('t')} AS "~node"
        FROM ${this.#qualified} t WHERE ${this.#keyJoin('t', input)} OFFSET 0) x)`;
  }

  #conflictInsert(type: string, remoteRow: string, appliedCte: string, applied = 'apply_remote'): string {
    return `INSERT INTO pgbisync.conflicts (table_name, conflict_type, key, local_row, local_commit_time, local_node,
        remote_row, remote_commit_time, remote_node, resolution, policy)
      SELECT $4::text, ${quoteLiteral(type)}, ${this.#keyJson('e')}, e."~row", e."~ts", e."~node", ${remoteRow}, $1::timestamptz,
        $2::text, CASE WHEN EXISTS (SELECT 1 FROM ${appliedCte} w WHERE ${this.#keyJoin('w', 'e')})
          THEN ${quoteLiteral(applied)} ELSE 'keep_local' END, ${quoteLiteral(this.#policy.policy)}
      FROM e WHERE e."~node" <> $2::text`;
  }

  /**
   * Insert-or-update of full rows (ops c, u, r): `columns` must include the whole primary key.
   *
   * A key with no row is inserted unless a tombstone newer than the incoming change says it was deleted
   * later (conflict update_deleted, keep_deleted). A key with a row goes through ON CONFLICT, whose
   * guard runs on the locked, latest version: a version written by the incoming change's own source is
   * replaced without further ado; any other version is a conflict, resolved by the policy and recorded
   * there (pgbisync.upsert_conflict), with the version it was compared with. So a new key costs no
   * lookup of an existing version, and the conflict record shows the version the decision was made on.
   * The statement returns one row per conflict it recorded (pgbisync.take_conflicts).
   *
   * Race with a local delete (READ COMMITTED): the statement's snapshot still shows the row (and not the
   * delete's tombstone) while a concurrent local transaction deletes it; the INSERT waits for that
   * transaction and, once it commits, inserts the row afresh, resurrecting a key whose delete may be the
   * later write. A key the snapshot saw that the INSERT had to insert anew (`xmax = 0`) was deleted
   * meanwhile: pgbisync.deleted_meanwhile fails the statement with a serialization failure, and the
   * transaction is applied again with a snapshot that sees the tombstone.
   */
  upsert(op: 'c' | 'u' | 'r', columns: readonly string[], one = false): string {
    const cacheKey = `upsert:${op}:${one ? 'one' : 'many'}:${columns.join(',')}`;
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const text = `WITH ${this.#inputCte(columns, one)},
      ${this.#upsertCte(op, columns, one)}
      ${this.#upsertResult(one)}`;
    this.#cache.set(cacheKey, text);
    return text;
  }

  /** `w`: the guarded insert-or-update of the rows of `i` (columns `columns`), as {@link upsert} says. */
  #upsertCte(op: 'c' | 'u' | 'r', columns: readonly string[], one: boolean): string {
    // A partitioned table's ON CONFLICT row and RETURNING lack system columns: see ./row-version-sql.ts.
    const partitioned = this.table.partitioned === true;
    const xmin = partitioned
      ? lockedConflictXmin(this.#qualified, this.#keyJoin('x', 't'), this.#keyJson('t'))
      : 't.xmin';
    const insertMayGoOn = partitioned
      ? insertAfterLockingSeen(this.#qualified, this.#seen('i'), this.#keyJoin('x', 'i'), this.#keyJson('i'))
      : 'true';
    const cols = columns.map(quoteIdent).join(', ');
    const pk = this.table.primaryKey.map(quoteIdent).join(', ');
    const nonKey = columns.filter((c) => !this.table.primaryKey.includes(c));
    const set =
      nonKey.length === 0
        ? `${quoteIdent(this.table.primaryKey[0] ?? '')} = EXCLUDED.${quoteIdent(this.table.primaryKey[0] ?? '')}`
        : nonKey.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ');
    const returning = this.table.primaryKey.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const policy = quoteLiteral(this.#policy.policy);
    // A copied row at the very version the target holds (a re-copy: resync, an added table, a copy read
    // again after a restart or a hand-back) is that version: nothing to write, unless a repair of the
    // key is pending (a partial update dated the row by the source but left other values).
    const sameVersionCopy = `(${versionTime(xmin)} IS DISTINCT FROM $1::timestamptz
                OR EXISTS (SELECT 1 FROM pgbisync.conflicts c WHERE c.resolution = 'needs_repair'
                  AND c.remote_node = $2::text AND c.table_name = $4::text AND c.key = ${this.#keyJson('t')}))`;
    // `s` (#upsertResult) is read before the first insert: after, it would step over the new index entries.
    const ranged = this.#ranged(one);
    const rangeFirst = ranged ? ' AND (SELECT s.seen FROM s) IS NOT NULL' : '';
    const range = ranged
      ? `s AS (SELECT ${seenInRange(this.#qualified, this.table.primaryKey, 'i')} AS seen),`
      : '';
    return `${range}
      w AS (INSERT INTO ${this.#qualified} AS t (${cols}) SELECT ${cols} FROM i
            WHERE ${insertUnlessDeleted({ policy: this.#policy, one, key: this.#keyJson('i'), seen: this.#seen('i'), insertMayGoOn })}${rangeFirst}
            ON CONFLICT (${pk}) DO UPDATE SET ${set}
              WHERE CASE WHEN ${versionNode(xmin)} = $2::text THEN ${op === 'r' ? sameVersionCopy : 'true'}
                ELSE pgbisync.upsert_conflict($4::text, ${quoteLiteral(op === 'u' ? 'update_origin_differs' : 'insert_exists')},
                  ${xmin}, ${this.#keyJson('t')}, to_jsonb(t.*), (SELECT to_jsonb(r.*) FROM i r WHERE ${this.#keyJoin('r', 'EXCLUDED')}),
                  $1::timestamptz, $2::text, $3::text, ${policy}, ${guardText(this.#policy)}) END
            RETURNING ${returning}, ${partitioned ? 'false' : 't.xmax = 0'} AS "~inserted")`;
  }

  /**
   * The rows an upsert returns, one per conflict it recorded: `w` is read whole first (its guard records
   * the conflicts), then pgbisync.take_conflicts counts them; `more` adds rows of other conflicts. A row
   * the snapshot saw that `w` had to insert anew was deleted meanwhile (see {@link upsert}).
   *
   * That is an index probe per inserted row, a third of the statement's time where all rows are new. A
   * statement of many rows first asks once (`s`) whether its snapshot saw any row in the incoming keys'
   * range (./key-sql.ts): if not, the per-row probes are skipped. Keys that arrive in order (serial keys,
   * a copy's ranges) skip them; spread ones (random UUIDs) pay one probe more.
   */
  #upsertResult(one: boolean, more = ''): string {
    const seen = this.#ranged(one) ? `(SELECT s.seen FROM s) AND ${this.#seen('w')}` : this.#seen('w');
    return `SELECT NULL::boolean FROM w
      WHERE CASE WHEN w."~inserted" AND ${seen}
        THEN pgbisync.deleted_meanwhile(true, $4::text, ${this.#keyJson('w')}) ELSE false END
      UNION ALL${more}
      SELECT true FROM generate_series(1, CASE WHEN coalesce(current_setting('pgbisync.conflicts', true), '') IN ('', '0')
        THEN 0 ELSE pgbisync.take_conflicts() END)`;
  }

  /**
   * Update of existing rows that leaves unchanged-TOAST columns alone. A key with no row here cannot be
   * inserted (the unchanged values are not in the event) and is never skipped silently: when a
   * tombstone of the key or of the table (a truncate) is newer than the incoming change, the delete wins
   * (update_deleted, keep_deleted, recorded like the upsert's); otherwise the row should come back whole
   * and this node lacks its unchanged values: recorded as update_missing, needs_repair, with the incoming
   * columns. An update that wins over a version another node wrote leaves that node's TOASTed values in
   * place: recorded as update_origin_differs, needs_repair. The applier repairs both from the source
   * (./toast-repair.ts). All count as conflicts.
   */
  update(columns: readonly string[], one = false): string {
    const cacheKey = `update:${one ? 'one' : 'many'}:${columns.join(',')}`;
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const nonKey = columns.filter((c) => !this.table.primaryKey.includes(c));
    // Only the key sent (every other column unchanged TOAST): the update still re-dates the row.
    const set =
      nonKey.length === 0
        ? `${quoteIdent(this.table.primaryKey[0] ?? '')} = i.${quoteIdent(this.table.primaryKey[0] ?? '')}`
        : nonKey.map((c) => `${quoteIdent(c)} = i.${quoteIdent(c)}`).join(', ');
    const returning = this.table.primaryKey.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const wins = incomingWinsSql(this.#policy, '$1', '$2', VERSION_TIME('t'), VERSION_NODE('t'));
    const tombWins = incomingWinsSql(this.#policy, '$1', '$2', VERSION_TIME('b'), VERSION_NODE('b'));
    const text = `WITH ${this.#inputCte(columns, one)}, ${this.#existingCte()},
      w AS (UPDATE ${this.#qualified} AS t SET ${set} FROM i WHERE ${this.#keyJoin('t', 'i')} AND ${wins} RETURNING ${returning}),
      m AS (INSERT INTO pgbisync.conflicts (table_name, conflict_type, key, local_row, local_commit_time, local_node,
              remote_row, remote_commit_time, remote_node, resolution, policy)
            SELECT $4::text, CASE WHEN bt.ts IS NULL THEN 'update_missing' ELSE 'update_deleted' END, ${this.#keyJson('i')},
              NULL::jsonb, bt.ts, bt.node, to_jsonb(i.*), $1::timestamptz, $2::text,
              CASE WHEN bt.ts IS NULL THEN 'needs_repair' ELSE 'keep_deleted' END, ${quoteLiteral(this.#policy.policy)}
            FROM i LEFT JOIN LATERAL (SELECT ${VERSION_TIME('b')} AS ts, ${VERSION_NODE('b')} AS node FROM pgbisync.tombstones b
                WHERE b.table_name = $4::text AND b.key IN (${this.#keyJson('i')}, '{}'::jsonb) AND NOT ${tombWins}
                ORDER BY 1 DESC LIMIT 1) bt ON true
            WHERE NOT EXISTS (SELECT 1 FROM e WHERE ${this.#keyJoin('e', 'i')})
            RETURNING 1),
      c AS (${this.#conflictInsert('update_origin_differs', `(SELECT to_jsonb(r.*) FROM i r WHERE ${this.#keyJoin('r', 'e')})`, 'w', 'needs_repair')}
            RETURNING 1)
      SELECT 1 FROM c UNION ALL SELECT 1 FROM m`;
    this.#cache.set(cacheKey, text);
    return text;
  }

  /**
   * Delete by primary key, guarded; records a tombstone dated by this transaction. Returns one row per
   * conflict recorded.
   */
  delete(one = false): string {
    const cacheKey = one ? 'delete:one' : 'delete:many';
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) return cached;
    // Ends with a SELECT of the conflicts recorded (one row each), like the upsert: a one-row delete
    // then runs inside the apply procedure's CALL with the rest of its run (./apply-procedures.ts takes
    // only that shape); ending with the INSERT itself, it broke the run and went on its own.
    const text = `WITH ${this.#inputCte(this.table.primaryKey, one)}, ${this.#deleteCtes('i')},
      c AS (${this.#conflictInsert('delete_origin_differs', 'NULL::jsonb', 'd')} RETURNING 1)
      SELECT 1 FROM c`;
    this.#cache.set(cacheKey, text);
    return text;
  }

  /**
   * `e`, `d` and `tomb`: the guarded delete of the keys in `input` (a CTE with the primary-key columns)
   * and their tombstones, dated by this transaction unless a newer one is there. The conflicts are left
   * to the caller (#conflictInsert over `e` and `d`).
   */
  #deleteCtes(input: string): string {
    const returning = this.table.primaryKey.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const wins = (time: string, node: string) => incomingWinsSql(this.#policy, '$1', '$2', time, node);
    return `${this.#existingCte(input)},
      d AS (DELETE FROM ${this.#qualified} AS t USING ${input} WHERE ${this.#keyJoin('t', input)}
            AND ${wins(VERSION_TIME('t'), VERSION_NODE('t'))} RETURNING ${returning}),
      tomb AS (INSERT INTO pgbisync.tombstones AS b (table_name, key) SELECT $4::text, ${this.#keyJson(input)} FROM ${input}
               ON CONFLICT (table_name, key) DO UPDATE SET key = EXCLUDED.key WHERE ${wins(VERSION_TIME('b'), VERSION_NODE('b'))})`;
  }

  /**
   * A key change whose new row lacks unchanged TOAST values, as the conflict rules have it: a delete of
   * the old key and an upsert of the new row, each guarded as {@link delete} and {@link upsert} are (a row
   * already at the new key is a conflict of the upsert: replaced when the incoming change wins, else
   * kept; either way recorded). The new row takes the values the change lacks (and those of columns only
   * the target has) from the row at the old key, as the statement's snapshot shows it. Where those may
   * not be the source's values, the new key is recorded for repair from the source (needs_repair,
   * ./toast-repair.ts): without a row at the old key there is no new row to write (update_missing: it
   * was silently lost, seen in the torture test); a row at the old key that the source did not write
   * (a local write, or a third node's, the source may not have seen when it moved the row) or that is
   * newer than the change may hold other values than the ones the source moved (update_origin_differs:
   * seen in the torture test too, a concurrent local write's small value under the moved row), the
   * source's own newer version included: a re-copy (resync, an added table) keeps the slot, so the stream
   * replays older changes after the copy's rows (torture seed 11: a copied row's body moved to another
   * key by a replayed key change; the policy's guard lets a source replace its own versions whatever the
   * times, so the times are compared here). A row at the old key the source wrote, no newer than the
   * change, is its latest version there (changes are applied in its commit order), unless a repair of it
   * is still pending: a partial update dated it by the source but left values of
   * another version, which the repair of the old key would not bring to the new one (the source no
   * longer has a row there: superseded). Seen in the torture test (seeds 1 and 3, all workloads). Parameters after the common ones: one
   * single-element array per column in `columns`, then one per primary-key column with the old key.
   * Returns one row per conflict recorded.
   */
  rekey(columns: readonly string[]): string {
    const cacheKey = `rekey:${columns.join(',')}`;
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const pk = this.table.primaryKey;
    const oldKey = (k: string) => quoteIdent(`~old ${k}`);
    const params = [...columns, ...pk].map((_, i) => `$${i + 5}::text[]`).join(', ');
    const alias = [...columns, ...pk].map((_, i) => `c${i}`).join(', ');
    const input = [
      ...columns.map((c, i) => `u.c${i}::${this.#types.get(c)} AS ${quoteIdent(c)}`),
      ...pk.map((k, j) => `u.c${columns.length + j}::${this.#types.get(k)} AS ${oldKey(k)}`),
    ].join(', ');
    const kept = this.table.columns.map((c) => c.name).filter((c) => !columns.includes(c));
    const row = [...columns.map((c) => `n.${quoteIdent(c)}`), ...kept.map((c) => `o.${quoteIdent(c)}`)];
    const atOldKey = pk.map((k) => `t.${quoteIdent(k)} = n.${oldKey(k)}`).join(' AND ');
    // n: the change; k: its old key; i: the new row, completed from the row at the old key.
    const text = `WITH n AS (SELECT ${input} FROM unnest(${params}) AS u(${alias})),
      k AS (SELECT ${pk.map((c) => `n.${oldKey(c)} AS ${quoteIdent(c)}`).join(', ')} FROM n),
      i AS (SELECT ${row.join(', ')} FROM n CROSS JOIN LATERAL (
        SELECT t.* FROM ${this.#qualified} t WHERE ${atOldKey} OFFSET 0) o),
      ${this.#upsertCte('u', [...columns, ...kept], true)},
      ${this.#deleteCtes('k')},
      dc AS (${this.#conflictInsert('delete_origin_differs', 'NULL::jsonb', 'd')} RETURNING 1),
      rm AS (INSERT INTO pgbisync.conflicts (table_name, conflict_type, key, local_row, local_commit_time, local_node,
              remote_row, remote_commit_time, remote_node, resolution, policy)
            SELECT $4::text, CASE WHEN o.row IS NULL THEN 'update_missing' ELSE 'update_origin_differs' END,
              ${this.#keyJson('n')}, o.row, o.at, o.node, to_jsonb(n.*), $1::timestamptz, $2::text, 'needs_repair',
              ${quoteLiteral(this.#policy.policy)}
            FROM n CROSS JOIN k LEFT JOIN LATERAL (SELECT to_jsonb(t.*) AS row, ${VERSION_TIME('t')} AS at, ${VERSION_NODE('t')} AS node
                FROM ${this.#qualified} t WHERE ${atOldKey} OFFSET 0) o ON true
            WHERE o.row IS NULL OR o.node IS DISTINCT FROM $2::text
              OR (${incomingWinsSql(this.#policy, '$1', '$2', 'o.at', 'o.node')}) IS NOT TRUE OR o.at > $1::timestamptz
              OR EXISTS (SELECT 1 FROM pgbisync.conflicts c WHERE c.resolution = 'needs_repair'
                AND c.table_name = $4::text AND c.key = ${this.#keyJson('k')})
            RETURNING 1)
      ${this.#upsertResult(true, '\n      SELECT true FROM dc\n      UNION ALL\n      SELECT true FROM rm\n      UNION ALL')}`;
    this.#cache.set(cacheKey, text);
    return text;
  }

  /**
   * A TRUNCATE applied under the policy: a guarded delete of every row the incoming truncate beats (its
   * commit time and source node against each row's version), recording each deleted key's tombstone as
   * an applied delete does, so an older late update of the key stays deleted, and the table's tombstone
   * (key '{}'), so a row written on another node before the truncate, which it never saw, stays deleted
   * when it arrives after it (the upsert checks both; a local TRUNCATE writes the table's tombstone by
   * the statement trigger pgbisync_truncate, ../operate/setup.ts). Rows newer than the
   * truncate (written on this node, or arrived from another one, after it) stay; a kept row written by
   * another node is a conflict (truncate_origin_differs, keep_local), as for a delete. Several tables
   * truncated by one source statement are one statement each, in the same target transaction; foreign
   * keys are not checked on applied rows (./apply-session.ts), so their order does not matter.
   */
  truncate(): string {
    const cached = this.#cache.get('truncate');
    if (cached !== undefined) return cached;
    const text = truncateStatement(this.table, this.#policy);
    this.#cache.set('truncate', text);
    return text;
  }
}
