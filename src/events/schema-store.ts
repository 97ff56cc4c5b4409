/**
 * The schemas of schemaless events (`capture.schemasEnabled: false`), kept on the source node.
 *
 * A schemaless record holds the payload only; which JSON value is a bigint, a timestamp or an interval
 * is said by the value schema its relation version was encoded with. Capture stores that schema in the
 * source's pgbisync.event_schemas, committed before the first record naming it is sent, and every record
 * names it by id (header `pgbisync.schema`). An applier reads the schemas it has not seen from its
 * target's copy, else from the source (then copies them to the target, so a restart while the source
 * is down still finds them). Old versions stay: an applier behind an ALTER TABLE still decodes the
 * records written before it. An id is a digest of the schema text, so the same id always names the
 * same schema, on every node.
 */
import type pg from 'pg';
import { newPgClient } from '../pg/client.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import type { EventSchema } from './envelope.ts';

const UNDEFINED_TABLE = '42P01';
const CONNECT_TIMEOUT_MS = 10_000;

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

/**
 * Runs `fn` on a connection of its own to the node at `url`; a node whose pgbisync schema lacks the
 * table fails with the fix (`pgbisync setup`).
 */
async function withClient<T>(url: string, node: string, fn: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = newPgClient({
    connectionString: url,
    application_name: 'pgbisync-event-schemas',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  await db.connect();
  try {
    return await fn(db);
  } catch (error) {
    if ((error as { code?: unknown }).code === UNDEFINED_TABLE) throw missingTable(node, error);
    throw error;
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** Stores `schemas` (no-op for those already there). Resolves once committed on `db`'s server. */
async function store(db: pg.Client, schemas: readonly EventSchema[]): Promise<void> {
  await db.query(
    `INSERT INTO pgbisync.event_schemas (schema_id, value_schema)
     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (schema_id) DO NOTHING`,
    [schemas.map((s) => s.id), schemas.map((s) => s.json)],
  );
}

/**
 * Capture's side: stores `schemas` on its source node at `url`, on a connection of its own (rare: a
 * relation's first records after each start, or after an ALTER TABLE). `synchronous_commit = local`:
 * durable on the source before its records are sent, without waiting for synchronous standbys, one of
 * which may be this very capture's walsender (it waits for this call, so it would never confirm).
 */
export async function storeSourceSchemas(
  url: string,
  node: string,
  schemas: readonly EventSchema[],
): Promise<void> {
  await withClient(url, node, async (db) => {
    await db.query('SET synchronous_commit = local');
    await store(db, schemas);
  });
}

/** The stored schemas among `ids` (id -> schema JSON) on the node at `url`. */
export async function readEventSchemas(
  url: string,
  node: string,
  ids: readonly string[],
): Promise<Map<string, string>> {
  return withClient(url, node, async (db) => {
    const r = await db.query<{ schema_id: string; value_schema: string }>(
      'SELECT schema_id, value_schema FROM pgbisync.event_schemas WHERE schema_id = ANY($1::text[])',
      [ids],
    );
    return new Map(r.rows.map((row) => [row.schema_id, row.value_schema]));
  });
}

/** Copies `schemas` read from a source into the node at `url` (see the module comment). */
export async function copyEventSchemas(
  url: string,
  node: string,
  schemas: readonly EventSchema[],
): Promise<void> {
  await withClient(url, node, (db) => store(db, schemas));
}
