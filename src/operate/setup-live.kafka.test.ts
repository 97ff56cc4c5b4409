/**
 * `setup` while applications write (a reload adds a table, an operator re-runs it): it must not lock the
 * tables it already set up. It re-created every table's triggers in one transaction, waiting behind any
 * open writing transaction and deadlocking with multi-table ones (the torture test's `addtable`: the
 * workload's inserts failed with "deadlock detected"). Triggers already as wanted are left alone; one
 * that an operator changed is still put back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { syncConfig } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { setup, teardown } from './setup.ts';

test('setup again while a transaction holds a synced table does not wait for it; a changed trigger is put back', async () => {
  await using dbs = await createTestDatabases();
  const ddl =
    'CREATE TABLE public.items (id int PRIMARY KEY, v text); CREATE TABLE public.more (id int PRIMARY KEY)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  const writer = new pg.Client({ connectionString: dbs.db1 });
  await writer.connect();
  try {
    // An application's transaction, open on a synced table (RowExclusiveLock until it ends).
    await writer.query('BEGIN');
    await writer.query("INSERT INTO items VALUES (1, 'open')");
    const withMore = syncConfig(dbs, ['public.items', 'public.more']);
    const done = await Promise.race([
      setup(withMore).then(() => 'done' as const),
      new Promise<'waited'>((r) => setTimeout(() => r('waited'), 4000)),
    ]);
    assert.equal(done, 'done', 'setup waited for the open transaction on items');
    const triggers = await dbs.sql1(
      "SELECT c.relname AS t, count(*)::int AS n FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE g.tgname LIKE 'pgbisync%' GROUP BY 1 ORDER BY 1",
    );
    assert.deepEqual(triggers.rows, [
      { t: 'items', n: 2 },
      { t: 'more', n: 2 },
    ]);
    await writer.query('COMMIT');
    // A trigger someone disabled is enabled again.
    await dbs.sql1('ALTER TABLE items DISABLE TRIGGER pgbisync_tombstone');
    await setup(withMore);
    const enabled = await dbs.sql1(
      "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'public.items'::regclass AND tgname = 'pgbisync_tombstone'",
    );
    assert.deepEqual(enabled.rows, [{ tgenabled: 'O' }]);
    await teardown(withMore, { keepTopics: false });
  } finally {
    await writer.end().catch(() => undefined);
  }
});
