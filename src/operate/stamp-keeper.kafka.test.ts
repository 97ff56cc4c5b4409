/**
 * The stamp keeper (./stamp-keeper.ts) with a real sync: a source that wrote once and then nothing, and
 * one that never wrote, must not hold their targets' vacuum back for good. Once each capture confirmed
 * the keeper's probe of its WAL position and its topic has nothing left to apply, the direction counts
 * as caught up to the probe's time (./caught-up.ts): both nodes' watermarks come within seconds of now,
 * and with every candidate held (minimum age 0) both holds move past their first mark. The tombstone
 * pruner moves on with the same times: a's delete, applied on b, is pruned on both nodes although b
 * never wrote (without them, b -> a holds pruning back). With the server's own minimum age (half of
 * vacuum_freeze_min_age), directions this close hold nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { setup } from './setup.ts';
import { StampKeeper } from './stamp-keeper.ts';
import { pruneTombstonesOnce } from './tombstone-pruner.ts';

test('idle sources do not pin the holds: caught-up directions let them move on', async () => {
  await using dbs = await createTestDatabases('stampidle');
  for (const sql of [dbs.sql1, dbs.sql2]) await sql('CREATE TABLE public.item (id int PRIMARY KEY)');
  const config = syncConfig(
    dbs,
    ['public.item'],
    'conflicts: { maxClockSkewMs: 0, tombstoneRetentionMs: 0 }',
  );
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  await using _sync = await startSync(config);
  await dbs.sql1('INSERT INTO item VALUES (1), (2)');
  await dbs.sql1('DELETE FROM item WHERE id = 2');
  await waitFor('the row on b', async () => (await dbs.sql2('SELECT id FROM item')).rowCount === 1, 60_000);
  const tombstones = async () =>
    [
      (await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.tombstones')).rows[0].n,
      (await dbs.sql2('SELECT count(*)::int AS n FROM pgbisync.tombstones')).rows[0].n,
    ] as number[];
  assert.deepEqual(await tombstones(), [1, 1], "a's delete remembered on both nodes");

  const keeper = new StampKeeper({ slackMs: 0, minAgeXids: 0n });
  const byServer = new StampKeeper({ slackMs: 0, catchUp: keeper.catchUp });
  await byServer.round(config, ['public.item']); // its first marks
  const first = await keeper.round(config, ['public.item']);
  // b -> a never applied anything, a -> b applied one commit from before the first mark: without the
  // caught-up test neither hold could move past it.
  let last = first;
  await waitFor(
    'both holds past their first mark',
    async () => {
      await new Promise((r) => setTimeout(r, 1_000));
      last = await keeper.round(config, ['public.item']);
      return [a, b].every((n) => (last.get(n)?.hold ?? 0n) > (first.get(n)?.hold ?? 0n));
    },
    60_000,
  );
  for (const n of [a, b]) {
    const h = last.get(n)!;
    assert.ok(h.watermarkMs !== undefined && h.watermarkMs > Date.now() - 30_000, `${n}: a recent watermark`);
  }

  assert.equal((await pruneTombstonesOnce(config)).before, undefined, 'b -> a applied nothing: no watermark');
  const pruned = await pruneTombstonesOnce(config, keeper.catchUp);
  assert.deepEqual(Object.fromEntries(pruned.pruned), { [a]: 1, [b]: 1 });
  assert.deepEqual(await tombstones(), [0, 0]);

  const server = await byServer.round(config, ['public.item']);
  assert.deepEqual(
    [server.get(a)?.hold, server.get(b)?.hold],
    [null, null],
    'directions this close hold nothing: vacuum goes on',
  );
});
