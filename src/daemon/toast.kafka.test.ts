/**
 * Unchanged TOAST values of a row the target lacks, end to end: db2 deletes a row with a large TOASTed
 * column while its sync is down, then db1 updates another column of it. The update is the later write,
 * so the row must come back on db2. With REPLICA IDENTITY FULL the update carries the whole row and both
 * nodes end the same; with the default identity db2 cannot restore the unchanged value and records the
 * key as needing repair (never a silent skip). Checked with plain SQL against both nodes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `CREATE TABLE public.docs_full (id int PRIMARY KEY, body text, n int);
  ALTER TABLE public.docs_full REPLICA IDENTITY FULL;
  CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int)`;

/** A body far over the TOAST threshold, random so that it does not compress below it. */
const BODY = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))`;

test('an update of a row deleted on the other node brings it back whole, or is recorded as needing repair', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  const config = syncConfig(dbs, ['public.docs_full', 'public.docs']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO docs_full VALUES (1, ${BODY}, 0); INSERT INTO docs VALUES (1, ${BODY}, 0)`);
    await waitFor('the rows on db2', async () => (await dbs.sql2('SELECT 1 FROM docs')).rowCount === 1);
    await sync.stop();
  }
  // The sync is down: db2 deletes, then db1 updates another column (the later write).
  await dbs.sql2('DELETE FROM docs_full WHERE id = 1; DELETE FROM docs WHERE id = 1');
  await new Promise((r) => setTimeout(r, 50));
  await dbs.sql1('UPDATE docs_full SET n = 1; UPDATE docs SET n = 1');
  {
    await using sync = await startSync(config);
    await waitFor(
      'docs_full equal on both nodes',
      async () => {
        const [x, y] = await Promise.all([
          tableRows(dbs.sql1, 'docs_full'),
          tableRows(dbs.sql2, 'docs_full'),
        ]);
        return x.length === 1 && JSON.stringify(x) === JSON.stringify(y);
      },
      60_000,
    );
    await waitFor(
      'the needs_repair record on db2',
      async () =>
        (await dbs.sql2("SELECT 1 FROM pgbisync.conflicts WHERE resolution = 'needs_repair'")).rowCount === 1,
      60_000,
    );
    await sync.stop();
  }
  const row = 'SELECT id, n, length(body) AS len FROM docs_full';
  assert.deepEqual((await dbs.sql2(row)).rows, [{ id: 1, n: 1, len: 12800 }]);
  assert.deepEqual((await dbs.sql1(row)).rows, [{ id: 1, n: 1, len: 12800 }]);
  const conflicts = async (sql: typeof dbs.sql1) =>
    (
      await sql(
        'SELECT table_name, key::text, conflict_type, resolution FROM pgbisync.conflicts ORDER BY table_name, id',
      )
    ).rows;
  // db1 kept its later update against db2's delete (both tables); db2 could not restore docs' row.
  assert.deepEqual(await conflicts(dbs.sql1), [
    {
      table_name: 'public.docs',
      key: '{"id": 1}',
      conflict_type: 'delete_origin_differs',
      resolution: 'keep_local',
    },
    {
      table_name: 'public.docs_full',
      key: '{"id": 1}',
      conflict_type: 'delete_origin_differs',
      resolution: 'keep_local',
    },
  ]);
  assert.deepEqual(await conflicts(dbs.sql2), [
    {
      table_name: 'public.docs',
      key: '{"id": 1}',
      conflict_type: 'update_missing',
      resolution: 'needs_repair',
    },
  ]);
  await teardown(config, { keepTopics: false });
});
