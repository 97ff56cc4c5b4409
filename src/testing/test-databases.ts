/**
 * Each test owns its databases: one fresh database on each dev server (same name on both), dropped with
 * everything in it (slots and origins included) when the context is disposed.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { newPgClient } from '../pg/client.ts';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { testEnv } from './test-env.ts';

export interface TestDatabases extends AsyncDisposable {
  readonly name: string;
  /** Connection URLs of the test database on db1 and db2. */
  readonly db1: string;
  readonly db2: string;
  /** Runs SQL on db1 / db2 (a short-lived connection each call). */
  sql1(text: string, params?: readonly unknown[]): Promise<pg.QueryResult>;
  sql2(text: string, params?: readonly unknown[]): Promise<pg.QueryResult>;
}

function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function query(
  url: string,
  text: string,
  params: readonly unknown[] = [],
): Promise<pg.QueryResult> {
  const client = newPgClient({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, [...params]);
  } finally {
    await client.end();
  }
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const admin = withDatabase(serverUrl, 'postgres');
  // Slots and origins are per cluster; drop the ones this test's database used.
  await query(
    admin,
    `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`,
    [name],
  );
  await query(
    admin,
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`,
    [name],
  );
  // The physical slots that keep the nodes' commit times (no database; tests name nodes after theirs).
  await query(
    admin,
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE slot_type = 'physical' AND NOT active AND slot_name LIKE 'pgbisync\\_\\_stamps\\_' || $1 || '%'`,
    [name],
  );
  await query(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  // Origins are cluster-wide too: tests name their nodes after the database, so origins carry the name.
  await query(
    admin,
    `SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE '%' || $1 || '%'`,
    [name],
  );
}

/**
 * A node name of a test's own for a writer into `url` (its database's name): replication origins are
 * per server, and two test files applying as one origin at once fail with 55006.
 */
export const nodeOfDatabase = (url: string): string => new URL(url).pathname.slice(1);

export async function createTestDatabases(prefix = 't'): Promise<TestDatabases> {
  const name = `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const servers = [testEnv.db1Url(), testEnv.db2Url()];
  for (const server of servers) await query(withDatabase(server, 'postgres'), `CREATE DATABASE "${name}"`);
  const [db1, db2] = servers.map((s) => withDatabase(s, name)) as [string, string];
  return {
    name,
    db1,
    db2,
    sql1: (text, params) => query(db1, text, params),
    sql2: (text, params) => query(db2, text, params),
    async [Symbol.asyncDispose]() {
      // PGBISYNC_TEST_KEEP_DB=1 keeps a test's databases for a post-mortem.
      if (process.env.PGBISYNC_TEST_KEEP_DB === '1') {
        process.stderr.write(`keeping test databases ${name}\n`);
        return;
      }
      for (const server of servers) await dropDatabase(server, name);
    },
  };
}

/** Creates (or brings up to date) the pgbisync schema in the database at `url`, as `setup` does. */
export async function withPgbisyncSchema(url: string): Promise<void> {
  const client = newPgClient({ connectionString: url });
  await client.connect();
  try {
    await ensurePgbisyncSchema(client);
  } finally {
    await client.end();
  }
}
