/**
 * Two `pgbisync run` instances on one config, under writes on both nodes (docs/deployment.md):
 * - kill -9 of the instance that owns every component: the other owns them all within 15 s;
 * - SIGSTOP of the owner for 60 s: the other takes over; on SIGCONT the old owner writes nothing and
 *   stands by.
 * Checked from the outside, with plain SQL: every row written on a node reaches the other (nothing
 * lost), and a trigger that fires on applied rows only records each write of an applied row, so a
 * transaction applied twice shows as a key written twice (nothing applied twice).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import {
  checkLedger,
  healthz,
  LEDGER_SCHEMA,
  owns,
  type RunInstance,
  standsBy,
  startInstance,
  startLedgerLoad,
} from '../testing/instances.ts';
import { killHard, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const TAKEOVER_BOUND_MS = 15_000;
const COMPONENTS = 4; // a capture per node, an applier per direction
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('two instances: kill -9 and SIGSTOP of the owner hand every component to the other; nothing lost or applied twice', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(LEDGER_SCHEMA);
  await dbs.sql2(LEDGER_SCHEMA);
  const config = syncConfig(dbs, ['public.ledger']);
  const configPath = writeRunConfig(config, ['public.ledger'], { apply: { maxWaitMs: 10 } });
  await setup(config);
  const load = await startLedgerLoad([dbs.db1, dbs.db2]);
  const first = startInstance('first', configPath);
  const started: RunInstance[] = [first];
  try {
    await waitFor('the first instance owns every component', () => owns(first, COMPONENTS), 60_000);
    assert.equal(await healthz(first), '200 active');
    const second = startInstance('second', configPath);
    started.push(second);
    await waitFor('the second stands by', () => standsBy(second, COMPONENTS, 'first'), 30_000);
    assert.equal(await healthz(second), '200 standby');

    // kill -9 of the owner.
    await pause(2_000);
    const killedAt = Date.now();
    await killHard(first.child);
    await waitFor('the second owns every component', () => owns(second, COMPONENTS), TAKEOVER_BOUND_MS);
    const killTakeoverMs = Date.now() - killedAt;
    const metrics = await (await fetch(`${second.url()}/metrics`)).text();
    assert.match(metrics, /pgbisync_takeovers_total\{component="capture [^"]+"\} 1/);

    // A third instance stands by; SIGSTOP of the owner (the second) for 60 s.
    const third = startInstance('third', configPath);
    started.push(third);
    await waitFor('the third stands by', () => standsBy(third, COMPONENTS, 'second'), 30_000);
    await pause(2_000);
    const stoppedAt = Date.now();
    second.child.kill('SIGSTOP');
    await waitFor('the third owns every component', () => owns(third, COMPONENTS), 60_000);
    const stopTakeoverMs = Date.now() - stoppedAt;
    await pause(Math.max(0, 60_000 - (Date.now() - stoppedAt)));
    second.child.kill('SIGCONT');
    const wokenAt = Date.now();
    await waitFor('the woken owner stands by', () => standsBy(second, COMPONENTS, 'third'), 30_000).catch(
      (error: unknown) => {
        const { exitCode, signalCode } = second.child;
        process.stderr.write(
          `the woken owner (exit code ${exitCode}, signal ${signalCode}); its log, last lines:\n${second.logTail(60)}\n`,
        );
        throw error;
      },
    );
    const wokenStandbyMs = Date.now() - wokenAt;
    assert.equal(second.child.exitCode, null, 'the woken owner keeps running, as a standby');
    // The third still owns everything: the woken one took nothing back and holds no lease.
    assert.ok(await owns(third, COMPONENTS));
    const owners =
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgbisync owner second %'";
    assert.equal((await dbs.sql1(owners)).rows[0].n, 0);
    assert.equal((await dbs.sql2(owners)).rows[0].n, 0);

    const perNode = await load.stop();
    assert.equal(await checkLedger(dbs.sql1, dbs.sql2, perNode), undefined);
    process.stderr.write(
      `takeover after kill -9: ${killTakeoverMs} ms; after SIGSTOP: ${stopTakeoverMs} ms; ` +
        `the woken owner stood by after ${wokenStandbyMs} ms; ${perNode} rows per node\n`,
    );
  } finally {
    await load.stop().catch(() => undefined);
    for (const instance of started) {
      instance.child.kill('SIGCONT');
      await killHard(instance.child);
    }
  }
  await teardown(config, { keepTopics: false });
});
