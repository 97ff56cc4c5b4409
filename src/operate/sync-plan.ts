/**
 * What a config means on the live nodes: the resolved table list (same on every node), the conflict
 * policy per table, and the directions (every ordered pair of nodes: a mesh).
 */
import type pg from 'pg';
import type { Config, NodeConfig } from '../config/schema.ts';
import { type ConflictPolicy, policyResolver } from '../conflicts/policy.ts';
import { newPgClient } from '../pg/client.ts';
import { splitTableName } from '../pg/sql-names.ts';
import { matchTables, requireSyncableTable } from '../pg/table-catalog.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { classifyPgError } from '../runtime/pg-errors.ts';

export interface Direction {
  readonly source: NodeConfig;
  readonly target: NodeConfig;
}

/**
 * Every ordered pair of nodes, except into a node captured by Debezium: its connector does not skip
 * transactions applied under a replication origin, so whatever pgbisync wrote there would come back.
 */
export function directions(config: Config): Direction[] {
  return config.nodes.flatMap((source) =>
    config.nodes
      .filter((t) => t.name !== source.name && t.debezium === undefined)
      .map((target) => ({ source, target })),
  );
}

/** Connects to a node, naming the node in connection errors (wrong password, unreachable...). */
export async function connectNode(node: NodeConfig, purpose: string): Promise<pg.Client> {
  const client = newPgClient({ connectionString: node.url, application_name: `pgbisync-${purpose}` });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw classifyPgError(error, `connecting to node ${node.name}`);
  }
  return client;
}

export async function withNode<T>(
  node: NodeConfig,
  purpose: string,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = await connectNode(node, purpose);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Resolves `tables` on one node: listed tables must exist and be syncable; patterns are expanded. */
export async function resolveTablesOn(client: pg.Client, node: string, config: Config): Promise<string[]> {
  const names = Array.isArray(config.tables)
    ? config.tables
    : await matchTables(client, config.tables.include, config.tables.exclude);
  if (names.length === 0) {
    throw new FatalError(`tables: no table on node ${node} matches the include patterns`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 'check tables.include / tables.exclude against \\dt on the node',
    });
  }
  for (const name of names) {
    const { schema, table } = splitTableName(name);
    await requireSyncableTable(client, node, schema, table);
  }
  return [...names].sort();
}

/** The synced tables, checked on every node: the same set everywhere. */
export async function resolveTables(config: Config): Promise<string[]> {
  let first: { node: string; tables: string[] } | undefined;
  for (const node of config.nodes) {
    const tables = await withNode(node, 'plan', (c) => resolveTablesOn(c, node.name, config));
    if (first === undefined) {
      first = { node: node.name, tables };
      continue;
    }
    const missing = first.tables.filter((t) => !tables.includes(t));
    const extra = tables.filter((t) => !first!.tables.includes(t));
    if (missing.length > 0 || extra.length > 0) {
      throw new FatalError(
        `tables differ between nodes ${first.node} and ${node.name}: ${[...missing.map((t) => `${t} only on ${first!.node}`), ...extra.map((t) => `${t} only on ${node.name}`)].join(', ')}`,
        { code: ErrorCode.SCHEMA_MISMATCH, hint: 'create the same tables on every node' },
      );
    }
  }
  return first?.tables ?? [];
}

/**
 * How the captures send copied rows (capture.snapshotRecords): as set, else row batches in
 * transactional mode and Debezium events in per-table mode (topics other consumers read as Debezium's).
 */
export function snapshotRecords(config: Config): 'batched' | 'events' {
  return config.capture.snapshotRecords ?? (config.mode === 'per-table' ? 'events' : 'batched');
}

/** The conflict policy of each table (its override in `conflicts.tables`, else `conflicts`). */
export function policyFor(config: Config): (table: string) => ConflictPolicy {
  return policyResolver(config.conflicts);
}
