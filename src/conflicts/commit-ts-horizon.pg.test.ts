/**
 * The commit-timestamp horizon (./commit-ts-horizon.ts) on a real server. Truncating commit timestamps
 * takes every database of the cluster frozen past a row (template0 included), so the test runs its own
 * server: right after `track_commit_timestamp` is turned on there is no horizon; once every database is
 * frozen, a row's commit time reads NULL and the horizon is past it. A role without the right to read
 * the control file gets the same horizon from the frozen xid alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { freezeEveryDatabase, setCommitTimestamps, withOwnServer } from '../testing/own-server.ts';
import { query } from '../testing/test-databases.ts';
import { readCommitTsHorizonMs } from './commit-ts-horizon.ts';

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
  // Its db1 port + 102.
  await withOwnServer('commit-ts', 102, async (server) => {
    const url = server.url;
    assert.equal(await horizonAs(url), null, 'track_commit_timestamp off: no horizon');
    await setCommitTimestamps(server, 'on');
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
    await query(url, 'CREATE ROLE reader LOGIN');
    for (let round = 0; round < 3; round++) await freezeEveryDatabase(server);
    assert.equal(await stamp(), null, 'the row commit timestamp is truncated');
    const beforeCheckpoint = await horizonAs(url);
    await query(url, 'CHECKPOINT');
    const horizon = await horizonAs(url);
    assert.ok(horizon !== null && horizon > written, `horizon ${horizon} after the row (${written})`);
    assert.ok(horizon <= Date.now() + 1000, 'the horizon is a past commit time');
    assert.equal(beforeCheckpoint, horizon, 'the frozen xid tells it before the checkpoint records it');
    // Without the right to read the control file: the frozen xid alone.
    assert.equal(await horizonAs(url.replace(/\/\/[^@/]*@/, '//reader@')), horizon);
  });
});
