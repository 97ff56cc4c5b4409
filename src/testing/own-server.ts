/**
 * A PostgreSQL server of a test's own, for what the shared test servers must not see: commit timestamps
 * turned off, every database of the cluster frozen (template0 included).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresServer } from '../dev/postgres-server.ts';
import { query } from './test-databases.ts';
import { testEnv } from './test-env.ts';

/**
 * Runs `fn` with a server of the test stack's major on its db1 port + `portOffset` (outside every stack
 * scripts/test.sh starts; each test file takes its own offset), database db1; stops and removes it after.
 */
export async function withOwnServer(
  name: string,
  portOffset: number,
  fn: (server: PostgresServer) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `pgbisync-${name}-`));
  chmodSync(dir, 0o755); // the server user (another user when the tests run as root) creates its folder here
  const server = new PostgresServer({
    name,
    major: testEnv.pgMajor(),
    port: Number(new URL(testEnv.db1Url()).port) + portOffset,
    dir: join(dir, 'server'),
    database: 'db1',
  });
  try {
    await server.start();
    await fn(server);
  } finally {
    await server.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sets track_commit_timestamp and restarts the server for it. */
export async function setCommitTimestamps(server: PostgresServer, value: 'on' | 'off'): Promise<void> {
  await query(server.url, `ALTER SYSTEM SET track_commit_timestamp = ${value}`);
  await server.stop();
  await server.start();
}

/**
 * One round of freezing: every database vacuumed with FREEZE (template0 opened for it), then a new xid,
 * so that the next round's freeze point is past everything before it. Vacuum truncates the commit
 * timestamps older than the cluster's oldest frozen xid.
 */
export async function freezeEveryDatabase(server: PostgresServer): Promise<void> {
  await query(server.url, "UPDATE pg_database SET datallowconn = true WHERE datname = 'template0'");
  const databases = await query(server.url, 'SELECT datname FROM pg_database ORDER BY datname');
  for (const { datname } of databases.rows as { datname: string }[]) {
    const url = new URL(server.url);
    url.pathname = `/${datname}`;
    await query(url.toString(), 'VACUUM (FREEZE)');
  }
  await query(server.url, 'SELECT txid_current()');
}
