/**
 * nodes[].failoverSlot (issue: failover of a source primary): on PostgreSQL 17+ the node's slot is a
 * FAILOVER slot (created so, or an existing one marked at the capture's next start), and doctor says what
 * the primary and its standbys need; on an older server the capture is blocked with the fix and doctor
 * fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../config/schema.ts';
import { runDoctor } from '../operate/doctor.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const withFailover = (config: Config, node: string): Config => ({
  ...config,
  nodes: config.nodes.map((n) => (n.name === node ? { ...n, failoverSlot: true } : n)),
});

test('a failover slot on PostgreSQL 17+ (an existing slot marked), refused with the fix before 17', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2])
    await sql('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  const plain = syncConfig(dbs, ['public.items']);
  const [a] = plain.nodes.map((n) => n.name) as [string];
  const config = withFailover(plain, a);
  await setup(config);
  const failoverOf = async () =>
    (
      await dbs.sql1(
        "SELECT (to_jsonb(s) ->> 'failover')::boolean AS f FROM pg_replication_slots s WHERE slot_name = $1",
        [`pgbisync_${a}`],
      )
    ).rows[0]?.f;
  if (testEnv.pgMajor() < 17) {
    await using sync = await startSync(config);
    await waitFor(
      'a capture blocked on the server version',
      async () => sync.runner.states.get(`capture ${a}`)?.code === 'PGB2001',
    );
    assert.match(
      sync.runner.states.get(`capture ${a}`)?.lastError ?? '',
      /failoverSlot needs PostgreSQL 17 or later/,
    );
    const check = (await runDoctor(config)).checks.find((c) => c.node === a && c.check === 'failover_slot');
    assert.equal(check?.status, 'FAIL');
    await sync.stop();
  } else {
    {
      // First without the option: an ordinary slot.
      await using sync = await startSync(plain);
      await waitForStreaming(plain, [dbs.sql1, dbs.sql2]);
      await sync.stop();
    }
    assert.equal(await failoverOf(), false);
    {
      await using sync = await startSync(config);
      await waitFor('a failover slot', async () => (await failoverOf()) === true);
      await dbs.sql1("INSERT INTO items VALUES (1, 'a')");
      await waitFor('the row on b', async () => (await tableRows(dbs.sql2, 'items')).length === 1);
      const check = (await runDoctor(config)).checks.find((c) => c.node === a && c.check === 'failover_slot');
      assert.equal(check?.status, 'warn', JSON.stringify(check));
      assert.match(check?.fix ?? '', /synchronized_standby_slots/);
      await sync.stop();
    }
  }
  await teardown(config, { keepTopics: false });
});
