/**
 * A table added to `tables` after the nodes' initial snapshots. It used to carry over only its future
 * changes (once setup put it in the publication), never the rows it already held, and nothing said so.
 * Now: run before setup blocks each capture naming the table and `pgbisync setup`; after setup each
 * capture copies the added table (only it) with each row's own commit time while writes go on, and rows
 * on both nodes end with the newer version. Removed from `tables`, its data stays and pgbisync's triggers
 * and tombstones on it go; added again, it is copied again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('a table added while syncing is copied both ways (its existing rows by last-writer-wins); run before setup blocks with the fix', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql('CREATE TABLE public.first (id int PRIMARY KEY, v text NOT NULL)');
  }
  const before = syncConfig(dbs, ['public.first']);
  const [a, b] = before.nodes.map((n) => n.name) as [string, string];
  await setup(before);
  {
    await using sync = await startSync(before);
    await waitForStreaming(before, [dbs.sql1, dbs.sql2]);
    await dbs.sql1("INSERT INTO first VALUES (1, 'a')");
    await waitFor('first row on b', async () => (await tableRows(dbs.sql2, 'first')).length === 1);
    await sync.stop();
  }
  // The new table already holds rows on both nodes: 1-5 on a, 4-8 on b, written later on b (b's 4 and
  // 5 are the newer versions).
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql('CREATE TABLE public.added (id int PRIMARY KEY, v text NOT NULL)');
  }
  await dbs.sql1("INSERT INTO added SELECT g, 'a' FROM generate_series(1, 5) g");
  await dbs.sql2("INSERT INTO added SELECT g, 'b' FROM generate_series(4, 8) g");
  const after = syncConfig(dbs, ['public.first', 'public.added']);
  {
    // Run before setup: the publication lacks the table.
    await using sync = await startSync(after);
    await waitFor('both captures blocked on the publication', async () =>
      [a, b].every((n) => sync.runner.states.get(`capture ${n}`)?.code === 'PGB2001'),
    );
    const blocked = sync.runner.states.get(`capture ${a}`)!;
    assert.match(
      blocked.lastError ?? '',
      /public\.added is synced \(config tables\) but not in publication pgbisync_/,
    );
    assert.match(blocked.fix ?? '', /run `pgbisync setup`/);
    await sync.stop();
  }
  await setup(after);
  {
    await using sync = await startSync(after);
    await waitForStreaming(after, [dbs.sql1, dbs.sql2]);
    // Writes while the copy goes on: they stream after it.
    await dbs.sql1("INSERT INTO added VALUES (20, 'a late')");
    await dbs.sql2("UPDATE added SET v = 'b late' WHERE id = 8");
    await dbs.sql1("INSERT INTO first VALUES (2, 'a')");
    const expected = [
      [1, 'a'],
      [2, 'a'],
      [3, 'a'],
      [4, 'b'],
      [5, 'b'],
      [6, 'b'],
      [7, 'b'],
      [8, 'b late'],
      [20, 'a late'],
    ];
    const rows = async (sql: typeof dbs.sql1) =>
      (await sql('SELECT id, v FROM added ORDER BY id')).rows.map((r) => [r.id, r.v]);
    await waitFor('the added table equal on both nodes', async () => {
      const [x, y] = await Promise.all([rows(dbs.sql1), rows(dbs.sql2)]);
      return JSON.stringify(x) === JSON.stringify(expected) && JSON.stringify(y) === JSON.stringify(expected);
    });
    await waitFor('first equal', async () => (await tableRows(dbs.sql2, 'first')).length === 2);
    // The copy covered the added table only (its progress in /status's component state), and is recorded.
    for (const n of [a, b]) {
      const copy = sync.runner.states.get(`capture ${n}`)?.copy ?? {};
      assert.deepEqual(Object.keys(copy), ['public.added'], JSON.stringify(copy));
      assert.equal(copy['public.added']?.done, true);
    }
    for (const sql of [dbs.sql1, dbs.sql2]) {
      const copied = await sql('SELECT copied_tables FROM pgbisync.capture_state');
      assert.deepEqual([...copied.rows[0].copied_tables].sort(), ['public.added', 'public.first']);
    }
    await sync.stop();
  }
  // Removed from tables: setup drops pgbisync's triggers on it and its tombstones, the data stays, and
  // its changes no longer cross.
  await dbs.sql1('DELETE FROM added WHERE id = 1');
  assert.equal(
    (await dbs.sql1("SELECT count(*)::int AS n FROM pgbisync.tombstones WHERE table_name = 'public.added'"))
      .rows[0].n,
    1,
  );
  // Where an interrupted copy of it stopped is forgotten with it: added again, it is copied whole.
  await dbs.sql1(
    "INSERT INTO pgbisync.copy_progress (node, table_name, next_page) VALUES ('x', 'public.added', 5)",
  );
  const report = await setup(before);
  assert.equal((await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.copy_progress')).rows[0].n, 0);
  assert.deepEqual(
    report.nodes.map((n) => n.removed),
    [['public.added'], ['public.added']],
  );
  for (const sql of [dbs.sql1, dbs.sql2]) {
    const left = await sql(
      `SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'public.added'::regclass AND tgname LIKE 'pgbisync%') AS triggers,
              (SELECT count(*)::int FROM pgbisync.tombstones WHERE table_name = 'public.added') AS tombstones,
              (SELECT count(*)::int FROM added) AS rows`,
    );
    assert.equal(left.rows[0].triggers, 0);
    assert.equal(left.rows[0].tombstones, 0);
    assert.ok(left.rows[0].rows >= 8, 'the data stays');
  }
  {
    await using sync = await startSync(before);
    await waitForStreaming(before, [dbs.sql1, dbs.sql2]);
    await dbs.sql1("INSERT INTO added VALUES (30, 'not synced')");
    await dbs.sql1("INSERT INTO first VALUES (3, 'a')");
    await waitFor('first row 3 on b', async () => (await tableRows(dbs.sql2, 'first')).length === 3);
    assert.equal(
      (await dbs.sql2('SELECT count(*)::int AS n FROM added WHERE id = 30')).rows[0].n,
      0,
      'row 30 did not cross',
    );
    // Row 1's delete, made while the table was still synced (run stopped), was still in flight when it
    // was removed: the slot streams it, the capture no longer syncs the table and leaves it out
    // (docs/operations.md: drain before removing a table if such changes matter).
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM added WHERE id = 1')).rows[0].n, 1);
    await sync.stop();
  }
  // Added again: copied again (the record of copied tables dropped it), so b gets row 30.
  await setup(after);
  {
    await using sync = await startSync(after);
    await waitForStreaming(after, [dbs.sql1, dbs.sql2]);
    await waitFor(
      'row 30 copied to b',
      async () => (await dbs.sql2('SELECT 1 FROM added WHERE id = 30')).rowCount === 1,
    );
    await sync.stop();
  }
  await teardown(after, { keepTopics: false });
});
