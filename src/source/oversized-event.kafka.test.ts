/**
 * A row whose event is larger than its topic's max.message.bytes: its node's capture blocks with PGB3003
 * naming the table, the key, the size and the fix (it used to be a FatalError that stopped every
 * direction of the process); the other direction runs on; once the topic takes it, the row crosses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { serverName } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

test('an event above the topic limit blocks its capture only, naming table, key and fix; a raised limit lets it through', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.docs']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  const topic = serverName(config, a);
  const capture = (runner: { states: Map<string, { state: string; code?: string }> }, node: string) =>
    runner.states.get(`capture ${node}`);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    // About 3.8 MB of hex digits (lz4 barely compresses them): above the 1 MiB the topic takes.
    await dbs.sql1(
      `INSERT INTO docs SELECT 7, string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 120000) g`,
    );
    await waitFor(
      `a's capture blocked with PGB3003 (state: ${JSON.stringify(capture(sync.runner, a))})`,
      async () => capture(sync.runner, a)?.code === 'PGB3003',
    );
    const blocked = sync.runner.states.get(`capture ${a}`)!;
    assert.equal(blocked.state, 'blocked');
    assert.match(
      blocked.lastError ?? '',
      new RegExp(
        `kafka refused an event of \\d+ bytes of table public\\.docs \\(key \\{.*"id":7.*\\}\\) on topic ${topic} as too large`,
      ),
    );
    assert.match(blocked.fix ?? '', new RegExp(`--entity-name ${topic} --add-config max\\.message\\.bytes=`));
    // b -> a runs on.
    await dbs.sql2("INSERT INTO docs VALUES (100, 'from b')");
    await waitFor(
      'b -> a still applies',
      async () => (await dbs.sql1('SELECT 1 FROM docs WHERE id = 100')).rowCount === 1,
    );
    assert.equal(capture(sync.runner, b)?.state, 'running');
    // The fix: the topic takes 8 MiB; the retried capture sends the same transaction again.
    const admin = new Admin({ clientId: 'pgbisync-test', bootstrapBrokers: testEnv.kafkaBrokers() });
    try {
      await admin.incrementalAlterConfigs({
        resources: [
          {
            resourceType: 2, // TOPIC
            resourceName: topic,
            configs: [{ name: 'max.message.bytes', configOperation: 0, value: String(8 << 20) }],
          },
        ],
      });
    } finally {
      await admin.close();
    }
    await waitFor(
      'the large row on b',
      async () =>
        (await dbs.sql2('SELECT length(body) AS n FROM docs WHERE id = 7')).rows[0]?.n === 120000 * 32,
      90_000,
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
