/**
 * Rows whose commit time is unknown: written while `track_commit_timestamp` was off (or whose commit
 * timestamps PostgreSQL truncated), pg_xact_commit_timestamp(xmin) gives NULL for them. Both nodes already
 * hold different rows for the same keys, all of unknown time, when the sync starts. Each node's snapshot
 * sends its rows; they used to be stamped the Unix epoch in the snapshot but compared as '-infinity' on
 * the target, so every node took the other's row and the nodes ended swapped. The one rule now: unknown
 * is the Unix epoch everywhere, equal times broken by the node name, so both keep the greater node's row.
 *
 * Such rows cannot be made on a running server with commit timestamps on (VACUUM FREEZE keeps the raw
 * xmin, whose commit time is still known), so the test runs its own server: started with
 * track_commit_timestamp off, rows written on both databases (the two nodes), restarted with it on.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { setup } from '../operate/setup.ts';
import { setCommitTimestamps, withOwnServer } from '../testing/own-server.ts';
import { startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { query, type TestDatabases } from '../testing/test-databases.ts';

test('rows of unknown commit time held by both nodes converge to the greater node name', async () => {
  // Its db1 port + 100.
  await withOwnServer('unknown-ts', 100, async (server) => {
    await query(server.url, 'CREATE DATABASE db2');
    const db1 = server.url;
    const db2 = server.url.replace(/\/db1$/, '/db2');
    await setCommitTimestamps(server, 'off');
    for (const [url, node] of [
      [db1, 'a'],
      [db2, 'b'],
    ] as const) {
      await query(url, 'CREATE TABLE public.item (id int PRIMARY KEY, v text NOT NULL)');
      await query(url, `INSERT INTO item SELECT g, '${node}' || g FROM generate_series(1, 50) g`);
    }
    // Only a: 60, only b: 70.
    await query(db1, "INSERT INTO item VALUES (60, 'a60')");
    await query(db2, "INSERT INTO item VALUES (70, 'b70')");
    await setCommitTimestamps(server, 'on');
    const unknown = await query(
      db1,
      'SELECT count(*)::int AS n FROM item WHERE pg_xact_commit_timestamp(xmin) IS NULL',
    );
    assert.equal(
      unknown.rows[0].n,
      51,
      'the rows written with track_commit_timestamp off have no commit time',
    );

    const sql = (url: string) => (text: string, params?: readonly unknown[]) => query(url, text, params);
    const dbs = {
      name: `unknownts${randomUUID().slice(0, 8)}`,
      db1,
      db2,
      sql1: sql(db1),
      sql2: sql(db2),
    } as unknown as TestDatabases;
    const config = syncConfig(dbs, ['public.item']);
    await setup(config);
    {
      await using _sync = await startSync(config);
      // Node <name>_b > <name>_a: every shared key ends with b's row on both nodes.
      const expected = [
        ...Array.from({ length: 50 }, (_, i) => `${i + 1}:b${i + 1}`),
        '60:a60',
        '70:b70',
      ].join(',');
      const rows = async (url: string) =>
        (await query(url, "SELECT string_agg(id || ':' || v, ',' ORDER BY id) AS r FROM item")).rows[0].r;
      await waitFor(
        'both nodes holding b for every shared key',
        async () => (await rows(db1)) === expected && (await rows(db2)) === expected,
        60_000,
      ).catch(async (error: unknown) => {
        throw new Error(`db1: ${await rows(db1)}\ndb2: ${await rows(db2)}`, { cause: error });
      });
      // Settled, not passing through: a second look after the snapshots were applied both ways.
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(await rows(db1), expected);
      assert.equal(await rows(db2), expected);
      // Recorded where decided: a's rows lost on a (replaced), b's incoming ones lost on b (kept).
      const conflicts = async (url: string) =>
        (
          await query(
            url,
            `SELECT conflict_type || ' ' || resolution || ' ' || count(*) AS c FROM pgbisync.conflicts
              GROUP BY conflict_type, resolution ORDER BY 1`,
          )
        ).rows.map((r) => r.c);
      assert.deepEqual(await conflicts(db1), ['insert_exists apply_remote 50']);
      assert.deepEqual(await conflicts(db2), ['insert_exists keep_local 50']);
    }
  });
});
