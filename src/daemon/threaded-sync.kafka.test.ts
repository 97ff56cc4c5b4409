/**
 * `threads: true` end to end on real PostgreSQL and Kafka: the captures run on a worker thread, and what
 * they do still reaches the runner's metrics and states; a capture whose replication connection is
 * killed is restarted on that thread and the sync converges; stopping ends the thread.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)';

test('threads: captures on a worker thread converge both ways, report, and survive a killed walsender', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  await dbs.sql1(`INSERT INTO items SELECT g, 'seed ' || g FROM generate_series(1, 50) g`);
  const config = syncConfig(dbs, ['public.items'], 'threads: true');
  assert.equal(config.threads, true);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  await using sync = await startSync(config);
  await waitForStreaming(config, [dbs.sql1, dbs.sql2]);

  const equal = (count: number) => async () => {
    const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
    return x.length === count && JSON.stringify(x) === JSON.stringify(y);
  };
  await dbs.sql1(`INSERT INTO items SELECT g, 'a ' || g FROM generate_series(101, 200) g`);
  await dbs.sql2(`INSERT INTO items SELECT g, 'b ' || g FROM generate_series(201, 300) g`);
  await waitFor('both nodes equal', equal(250));

  // The capture's reports crossed the thread: events by node, confirmed positions, states.
  const captured = async (node: string) =>
    (await sync.metrics.eventsCaptured.get()).values
      .filter((v) => v.labels.node === node)
      .reduce((n, v) => n + v.value, 0);
  assert.equal(await captured(a), 50 + 100, 'snapshot and inserts of a');
  assert.equal(await captured(b), 100);
  await waitFor('confirmed positions reported', async () =>
    [a, b].every((n) => sync.runner.states.get(`capture ${n}`)?.lastLsn !== undefined),
  );
  assert.equal(sync.runner.states.get(`capture ${a}`)?.state, 'running');

  // A killed walsender fails the capture on the worker; the supervisor restarts it there.
  const killed = await dbs.sql1(
    `SELECT pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots
      WHERE database = current_database() AND active_pid IS NOT NULL`,
  );
  assert.equal(killed.rowCount, 1);
  await waitFor('the capture restarted', async () => {
    const r = (await sync.metrics.restarts.get()).values.find((v) => v.labels.component === `capture ${a}`);
    return (r?.value ?? 0) >= 1;
  });
  await dbs.sql1(`INSERT INTO items SELECT g, 'after ' || g FROM generate_series(301, 350) g`);
  await dbs.sql1(`UPDATE items SET name = 'updated' WHERE id <= 10`);
  await waitFor('both nodes equal after the restart', equal(300), 60_000);
  assert.equal(sync.runner.states.get(`capture ${a}`)?.state, 'running');
  await sync.stop();
  assert.equal(sync.runner.states.get(`capture ${a}`)?.state, 'stopped');
});
