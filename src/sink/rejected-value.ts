/**
 * Names what the target rejected when a transaction failed on a value (SQLSTATE class 22: bad input
 * syntax, out of range, too long for the column...). PostgreSQL's message names neither the table nor
 * the column; this finds them by trying every changed value of the failed batch against a probe table
 * with the target column's exact type (typmod included), one column at a time, in a session of its
 * own. Error path only: it costs a round trip per changed column.
 */
import { parseArrayText } from '../events/types-array.ts';
import { newPgClient } from '../pg/client.ts';
import { qualifiedName, quoteIdent, splitTableName } from '../pg/sql-names.ts';
import { readTable } from '../pg/table-catalog.ts';
import type { ApplyTransaction } from './apply-model.ts';

export interface RejectedValue {
  readonly table: string;
  readonly column: string;
  /** The target column's type, e.g. "character varying(3)". */
  readonly targetType: string;
  /** The source column's type, when the source node could be read. */
  readonly sourceType: string | undefined;
  readonly value: string;
  /** PostgreSQL's own reason, e.g. `value too long for type character varying(3)`. */
  readonly reason: string;
}

/** Values tried per column, in change order (a failed batch is bounded by apply.maxBatchRows). */
const MAX_VALUES_PER_COLUMN = 10_000;

const PROBE_FUNCTION = `
CREATE FUNCTION pg_temp.pgbisync_first_rejected(vals text[]) RETURNS TABLE (i int, msg text)
LANGUAGE plpgsql AS $f$
DECLARE k int;
BEGIN
  FOR k IN 1 .. coalesce(array_length(vals, 1), 0) LOOP
    BEGIN
      EXECUTE format('INSERT INTO pg_temp.pgbisync_probe VALUES (%L)', vals[k]);
    EXCEPTION WHEN others THEN
      i := k; msg := SQLERRM; RETURN NEXT; RETURN;
    END;
  END LOOP;
END $f$`;

/**
 * The first value of `txns` that the target column does not take, or undefined when every value fits
 * (the failure was something else: a constraint, a trigger...).
 */
export async function findRejectedValue(
  targetUrl: string,
  sourceUrl: string | undefined,
  txns: readonly ApplyTransaction[],
): Promise<RejectedValue | undefined> {
  const values = valuesByColumn(txns);
  if (values.size === 0) return undefined;
  const client = newPgClient({ connectionString: targetUrl, application_name: 'pgbisync-diagnose' });
  await client.connect();
  try {
    await client.query(PROBE_FUNCTION);
    for (const [table, columns] of values) {
      const { schema, table: name } = splitTableName(table);
      const target = await readTable(client, schema, name);
      if (target === undefined) continue;
      for (const [column, list] of columns) {
        const info = target.columns.find((c) => c.name === column);
        if (info === undefined) continue;
        await client.query('DROP TABLE IF EXISTS pg_temp.pgbisync_probe');
        await client.query(
          `CREATE TEMP TABLE pgbisync_probe AS SELECT ${quoteIdent(column)} FROM ${qualifiedName(schema, name)} WITH NO DATA`,
        );
        const r = await client.query<{ i: number; msg: string }>(
          'SELECT i, msg FROM pg_temp.pgbisync_first_rejected($1)',
          [list],
        );
        const hit = r.rows[0];
        if (hit === undefined) continue;
        return {
          table,
          column,
          targetType: info.type,
          sourceType: await sourceType(sourceUrl, schema, name, column),
          value: list[hit.i - 1]!,
          reason: hit.msg,
        };
      }
    }
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Describes a rejected value for an error message: table, column, both types, the value, and (unless
 * the error's cause already says it) PostgreSQL's reason.
 */
export function describeRejected(r: RejectedValue, withReason = true): string {
  const shown = r.value.length > 60 ? `${r.value.slice(0, 57)}...` : r.value;
  const source = r.sourceType === undefined ? 'source type unknown' : `source type ${r.sourceType}`;
  const described = `column ${r.table}.${r.column} (target type ${r.targetType}, ${source}) rejects the value '${shown}'`;
  return withReason ? `${described}: ${r.reason}` : described;
}

function valuesByColumn(txns: readonly ApplyTransaction[]): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  const add = (table: string, column: string, value: unknown) => {
    if (typeof value !== 'string') return; // null, or the unchanged-TOAST placeholder
    const columns = out.get(table) ?? new Map<string, string[]>();
    out.set(table, columns);
    const list = columns.get(column) ?? [];
    columns.set(column, list);
    if (list.length < MAX_VALUES_PER_COLUMN) list.push(value);
  };
  for (const txn of txns) {
    for (const change of txn.changes) {
      const table = `${change.schema}.${change.table}`;
      for (const [column, value] of Object.entries(change.after ?? {})) add(table, column, value);
      // A row batch: each column's text[] literal, element by element (never nested: text elements).
      change.batch?.columns.forEach((column, i) => {
        for (const value of parseArrayText(change.batch!.values[i]!)) add(table, column, value);
      });
      for (const [column, value] of Object.entries(change.beforeKey ?? {})) add(table, column, value);
    }
  }
  return out;
}

/** The source column's type (format_type), or undefined when the source cannot be read. */
export async function sourceType(
  url: string | undefined,
  schema: string,
  table: string,
  column: string,
): Promise<string | undefined> {
  if (url === undefined) return undefined;
  const client = newPgClient({ connectionString: url, application_name: 'pgbisync-diagnose' });
  try {
    await client.connect();
    const info = await readTable(client, schema, table);
    return info?.columns.find((c) => c.name === column)?.type;
  } catch {
    return undefined; // the source's type is a courtesy in the message; the target's finding stands
  } finally {
    await client.end().catch(() => undefined);
  }
}
