/**
 * Records deleted from a topic before their direction applied them (retention ran while the direction
 * was blocked longer than retention.ms): the direction blocks with PGB3002 naming the offsets and the
 * fix, every other direction runs on (it used to be a FatalError that stopped the whole process), and
 * `pgbisync resync <source>` moves the position past the deleted records and re-copies what they carried.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { serverName } from '../kafka/topics.ts';
import { resync } from '../operate/resync.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

test('records deleted before they were applied block that direction only; resync re-copies and moves past them', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  await dbs.sql2('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  const topic = serverName(config, a);
  const applyState = (
    runner: { states: Map<string, { state: string; code?: string }> },
    from: string,
    to: string,
  ) => runner.states.get(`apply ${from}->${to}`);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    // A first row crosses (b stores a position in a's topic)...
    await dbs.sql1(`INSERT INTO items VALUES (1, 'from a')`);
    await waitFor(
      'row 1 on b',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 1')).rowCount === 1,
    );
    // ...then b lacks a column a writes: a -> b blocks (schema mismatch) while a's capture publishes.
    await dbs.sql1('ALTER TABLE items ADD COLUMN extra text');
    await dbs.sql1(`INSERT INTO items SELECT g, 'from a', 'x' FROM generate_series(2, 5) g`);
    await waitFor(
      'a -> b blocked on the missing column',
      async () => applyState(sync.runner, a, b)?.code === 'PGB4001',
    );
    await sync.stop();
  }
  await dbs.sql2('ALTER TABLE items ADD COLUMN extra text');
  // Retention deletes every record of a's topic: four inserts were never applied on b.
  await deleteAll(topic);
  {
    await using sync = await startSync(config);
    await waitFor(
      `a -> b blocked with PGB3002 (state: ${JSON.stringify(applyState(sync.runner, a, b))})`,
      async () => applyState(sync.runner, a, b)?.code === 'PGB3002',
    );
    const blocked = sync.runner.states.get(`apply ${a}->${b}`)!;
    assert.equal(blocked.state, 'blocked');
    assert.match(
      blocked.lastError ?? '',
      new RegExp(
        `applying ${a} -> ${b}: kafka topic ${topic}\\[0\\] keeps records from offset \\d+ on, but the records from offset \\d+ are not read yet`,
      ),
    );
    assert.match(blocked.fix ?? '', new RegExp(`pgbisync resync ${a}`));
    // b -> a runs on.
    await dbs.sql2("INSERT INTO items VALUES (100, 'from b', NULL)");
    await waitFor(
      'b -> a still applies',
      async () => (await dbs.sql1('SELECT 1 FROM items WHERE id = 100')).rowCount === 1,
    );
    assert.equal(applyState(sync.runner, b, a)?.state, 'running');
    // The fix, while run runs.
    const lines: string[] = [];
    await resync(config, a, { wait: true, stallTimeoutMs: 60_000, onProgress: (l) => lines.push(l) });
    assert.match(
      lines.join('\n'),
      new RegExp(
        `${b} had not applied ${topic}\\[0\\] from offset \\d+, deleted from Kafka up to \\d+: its position moves`,
      ),
    );
    await waitFor('b equal to a', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return JSON.stringify(x) === JSON.stringify(y);
    });
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 6);
    assert.equal(applyState(sync.runner, a, b)?.state, 'running');
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a direction that never applied anything reads its topic from the first record: deleted ones block it', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL, extra text)');
  await dbs.sql2('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  const topic = serverName(config, a);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(`INSERT INTO items SELECT g, 'from a', 'x' FROM generate_series(1, 5) g`);
    await waitFor(
      'a -> b blocked on the missing column',
      async () => sync.runner.states.get(`apply ${a}->${b}`)?.code === 'PGB4001',
    );
    await sync.stop();
  }
  await dbs.sql2('ALTER TABLE items ADD COLUMN extra text');
  await deleteAll(topic);
  {
    // It used to start at the first retained record: after the gap, silently.
    await using sync = await startSync(config);
    await waitFor(
      'a -> b blocked with PGB3002',
      async () => sync.runner.states.get(`apply ${a}->${b}`)?.code === 'PGB3002',
    );
    const lines: string[] = [];
    await resync(config, a, { wait: true, stallTimeoutMs: 60_000, onProgress: (l) => lines.push(l) });
    assert.match(
      lines.join('\n'),
      new RegExp(`${b} had not applied ${topic}\\[0\\] from offset 0, deleted from Kafka up to`),
    );
    await waitFor(
      'the five rows on b',
      async () => (await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n === 5,
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

/** Deletes every record of `topic` (partition 0), as retention would. */
async function deleteAll(topic: string): Promise<void> {
  const admin = new Admin({ clientId: 'pgbisync-test', bootstrapBrokers: testEnv.kafkaBrokers() });
  try {
    const [ends] = await admin.listOffsets({
      topics: [{ name: topic, partitions: [{ partitionIndex: 0, timestamp: -1n }] }],
    });
    const end = ends!.partitions[0]!.offset;
    assert.ok(end > 0n, `records in ${topic}`);
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: end }] }] });
  } finally {
    await admin.close();
  }
}
