/**
 * The statement that applies a TRUNCATE under the policy (TableStatements.truncate, ./statement-builder.ts
 * says what it does). Parameters as every applied statement's: $1 incoming commit time, $2 source node,
 * $3 this (target) node, $4 table name.
 */
import { type ConflictPolicy, incomingWinsSql } from '../conflicts/policy.ts';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-names.ts';
import type { CatalogTable } from '../pg/table-catalog.ts';
import { keyJson } from './key-sql.ts';
import { VERSION_NODE, VERSION_TIME } from './row-version-sql.ts';

export function truncateStatement(table: CatalogTable, policy: ConflictPolicy): string {
  const qualified = qualifiedName(table.schema, table.table);
  const returning = table.primaryKey.map((k) => `t.${quoteIdent(k)}`).join(', ');
  const wins = (time: string, node: string) => incomingWinsSql(policy, '$1', '$2', time, node);
  const text = `WITH d AS (DELETE FROM ${qualified} AS t WHERE ${wins(VERSION_TIME('t'), VERSION_NODE('t'))}
          RETURNING ${returning}),
    tomb AS (INSERT INTO pgbisync.tombstones AS b (table_name, key)
             SELECT $4::text, ${keyJson(table.primaryKey, 'd')} FROM d UNION ALL SELECT $4::text, '{}'::jsonb
             ON CONFLICT (table_name, key) DO UPDATE SET key = EXCLUDED.key WHERE ${wins(VERSION_TIME('b'), VERSION_NODE('b'))})
    INSERT INTO pgbisync.conflicts (table_name, conflict_type, key, local_row, local_commit_time, local_node,
        remote_row, remote_commit_time, remote_node, resolution, policy)
      SELECT $4::text, 'truncate_origin_differs', ${keyJson(table.primaryKey, 'k')}, to_jsonb(k.*), ${VERSION_TIME('k')}, ${VERSION_NODE('k')},
        NULL::jsonb, $1::timestamptz, $2::text, 'keep_local', ${quoteLiteral(policy.policy)}
      FROM ${qualified} AS k
      WHERE NOT ${wins(VERSION_TIME('k'), VERSION_NODE('k'))} AND ${VERSION_NODE('k')} <> $2::text`;
  return text;
}
