/**
 * A slot another session is still creating when the capture starts (a capture whose connection was cut
 * mid-creation leaves its walsender finishing the slot; PostgreSQL drops such a slot when that
 * walsender ends): the capture must not take it for its own. It did, read the tables without the
 * slot's snapshot, marked the snapshot done, and then, the slot gone, blocked the node for good as a
 * lost slot (found by the torture test with a network drop at start-up).
 *
 * The same after `pgbisync resync` of a lost slot: the capture state still names the earlier slot, made
 * by this capture. A capture killed while it made the new one (slot creation waits for running
 * transactions) left its walsender finishing it; the next capture took that slot for the recorded one,
 * copied, cleared the request, then ended the walsender that held the slot (the slot, unfinished, went
 * with it) and blocked as a lost slot with the request gone (torture seed 5 at 600 s). Such a walsender
 * (a pgbisync capture's, the lease now held here) is ended at once, not waited for.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resync } from '../operate/resync.ts';
import { setup } from '../operate/setup.ts';
import { newPgClient } from '../pg/client.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test("a slot still being created by another session is waited for, not taken as the capture's own", async () => {
  await using dbs = await createTestDatabases('slotrace');
  const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, v text)';
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  const config = syncConfig(dbs, ['public.items']);
  const a = config.nodes[0]!.name;
  await setup(config);
  // An open transaction makes slot creation wait for it: the slot exists, held by its creator, unfinished.
  const holder = newPgClient({ connectionString: dbs.db1 });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query("INSERT INTO items VALUES (1, 'before')");
  // biome-ignore lint/suspicious/noExplicitAny: pg's typings lack the replication flag
  const creator = newPgClient({ connectionString: dbs.db1, ...({ replication: 'database' } as any) });
  await creator.connect();
  const creating = creator
    .query(`CREATE_REPLICATION_SLOT "pgbisync_${a}" LOGICAL pgoutput`)
    .catch(() => undefined);
  await waitFor('the slot being created', async () => {
    const r = await dbs.sql1('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [`pgbisync_${a}`]);
    return (r.rowCount ?? 0) > 0;
  });
  {
    await using sync = await startSync(config);
    await new Promise((r) => setTimeout(r, 3000));
    // The creator's connection is cut: its unfinished slot goes with it.
    await dbs.sql1(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()",
    );
    await creating;
    await holder.query('COMMIT');
    await holder.end();
    await creator.end().catch(() => undefined);
    await dbs.sql1("INSERT INTO items VALUES (2, 'after')");
    await waitFor('both rows on b', async () => (await tableRows(dbs.sql2, 'items')).length === 2, 60_000);
    const capture = [...sync.runner.states.values()].find((c) => c.name === `capture ${a}`);
    assert.notEqual(capture?.state, 'blocked', JSON.stringify(capture));
  }
});

test('after a resync of a lost slot, a new slot still being made by a killed capture is not taken for the lost one', async () => {
  await using dbs = await createTestDatabases('slotrace2');
  const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, v text)';
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  const config = syncConfig(dbs, ['public.items']);
  const a = config.nodes[0]!.name;
  const slot = `pgbisync_${a}`;
  await setup(config);
  await dbs.sql1("INSERT INTO items VALUES (0, 'copied')");
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await waitFor('row 0 on b', async () => (await tableRows(dbs.sql2, 'items')).length === 1);
    await sync.stop();
  }
  // The slot is lost; the operator asks for the fix.
  await dbs.sql1('SELECT pg_drop_replication_slot($1)', [slot]);
  await resync(config, a, { wait: false, stallTimeoutMs: 60_000, onProgress: () => undefined });
  // A `run` takes the request; its new slot waits for a running transaction, and the run is killed.
  const holder = newPgClient({ connectionString: dbs.db1 });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query("INSERT INTO items VALUES (1, 'in flight')");
  const run = startRun(writeRunConfig(config, ['public.items'], { apply: { maxWaitMs: 10 } }));
  let maker = 0;
  try {
    await waitFor('the run making the new slot', async () => {
      const r = await dbs.sql1(
        `SELECT s.active_pid AS pid FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
          WHERE s.slot_name = $1 AND a.application_name = $2`,
        [slot, `pgbisync-capture-${a}`],
      );
      maker = (r.rows[0]?.pid as number | undefined) ?? 0;
      return maker > 0;
    });
  } finally {
    await killHard(run);
  }
  {
    await using sync = await startSync(config);
    // The killed run's walsender would make the slot alone until the transaction ends: the new capture,
    // holding the lease, ends it at once.
    await waitFor(
      "the killed run's walsender ended",
      async () => (await dbs.sql1('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [maker])).rowCount === 0,
      20_000,
    );
    await holder.query('COMMIT');
    await holder.end();
    await dbs.sql1("INSERT INTO items VALUES (2, 'after')");
    await waitFor('every row on b', async () => (await tableRows(dbs.sql2, 'items')).length === 3, 60_000);
    const capture = [...sync.runner.states.values()].find((c) => c.name === `capture ${a}`);
    assert.notEqual(capture?.state, 'blocked', JSON.stringify(capture));
    const state = await dbs.sql1(
      'SELECT resync_requested_at IS NULL AS served, snapshot_done_at IS NOT NULL AS done FROM pgbisync.capture_state WHERE node = $1',
      [a],
    );
    assert.deepEqual(state.rows[0], { served: true, done: true });
  }
});
