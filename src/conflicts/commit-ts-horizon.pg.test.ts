/**
 * The commit-timestamp horizon (./commit-ts-horizon.ts) on a real server. Truncating commit timestamps
 * takes every database of the cluster frozen past a row (template0 included), so the test runs its own
 * server: right after `track_commit_timestamp` is turned on there is no horizon; once every database is
 * frozen, a row's commit time reads NULL and the horizon is past it. A role without the right to read
 * the control file gets the same horizon from the frozen xid alone.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { PostgresServer } from '../dev/postgres-server.ts';
import { query } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';
import { readCommitTsHorizonMs } from './commit-ts-horizon.ts';

/** A port beside the test stack's: its db1 port + 102 (outside every stack scripts/test.sh starts). */
const port = () => Number(new URL(testEnv.db1Url()).port) + 102;

async function horizonAs(url: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await readCommitTsHorizonMs(client);
  } finally {
    await client.end();
  }
}

test('the horizon moves past rows whose commit timestamps vacuum truncated', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-commit-ts-'));
  chmodSync(dir, 0o755); // the server user (another user when the tests run as root) creates its folder here
  const server = new PostgresServer({
    name: 'commit-ts',
    major: testEnv.pgMajor(),
    port: port(),
    dir: join(dir, 'server'),
    database: 'db1',
  });
  try {
    await server.start();
    const url = server.url;
    assert.equal(await horizonAs(url), null, 'track_commit_timestamp off: no horizon');
    await query(url, 'ALTER SYSTEM SET track_commit_timestamp = on');
    await server.stop();
    await server.start();
    await query(url, 'CREATE TABLE t (id int PRIMARY KEY)');
    await query(url, 'INSERT INTO t VALUES (1)');
    await query(url, 'CHECKPOINT');
    const stamp = async () =>
      (
        await query(
          url,
          'SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8 AS ms FROM t',
        )
      ).rows[0].ms as number | null;
    const written = await stamp();
    assert.ok(written !== null, 'the row has a commit time');
    assert.equal(await horizonAs(url), null, 'nothing truncated since commit timestamps were turned on');

    // Freeze every database past the row; each round's xid moves the freeze point on.
    await query(url, "UPDATE pg_database SET datallowconn = true WHERE datname = 'template0'");
    await query(url, 'CREATE ROLE reader LOGIN');
    for (let round = 0; round < 3; round++) {
      for (const db of ['template0', 'template1', 'postgres', 'db1']) {
        await query(url.replace(/\/db1$/, `/${db}`), 'VACUUM (FREEZE)');
      }
      await query(url, 'SELECT txid_current()');
    }
    assert.equal(await stamp(), null, 'the row commit timestamp is truncated');
    const beforeCheckpoint = await horizonAs(url);
    await query(url, 'CHECKPOINT');
    const horizon = await horizonAs(url);
    assert.ok(horizon !== null && horizon > written, `horizon ${horizon} after the row (${written})`);
    assert.ok(horizon <= Date.now() + 1000, 'the horizon is a past commit time');
    assert.equal(beforeCheckpoint, horizon, 'the frozen xid tells it before the checkpoint records it');
    // Without the right to read the control file: the frozen xid alone.
    assert.equal(await horizonAs(url.replace(/\/\/[^@/]*@/, '//reader@')), horizon);
  } finally {
    await server.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
