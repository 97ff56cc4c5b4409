/**
 * What an initial copy reads, table by table: a partitioned table's rows are read partition by partition
 * (each in heap page ranges: ./snapshot-batches.ts) and sent as the partitioned table's, as its changes
 * are published (by the root: ./slot-setup.ts).
 */
import type pg from 'pg';
import { qualifiedName, splitTableName } from '../pg/sql-names.ts';

/** A table the copy reads (`read`, 'schema.table') and the synced table its rows are of (`of`). */
export interface CopiedPart {
  readonly read: string;
  readonly of: string;
  /** The first and the last part of `of`: its remembered truncate goes before, its deletes after. */
  readonly first: boolean;
  readonly last: boolean;
}

/**
 * `tables` with each partitioned table replaced by its leaf partitions, in order: its rows are read
 * partition by partition (each in heap page ranges) and sent as the partitioned table's, as its changes
 * are published (by the root).
 */
export async function copiedParts(client: pg.Client, tables: readonly string[]): Promise<CopiedPart[]> {
  const r = await client.query<{ name: string; leaf: string }>(
    `SELECT t.name, n.nspname || '.' || c.relname AS leaf
       FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
       JOIN LATERAL pg_partition_tree(t.name::regclass) p ON p.isleaf
       JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY t.i, leaf`,
    [
      tables.map((t) => {
        const { schema, table } = splitTableName(t);
        return qualifiedName(schema, table);
      }),
    ],
  );
  const leaves = new Map<string, string[]>();
  for (const row of r.rows) leaves.set(row.name, [...(leaves.get(row.name) ?? []), row.leaf]);
  return tables.flatMap((t) => {
    const { schema, table } = splitTableName(t);
    const parts = leaves.get(qualifiedName(schema, table)) ?? [t];
    return parts.map((read, i) => ({ read, of: t, first: i === 0, last: i === parts.length - 1 }));
  });
}
