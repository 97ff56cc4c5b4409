/**
 * The target tables as the writer needs them: each table's statements, compiled from its definition in
 * the target's catalog and its conflict policy, read on first use and kept until {@link reset}. The
 * catalog is read over a connection of its own, opened for the read: the writer's connection is
 * pipelined, and a read queued there would wait for every transaction queued before it.
 */
import type { ConflictPolicy } from '../conflicts/policy.ts';
import { newPgClient } from '../pg/client.ts';
import { splitTableName } from '../pg/sql-names.ts';
import { readTable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import { TableStatements } from './statement-builder.ts';

export interface TargetCatalogOptions {
  readonly url: string;
  readonly targetNode: string;
  readonly policyFor: (table: string) => ConflictPolicy;
}

export class TargetCatalog {
  readonly #o: TargetCatalogOptions;
  readonly #tables = new Map<string, TableStatements>();

  constructor(options: TargetCatalogOptions) {
    this.#o = options;
  }

  /** The statements of table `name` ('schema.table'); a BlockedError when the target lacks the table. */
  async statements(name: string): Promise<TableStatements> {
    const cached = this.#tables.get(name);
    if (cached !== undefined) return cached;
    const { schema, table } = splitTableName(name);
    const catalog = await readTableWith(this.#o.url, schema, table);
    if (catalog === undefined) {
      throw new BlockedError(`table ${name} does not exist on target node ${this.#o.targetNode}`, {
        code: ErrorCode.SCHEMA_MISMATCH,
        hint: `create ${name} on ${this.#o.targetNode}; the applier resumes from the same event`,
      });
    }
    const statements = new TableStatements(catalog, this.#o.policyFor(name));
    this.#tables.set(name, statements);
    return statements;
  }
}

async function readTableWith(url: string, schema: string, table: string) {
  const client = newPgClient({ connectionString: url });
  await client.connect();
  try {
    return await readTable(client, schema, table);
  } finally {
    await client.end();
  }
}
