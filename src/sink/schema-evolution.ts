/**
 * schema.addMissingColumns: a column an event carries and the target table lacks is added there,
 * nullable, with the source's type (as the Debezium JDBC sink's schema.evolution=basic), instead of
 * blocking the direction. Only additions: a dropped or retyped column still blocks, with its fix.
 */
import { newPgClient } from '../pg/client.ts';
import { qualifiedName, quoteIdent } from '../pg/sql-names.ts';

/** ALTER TABLE ... ADD COLUMN IF NOT EXISTS on the target (another applier may have added it meanwhile). */
export async function addColumn(
  targetUrl: string,
  schema: string,
  table: string,
  column: string,
  type: string,
): Promise<void> {
  const client = newPgClient({ connectionString: targetUrl, application_name: 'pgbisync-schema' });
  try {
    await client.connect();
    // The type comes from the source's catalog (format_type), as its own DDL would name it.
    await client.query(
      `ALTER TABLE ${qualifiedName(schema, table)} ADD COLUMN IF NOT EXISTS ${quoteIdent(column)} ${type}`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
