/**
 * Schema drift between the nodes of a direction: a synced table whose columns, types or primary key
 * differ between source and target. `status` warns of it (a column only on the source blocks that
 * direction at its next event of the table; one only on the target stays NULL for rows from the
 * source), with `pgbisync ddl` as the fix; `doctor` fails on it (./doctor-tables.ts).
 */
import type { Config, NodeConfig } from '../config/schema.ts';
import { splitTableName } from '../pg/sql-names.ts';
import { type CatalogTable, readTable } from '../pg/table-catalog.ts';
import { withNode } from './sync-plan.ts';
import { schemaDifference } from './verify-sql.ts';

/** Each node's catalog of the synced tables (absent: the table does not exist there). */
export async function readCatalogs(
  config: Config,
  tables: readonly string[],
): Promise<Map<string, Map<string, CatalogTable | undefined>>> {
  const out = new Map<string, Map<string, CatalogTable | undefined>>();
  for (const node of config.nodes) out.set(node.name, await catalogOf(node, tables));
  return out;
}

async function catalogOf(
  node: NodeConfig,
  tables: readonly string[],
): Promise<Map<string, CatalogTable | undefined>> {
  return await withNode(node, 'status', async (db) => {
    const out = new Map<string, CatalogTable | undefined>();
    for (const name of tables) {
      const { schema, table } = splitTableName(name);
      out.set(name, await readTable(db, schema, table));
    }
    return out;
  });
}

/** The differences of every synced table from `source` to `target`, one line each with its fix. */
export function driftBetween(
  catalogs: ReadonlyMap<string, ReadonlyMap<string, CatalogTable | undefined>>,
  source: string,
  target: string,
): string[] {
  const from = catalogs.get(source);
  const to = catalogs.get(target);
  if (from === undefined || to === undefined) return [];
  const out: string[] = [];
  for (const [name, table] of from) {
    if (table === undefined) continue;
    const difference = schemaDifference(table, to.get(name), source, target);
    if (difference !== null) {
      out.push(
        `schema drift in ${name}: ${difference}; fix: make the nodes' definitions equal with \`pgbisync ddl "<statement>"\` (or schema.addMissingColumns for columns only on the source)`,
      );
    }
  }
  return out;
}
