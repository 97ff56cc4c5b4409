/**
 * A silent network cut between the owner and one PostgreSQL node (bytes stop flowing both ways, no FIN,
 * no RST: what a crashed switch or a dropped route looks like): the other instance takes over that
 * node's components — its capture and the applier into it — within 60 s, and nothing is lost or applied
 * twice. The first instance reaches node a through a proxy that stalls (src/testing/fault-proxy.ts, the torture test's); the second
 * connects directly (the config names node a's URL through an environment variable).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { FaultProxy } from '../testing/fault-proxy.ts';
import {
  checkLedger,
  LEDGER_SCHEMA,
  owns,
  type RunInstance,
  standsBy,
  startInstance,
  startLedgerLoad,
} from '../testing/instances.ts';
import { killHard } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const TAKEOVER_BOUND_MS = 60_000;
const COMPONENTS = 4;

test('a silent network cut between the owner and a node hands that node to the other instance within 60 s', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(LEDGER_SCHEMA);
  await dbs.sql2(LEDGER_SCHEMA);
  const config = syncConfig(dbs, ['public.ledger']);
  const [a, b] = config.nodes as [(typeof config.nodes)[0], (typeof config.nodes)[0]];
  const direct = new URL(dbs.db1);
  const proxy = await FaultProxy.start({ host: direct.hostname, port: Number(direct.port) });
  const viaProxy = new URL(dbs.db1);
  viaProxy.port = String(proxy.port);
  const configPath = join(mkdtempSync(join(tmpdir(), 'pgbisync-test-')), 'pgbisync.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      kafka: { brokers: testEnv.kafkaBrokers(), topicPrefix: config.kafka.topicPrefix },
      nodes: [
        // The loader substitutes ${NAME} from each instance's environment.
        { name: a.name, url: ['$', '{PGBISYNC_TEST_NODE_A_URL}'].join('') },
        { name: b.name, url: b.url },
      ],
      tables: ['public.ledger'],
      apply: { maxWaitMs: 10 },
    }),
  );
  await setup(config);
  const load = await startLedgerLoad([dbs.db1, dbs.db2]);
  const first = startInstance('first', configPath, { PGBISYNC_TEST_NODE_A_URL: viaProxy.toString() });
  const started: RunInstance[] = [first];
  try {
    await waitFor('the first instance owns every component', () => owns(first, COMPONENTS), 60_000);
    const second = startInstance('second', configPath, { PGBISYNC_TEST_NODE_A_URL: dbs.db1 });
    started.push(second);
    await waitFor('the second stands by', () => standsBy(second, COMPONENTS, 'first'), 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    const cutAt = Date.now();
    proxy.set({ kind: 'stall' });
    const nodeA = [`capture ${a.name}`, `apply ${b.name}->${a.name}`];
    await waitFor(
      "the second owns node a's components",
      () => owns(second, COMPONENTS, nodeA),
      TAKEOVER_BOUND_MS,
    );
    const takeoverMs = Date.now() - cutAt;
    // Node b's components stay where they were: the first still reaches b.
    assert.ok(await owns(first, COMPONENTS, [`capture ${b.name}`, `apply ${a.name}->${b.name}`]));
    await new Promise((r) => setTimeout(r, 3_000));
    const perNode = await load.stop();
    assert.equal(await checkLedger(dbs.sql1, dbs.sql2, perNode), undefined);
    process.stderr.write(`takeover after a silent cut: ${takeoverMs} ms; ${perNode} rows per node\n`);
  } finally {
    await load.stop().catch(() => undefined);
    for (const instance of started) await killHard(instance.child);
    await proxy.close();
  }
  await teardown(config, { keepTopics: false });
});
