/**
 * TRUNCATE under last-writer-wins, end to end: one node truncates while the other, its sync stopped,
 * writes rows before and after that truncate. Once the sync runs again both nodes hold exactly the rows
 * written after the truncate (tables truncated together, a parent and its child, alike), and each node
 * recorded the conflict it resolved. Checked with plain SQL against both nodes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `CREATE TABLE public.ledger (id int PRIMARY KEY, note text NOT NULL);
  CREATE TABLE public.parent (id int PRIMARY KEY);
  CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent)`;

/** Lets the next commit's time be clearly later than the previous one's (both nodes share a clock). */
const pause = () => new Promise((r) => setTimeout(r, 50));

test('a truncate removes the rows written before it on every node and keeps the ones written after it', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  const config = syncConfig(dbs, ['public.ledger', 'public.parent', 'public.child']);
  await setup(config);
  const all = async (sql: typeof dbs.sql1) => ({
    ledger: await tableRows(sql, 'ledger'),
    parent: await tableRows(sql, 'parent'),
    child: await tableRows(sql, 'child'),
  });
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO ledger SELECT g, 'seed' FROM generate_series(1, 3) g`);
    await dbs.sql1('INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)');
    await waitFor('the seed on db2', async () => (await dbs.sql2('SELECT 1 FROM child')).rowCount === 1);
    await sync.stop();
  }
  // The sync is down: db2 writes before db1's truncate and after it.
  await dbs.sql2(`INSERT INTO ledger VALUES (10, 'db2 before')`);
  await dbs.sql2('INSERT INTO parent VALUES (10); INSERT INTO child VALUES (10, 10)');
  await pause();
  await dbs.sql1('TRUNCATE ledger');
  await dbs.sql1('TRUNCATE parent, child');
  await pause();
  await dbs.sql2(`INSERT INTO ledger VALUES (11, 'db2 after')`);
  await dbs.sql2('INSERT INTO parent VALUES (11); INSERT INTO child VALUES (11, 11)');
  {
    await using sync = await startSync(config);
    await waitFor(
      'both nodes equal',
      async () => {
        const [x, y] = await Promise.all([all(dbs.sql1), all(dbs.sql2)]);
        return JSON.stringify(x) === JSON.stringify(y) && x.ledger.length === 1 && x.child.length === 1;
      },
      60_000,
    );
    await sync.stop();
  }
  for (const sql of [dbs.sql1, dbs.sql2]) {
    assert.deepEqual((await sql('SELECT id, note FROM ledger')).rows, [{ id: 11, note: 'db2 after' }]);
    assert.deepEqual((await sql('SELECT id FROM parent')).rows, [{ id: 11 }]);
    assert.deepEqual((await sql('SELECT id, parent_id FROM child')).rows, [{ id: 11, parent_id: 11 }]);
  }
  // db2 kept its newer rows against the truncate; db1 kept db2's older rows deleted.
  const conflicts = async (sql: typeof dbs.sql1) =>
    (
      await sql(
        `SELECT table_name, key::text, conflict_type, resolution FROM pgbisync.conflicts
          ORDER BY table_name, key::text`,
      )
    ).rows;
  assert.deepEqual(await conflicts(dbs.sql2), [
    {
      table_name: 'public.child',
      key: '{"id": 11}',
      conflict_type: 'truncate_origin_differs',
      resolution: 'keep_local',
    },
    {
      table_name: 'public.ledger',
      key: '{"id": 11}',
      conflict_type: 'truncate_origin_differs',
      resolution: 'keep_local',
    },
    {
      table_name: 'public.parent',
      key: '{"id": 11}',
      conflict_type: 'truncate_origin_differs',
      resolution: 'keep_local',
    },
  ]);
  assert.deepEqual(await conflicts(dbs.sql1), [
    {
      table_name: 'public.child',
      key: '{"id": 10}',
      conflict_type: 'update_deleted',
      resolution: 'keep_deleted',
    },
    {
      table_name: 'public.ledger',
      key: '{"id": 10}',
      conflict_type: 'update_deleted',
      resolution: 'keep_deleted',
    },
    {
      table_name: 'public.parent',
      key: '{"id": 10}',
      conflict_type: 'update_deleted',
      resolution: 'keep_deleted',
    },
  ]);
  await teardown(config, { keepTopics: false });
});
