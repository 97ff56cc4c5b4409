/**
 * The schemas of schemaless events (`capture.schemasEnabled: false`), kept on the source node.
 *
 * A schemaless record holds the payload only; which JSON value is a bigint, a timestamp or an interval
 * is said by the value schema its relation version was encoded with. Capture stores that schema in the
 * source's pgbisync.event_schemas, committed before the first record naming it is sent, and every record
 * names it by id (header `pgbisync.schema`). An applier reads the schemas it has not seen from there.
 * Old versions stay: an applier behind an ALTER TABLE still decodes the records written before it.
 */
import pg from 'pg';
import type { EventSchema } from '../events/envelope.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import type { Queryable } from './table-catalog.ts';

const UNDEFINED_TABLE = '42P01';

function missingTable(node: string, cause: unknown): BlockedError {
  return new BlockedError(
    `${node} lacks pgbisync.event_schemas, where schemaless events (capture.schemasEnabled: false) keep their schemas: its pgbisync schema was set up by an older pgbisync`,
    {
      code: ErrorCode.PG_PREREQUISITE,
      hint: 'run `pgbisync setup` with the same config: it brings the pgbisync schema of every node up to date and changes nothing else',
      cause,
    },
  );
}

/** Stores `schema` on the source (a no-op when it is there). Resolves once committed. */
export async function storeEventSchema(db: Queryable, node: string, schema: EventSchema): Promise<void> {
  try {
    await db.query(
      'INSERT INTO pgbisync.event_schemas (schema_id, value_schema) VALUES ($1, $2) ON CONFLICT (schema_id) DO NOTHING',
      [schema.id, schema.json],
    );
  } catch (error) {
    if ((error as { code?: unknown }).code === UNDEFINED_TABLE) throw missingTable(node, error);
    throw error;
  }
}

/** The stored schemas among `ids` (id -> schema JSON), read from the source node at `url`. */
export async function readEventSchemas(
  url: string,
  node: string,
  ids: readonly string[],
): Promise<Map<string, string>> {
  const client = new pg.Client({ connectionString: url, application_name: 'pgbisync-event-schemas' });
  await client.connect();
  try {
    const r = await client.query<{ schema_id: string; value_schema: string }>(
      'SELECT schema_id, value_schema FROM pgbisync.event_schemas WHERE schema_id = ANY($1::text[])',
      [ids],
    );
    return new Map(r.rows.map((row) => [row.schema_id, row.value_schema]));
  } catch (error) {
    if ((error as { code?: unknown }).code === UNDEFINED_TABLE) throw missingTable(node, error);
    throw error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
