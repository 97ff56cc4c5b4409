/** SQL over a table's primary key, as the applier's statements match, look up and record keys. */
import { quoteIdent, quoteLiteral } from '../pg/sql-names.ts';

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

/**
 * Whether the statement's snapshot shows any row of `qualified` whose first key column lies within that
 * column's range in `input` (a CTE): asked once per statement (the bounds and the probe are uncorrelated
 * InitPlans), ordered as the key's index orders it (the type's default ordering and the column's
 * collation, as ORDER BY and the comparisons both use).
 */
export function seenInRange(qualified: string, primaryKey: readonly string[], input: string): string {
  const first = quoteIdent(primaryKey[0] ?? '');
  return `(SELECT EXISTS (SELECT 1 FROM ${qualified} x
      WHERE x.${first} >= (SELECT r.${first} FROM ${input} r ORDER BY 1 LIMIT 1)
        AND x.${first} <= (SELECT r.${first} FROM ${input} r ORDER BY 1 DESC LIMIT 1)))`;
}
