/**
 * `status` warns about a direction whose pending changes reach back before its target's commit-timestamp
 * horizon (../conflicts/commit-ts-horizon.ts): there, a target row whose commit timestamp vacuum
 * truncated reads as of unknown time, and an older pending change would replace it.
 *
 * Truncating commit timestamps takes every database of the cluster frozen (template0 included), so the
 * test runs its own server, both nodes on it. a -> b is held up by a CHECK constraint that only b has
 * (the applier is blocked, PGB4002, and retries); every database is frozen meanwhile; then the
 * constraint goes, the direction catches up and the warning goes with it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { STAMP_RISK } from '../conflicts/commit-ts-horizon.ts';
import { freezeEveryDatabase, setCommitTimestamps, withOwnServer } from '../testing/own-server.ts';
import { startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { query, type TestDatabases } from '../testing/test-databases.ts';
import { setup } from './setup.ts';
import { readStatus } from './status.ts';

test('status warns while a direction has changes pending from before its target commit-timestamp horizon', async () => {
  // Its db1 port + 103.
  await withOwnServer('stamps', 103, async (server) => {
    await setCommitTimestamps(server, 'on');
    await query(server.url, 'CREATE DATABASE db2');
    const db1 = server.url;
    const db2 = server.url.replace(/\/db1$/, '/db2');
    for (const url of [db1, db2])
      await query(url, 'CREATE TABLE public.item (id int PRIMARY KEY, v text NOT NULL)');
    await query(db2, "ALTER TABLE item ADD CONSTRAINT only_on_b CHECK (v <> 'held')");
    const sql = (url: string) => (text: string, params?: readonly unknown[]) => query(url, text, params);
    const dbs = { name: `stamps${randomUUID().slice(0, 8)}`, db1, db2, sql1: sql(db1), sql2: sql(db2) };
    const config = syncConfig(dbs as unknown as TestDatabases, ['public.item']);
    const [a, b] = config.nodes.map((n) => n.name) as [string, string];
    await setup(config);
    await using sync = await startSync(config);
    const value = async (url: string) => (await query(url, 'SELECT v FROM item WHERE id = 1')).rows[0]?.v;
    await query(db1, "INSERT INTO item VALUES (1, 'first')");
    await waitFor('the first row on b', async () => (await value(db2)) === 'first', 60_000);

    await query(db1, "UPDATE item SET v = 'held' WHERE id = 1");
    const direction = async (source: string) =>
      (await readStatus(config)).directions.find((d) => d.source === source)!;
    await waitFor(
      'a -> b blocked with records pending',
      async () => (await direction(a)).kafkaLag > 0,
      60_000,
    );
    assert.deepEqual(
      (await direction(a)).warnings.filter((w) => w.includes(STAMP_RISK)),
      [],
      'no warning before anything is truncated',
    );

    // Freezes every database until b no longer keeps the commit time of its row 1 (the last change a -> b
    // applied); each round's xid moves the freeze point.
    const freezePastRow = (what: string) =>
      waitFor(
        what,
        async () => {
          await freezeEveryDatabase(server);
          const stamp = await query(
            db2,
            'SELECT pg_xact_commit_timestamp(xmin) AS ts FROM item WHERE id = 1',
          );
          return stamp.rows[0].ts === null;
        },
        60_000,
      );
    await freezePastRow('b truncating the commit timestamps of the rows a -> b applied');
    await query(db1, 'CHECKPOINT');
    const held = await direction(a);
    const warned = held.warnings.filter((w) => w.includes(STAMP_RISK));
    assert.equal(warned.length, 1, held.warnings.join('; '));
    assert.match(
      warned[0]!,
      new RegExp(
        `^${b} ${STAMP_RISK} of transactions before \\S+Z .* ${a} -> ${b} has \\d+ records to apply`,
      ),
    );
    assert.deepEqual(
      (await direction(b)).warnings.filter((w) => w.includes(STAMP_RISK)),
      [],
      'b -> a has nothing pending',
    );

    await query(db2, 'ALTER TABLE item DROP CONSTRAINT only_on_b');
    await waitFor('a -> b caught up', async () => (await value(db2)) === 'held', 60_000);
    await waitFor(
      'the warning gone',
      async () => {
        const d = await direction(a);
        return d.kafkaLag === 0 && !d.warnings.some((w) => w.includes(STAMP_RISK));
      },
      60_000,
    );

    // a stays idle until b's horizon passes the last change a -> b applied; then a writes again (held
    // up on b once more). Its pending change committed after the horizon: no risk, no warning (the
    // last applied commit alone said otherwise: a false alarm until applied, before).
    await freezePastRow("b's horizon past the last change a -> b applied");
    await query(db2, "ALTER TABLE item ADD CONSTRAINT only_on_b CHECK (v <> 'again')");
    await query(db1, "UPDATE item SET v = 'again' WHERE id = 1");
    await waitFor('a -> b held up again', async () => (await direction(a)).kafkaLag > 0, 60_000);
    const idle = await direction(a);
    assert.ok(idle.lastAppliedCommitTime !== null);
    assert.deepEqual(
      idle.warnings.filter((w) => w.includes(STAMP_RISK)),
      [],
      'a change committed after the horizon is no risk',
    );
    await sync.stop();
  });
});
