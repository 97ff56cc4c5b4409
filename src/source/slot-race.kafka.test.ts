/**
 * A slot another session is still creating when the capture starts (a capture whose connection was cut
 * mid-creation leaves its walsender finishing the slot; PostgreSQL drops such a slot when that
 * walsender ends): the capture must not take it for its own. It did, read the tables without the
 * slot's snapshot, marked the snapshot done, and then, the slot gone, blocked the node for good as a
 * lost slot (found by the torture test with a network drop at start-up).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup } from '../operate/setup.ts';
import { newPgClient } from '../pg/client.ts';
import { startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
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
