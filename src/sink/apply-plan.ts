/**
 * How a source transaction becomes statements, without touching a database: a snapshot chunk is cut
 * into target transactions of one commit time each, a transaction's changes into runs of one statement
 * each, and each run into that statement's text and parameters (the text from the table's compiled
 * {@link TableStatements}). The writer (./transaction-writer.ts) sends what this plans.
 */
import type { ApplyTransaction, RowChange } from './apply-model.ts';
import { UNCHANGED } from './apply-model.ts';
import type { TableStatements } from './statement-builder.ts';

/** Consecutive changes that one statement applies: same table, kind, op and column set. */
export interface Run {
  /**
   * upsert: complete rows (insert/update/snapshot); update: rows lacking unchanged TOAST values; delete:
   * old keys; truncate: the table; rekey: one key-changing update lacking unchanged TOAST values;
   * batch: one row batch of the initial copy (its values are text[] literals already).
   */
  readonly kind: 'upsert' | 'update' | 'delete' | 'truncate' | 'rekey' | 'batch';
  readonly op: RowChange['op'];
  /** 'schema.table'. */
  readonly table: string;
  readonly columns: readonly string[];
  readonly rows: Readonly<Record<string, unknown>>[];
}

/** One statement of a target transaction. */
export interface PlannedStatement {
  readonly text: string;
  /** Parameters; undefined for a statement that takes none. */
  readonly values: unknown[] | undefined;
  /** The statement ends by recording conflicts (all but truncate): its row count is their number. */
  readonly conflicts?: true;
}

/** Prefix of the old key's columns in a 'rekey' run's row (cannot collide with a column name). */
export const OLD_KEY = '\u0000old:';

/**
 * A snapshot chunk as target transactions of one commit time each: every row keeps its own source
 * commit time on the target, as a streamed change would, so conflict resolution compares the same
 * versions on every node. Streamed transactions are returned as they are.
 */
export function splitByCommitTime(txn: ApplyTransaction): ApplyTransaction[] {
  if (!txn.snapshot) return [txn];
  const groups = new Map<bigint, RowChange[]>();
  for (const change of txn.changes) {
    const ts = change.commitTimeUs ?? txn.commitTimeUs;
    const group = groups.get(ts);
    if (group === undefined) groups.set(ts, [change]);
    else group.push(change);
  }
  return [...groups.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((ts) => ({ ...txn, commitTimeUs: ts, changes: groups.get(ts)! }));
}

/**
 * Splits a transaction's changes into runs of one statement each, keeping order: consecutive changes on
 * the same table with the same kind, op and column set. A key-changing update becomes delete(old key)
 * followed by an upsert of the new row.
 */
export function groupRuns(changes: readonly RowChange[]): Run[] {
  const runs: Run[] = [];
  let current: Run | undefined;
  const push = (
    kind: Run['kind'],
    op: RowChange['op'],
    table: string,
    columns: readonly string[],
    row?: object,
  ) => {
    const same =
      current !== undefined &&
      kind !== 'truncate' &&
      current.kind === kind &&
      current.op === op &&
      current.table === table &&
      current.columns.length === columns.length &&
      current.columns.every((c, i) => c === columns[i]);
    if (!same) {
      current = { kind, op, table, columns, rows: [] };
      runs.push(current);
    }
    if (row !== undefined) current?.rows.push(row as Readonly<Record<string, unknown>>);
  };
  for (const change of changes) {
    const table = `${change.schema}.${change.table}`;
    if (change.batch !== undefined) {
      // Never merged with a neighbour: its values are whole literals (one statement per batch).
      current = undefined;
      push('batch', 'r', table, change.batch.columns, { values: change.batch.values });
      current = undefined;
      continue;
    }
    if (change.op === 't') {
      push('truncate', 't', table, []);
      continue;
    }
    const before = change.beforeKey;
    if (change.op === 'd') {
      if (before !== undefined) push('delete', 'd', table, Object.keys(before), before);
      continue;
    }
    const after = change.after ?? {};
    const columns = Object.keys(after).filter((c) => after[c] !== UNCHANGED);
    const keyChanged =
      change.op === 'u' && before !== undefined && Object.keys(before).some((k) => before[k] !== after[k]);
    if (keyChanged && columns.length < Object.keys(after).length) {
      // The new row lacks its unchanged TOAST values: the target's row at the old key completes it.
      const oldKey = Object.fromEntries(Object.entries(before).map(([k, v]) => [OLD_KEY + k, v]));
      current = undefined;
      push('rekey', 'u', table, columns, { ...after, ...oldKey });
      current = undefined;
      continue;
    }
    if (keyChanged) push('delete', 'd', table, Object.keys(before), before);
    push(columns.length < Object.keys(after).length ? 'update' : 'upsert', change.op, table, columns, after);
  }
  return runs;
}

/** A key seen twice in one run keeps its last version (same transaction: the last one is the state). */
export function lastVersionPerKey(
  rows: readonly Readonly<Record<string, unknown>>[],
  keyColumns: readonly string[],
): Readonly<Record<string, unknown>>[] {
  if (rows.length < 2) return [...rows];
  const index = new Map<string, number>();
  const out: Readonly<Record<string, unknown>>[] = [];
  for (const row of rows) {
    const key = keyColumns.map((k) => String(row[k])).join('\u0000');
    const at = index.get(key);
    if (at === undefined) {
      index.set(key, out.length);
      out.push(row);
    } else {
      out[at] = row;
    }
  }
  return out;
}

/**
 * The statement applying `run` to `table`. `common` are the parameters every statement starts with
 * (commit time, source node, target node, table name: see ./statement-builder.ts); the run's values
 * follow. Throws when the run names a column the target table lacks.
 */
export function planRun(run: Run, table: TableStatements, common: readonly unknown[]): PlannedStatement {
  if (run.kind === 'truncate') return { text: table.truncate(), values: [...common], conflicts: true };
  table.requireColumns(run.columns);
  if (run.kind === 'batch') {
    // The rows as one text[] literal per column, as the source server wrote them (../events/row-batch.ts):
    // the statement's array parameters, taken as they are. Keys are unique in a copy: nothing to merge.
    const values = run.rows[0]!.values as readonly string[];
    return { text: table.upsert('r', run.columns, false), values: [...common, ...values], conflicts: true };
  }
  if (run.kind === 'rekey') {
    // One row per run (a key change with unchanged TOAST values): new values, then the old key.
    const row = run.rows[0]!;
    const values = run.columns.map((c) => [(row[c] ?? null) as string | null]);
    const oldKey = table.table.primaryKey.map((k) => [(row[OLD_KEY + k] ?? null) as string | null]);
    return { text: table.rekey(run.columns), values: [...common, ...values, ...oldKey], conflicts: true };
  }
  const rows = lastVersionPerKey(run.rows, table.table.primaryKey);
  // One row: a value per column; more: an array per column (see TableStatements' input).
  const one = rows.length === 1;
  const text =
    run.kind === 'delete'
      ? table.delete(one)
      : run.kind === 'update'
        ? table.update(run.columns, one)
        : table.upsert(run.op as 'c' | 'u' | 'r', run.columns, one);
  const values = run.columns.map((c) =>
    one ? ((rows[0]![c] ?? null) as string | null) : rows.map((r) => (r[c] ?? null) as string | null),
  );
  return { text, values: [...common, ...values], conflicts: true };
}

/** A commit time in microseconds since the Unix epoch as a timestamptz literal, to the microsecond. */
export function isoFromMicros(us: bigint): string {
  const ms = us / 1000n;
  const micros = Number(us % 1000000n);
  const base = new Date(Number(ms)).toISOString(); // 2024-01-02T03:04:05.123Z
  return `${base.slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;
}
