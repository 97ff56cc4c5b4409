/** SQL over a table's primary key, as the applier's statements match, look up and record keys. */
import { PgOid } from '../events/pg-types.ts';
import { quoteIdent, quoteLiteral } from '../pg/sql-names.ts';
import type { CatalogTable } from '../pg/table-catalog.ts';

/** `left.k = right.k AND ...` over the primary-key columns. */
export function keyJoin(primaryKey: readonly string[], left: string, right: string): string {
  return primaryKey.map((k) => `${left}.${quoteIdent(k)} = ${right}.${quoteIdent(k)}`).join(' AND ');
}

/** The key of the row `alias` as the jsonb object tombstones and conflicts record. */
export function keyJson(primaryKey: readonly string[], alias: string): string {
  return `jsonb_build_object(${primaryKey.map((k) => `${quoteLiteral(k)}, ${alias}.${quoteIdent(k)}`).join(', ')})`;
}

/** The target's row (`qualified`) at the key of `alias`, as the statement's snapshot shows it. */
export function seenSql(qualified: string, primaryKey: readonly string[], alias: string): string {
  return `EXISTS (SELECT 1 FROM ${qualified} x WHERE ${keyJoin(primaryKey, 'x', alias)} OFFSET 0)`;
}

/** Types whose order does not depend on a collation (see {@link seenInRange}). */
const ORDERED_TYPES: ReadonlySet<number> = new Set([
  PgOid.INT2,
  PgOid.INT4,
  PgOid.INT8,
  PgOid.OID,
  PgOid.NUMERIC,
  PgOid.UUID,
  PgOid.DATE,
  PgOid.TIMESTAMP,
  PgOid.TIMESTAMPTZ,
]);

/** Whether {@link seenInRange} may stand for the per-row probes of `table`'s keys. */
export function keyRangeAsked(table: CatalogTable): boolean {
  const first = table.columns.find((c) => c.name === table.primaryKey[0]);
  return first !== undefined && ORDERED_TYPES.has(first.typeOid);
}

/**
 * Whether the statement's snapshot shows any row of `qualified` whose first key column lies within that
 * column's range in `input` (a CTE): asked once per statement (the bounds and the probe are uncorrelated
 * InitPlans). Only for a first key column whose type orders without a collation ({@link keyRangeAsked}):
 * the input's values carry the database's default collation, and bounds taken in it are no range in a
 * column of another collation (seen with an ICU column: 'C' < 'a' in bytes, 'a' < 'C' in the column).
 */
export function seenInRange(qualified: string, primaryKey: readonly string[], input: string): string {
  const first = quoteIdent(primaryKey[0] ?? '');
  return `(SELECT EXISTS (SELECT 1 FROM ${qualified} x
      WHERE x.${first} >= (SELECT r.${first} FROM ${input} r ORDER BY 1 LIMIT 1)
        AND x.${first} <= (SELECT r.${first} FROM ${input} r ORDER BY 1 DESC LIMIT 1)))`;
}
