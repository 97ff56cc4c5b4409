/**
 * Placement (instance.prefer, here PGBISYNC_PREFER): two instances that each prefer one node run that
 * node's capture and the applier into it, as the seed's two servers each capture their own database;
 * with one survivor it runs everything, and a preferring instance that comes back gets its node's
 * components handed back. Nothing is lost or applied twice meanwhile.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import {
  checkLedger,
  LEDGER_SCHEMA,
  owns,
  type RunInstance,
  startInstance,
  startLedgerLoad,
} from '../testing/instances.ts';
import { killHard, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const COMPONENTS = 4;
const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

test('each instance runs the components of the node it prefers; a survivor runs all and hands back', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(LEDGER_SCHEMA);
  await dbs.sql2(LEDGER_SCHEMA);
  const config = syncConfig(dbs, ['public.ledger']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  const ofA = [`capture ${a}`, `apply ${b}->${a}`];
  const ofB = [`capture ${b}`, `apply ${a}->${b}`];
  const configPath = writeRunConfig(config, ['public.ledger'], { apply: { maxWaitMs: 10 } });
  await setup(config);
  let load: Awaited<ReturnType<typeof startLedgerLoad>> | undefined;
  const started: RunInstance[] = [];
  const start = (name: string, prefer: string) => {
    const instance = startInstance(name, configPath, { PGBISYNC_PREFER: prefer });
    started.push(instance);
    return instance;
  };
  try {
    const server1 = start('server1', a);
    const server2 = start('server2', b);
    await waitFor(
      'each server runs its own node',
      async () => (await owns(server1, COMPONENTS, ofA)) && (await owns(server2, COMPONENTS, ofB)),
      60_000,
    );
    // Killed during its initial copy, a capture copies again and its successor re-sends the rows (by
    // design: the same versions written again); kill only once both copies are done.
    const copied = 'SELECT count(*)::int AS n FROM pgbisync.capture_state WHERE snapshot_done_at IS NOT NULL';
    await waitFor(
      'both initial copies done',
      async () => (await dbs.sql1(copied)).rows[0].n + (await dbs.sql2(copied)).rows[0].n === 2,
      60_000,
    );
    // The load starts once both copies are done: an instance that starts more than the grace late on a
    // loaded machine lets the other one begin its node's copy, handed back and made again, which
    // re-sends every row already written (by design, as above; seen in CI as rows "applied twice").
    load = await startLedgerLoad([dbs.db1, dbs.db2]);
    await new Promise((r) => setTimeout(r, 2000));
    await killHard(server1.child);
    await waitFor('the survivor runs everything', () => owns(server2, COMPONENTS), 15_000);
    const back = start('server1-again', a);
    const handedAt = Date.now();
    await waitFor(
      "node a's components go back to the instance that prefers it",
      async () => (await owns(back, COMPONENTS, ofA)) && (await owns(server2, COMPONENTS, ofB)),
      60_000,
    );
    process.stderr.write(`handed back in ${Date.now() - handedAt} ms (including the start)\n`);
    // `pgbisync status`, from any host, reads the owners from the nodes.
    const status = spawnSync(process.execPath, [BIN, 'status', '-c', configPath, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const report = JSON.parse(status.stdout) as {
      components: { component: string; owner: string | null; since: string | null }[];
    };
    const owners = Object.fromEntries(report.components.map((c) => [c.component, c.owner]));
    assert.deepEqual(owners, {
      [ofA[0]!]: 'server1-again',
      [ofA[1]!]: 'server1-again',
      [ofB[0]!]: 'server2',
      [ofB[1]!]: 'server2',
    });
    for (const c of report.components) assert.ok(Date.parse(c.since ?? '') <= Date.now(), c.component);
    const perNode = await load.stop();
    load = undefined;
    assert.equal(await checkLedger(dbs.sql1, dbs.sql2, perNode), undefined);
  } finally {
    await load?.stop().catch(() => undefined);
    for (const instance of started) await killHard(instance.child);
  }
  await teardown(config, { keepTopics: false });
});
