/**
 * Unchanged TOAST values, end to end: db2 deletes a row with a large TOASTed column while its sync is
 * down, then db1 updates another column of it. The update is the later write, so the row must come back
 * on db2. With REPLICA IDENTITY FULL the update carries the whole row; with the default identity it does
 * not, db2 records the key as needing repair and the applier repairs it from db1 (src/sink/toast-repair.ts).
 * Also under the default identity: db2 rewrites the TOASTed value of another row, then db1 updates another
 * column of it later: db1's update wins and db2 must end with db1's value, not its own. Both nodes end
 * the same, checked with plain SQL against both.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `CREATE TABLE public.docs_full (id int PRIMARY KEY, body text, n int);
  ALTER TABLE public.docs_full REPLICA IDENTITY FULL;
  CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int)`;

/** A body far over the TOAST threshold, random so that it does not compress below it. */
const BODY = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))`;

test('an update lacking unchanged TOAST values brings the row back whole, or is repaired from its source', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  const config = syncConfig(dbs, ['public.docs_full', 'public.docs']);
  await setup(config);
  {
    await using sync = await startSync(config);
    // Both initial copies done before the stop: one interrupted would be made again at the next start,
    // with b's rows and remembered deletes by then (more conflicts on a than the ones asserted below).
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(
      `INSERT INTO docs_full VALUES (1, ${BODY}, 0); INSERT INTO docs VALUES (1, ${BODY}, 0), (2, ${BODY}, 0)`,
    );
    await waitFor('the rows on db2', async () => (await dbs.sql2('SELECT 1 FROM docs')).rowCount === 2);
    await sync.stop();
  }
  // The sync is down: db2 deletes, then db1 updates another column (the later write).
  // db2 also rewrites row 2's body, before db1's update of row 2's n.
  await dbs.sql2(`DELETE FROM docs_full WHERE id = 1; DELETE FROM docs WHERE id = 1;
    UPDATE docs SET body = 'db2' || ${BODY} WHERE id = 2`);
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
      'docs equal on both nodes',
      async () => {
        const [x, y] = await Promise.all([tableRows(dbs.sql1, 'docs'), tableRows(dbs.sql2, 'docs')]);
        return x.length === 2 && JSON.stringify(x) === JSON.stringify(y);
      },
      60_000,
    );
    // Equal rows do not tell that db1 applied db2's older changes (they lose there, db1's rows stay
    // as they are): their conflicts, asserted below, are recorded when it does.
    await waitFor(
      "db2's changes applied on db1 (3 conflicts recorded)",
      async () => (await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.conflicts')).rows[0].n >= 3,
      60_000,
    );
    await sync.stop();
  }
  const row = 'SELECT id, n, length(body) AS len FROM docs_full';
  assert.deepEqual((await dbs.sql2(row)).rows, [{ id: 1, n: 1, len: 12800 }]);
  assert.deepEqual((await dbs.sql1(row)).rows, [{ id: 1, n: 1, len: 12800 }]);
  const docs = 'SELECT id, n, length(body) AS len FROM docs ORDER BY id';
  const expected = [
    { id: 1, n: 1, len: 12800 },
    { id: 2, n: 1, len: 12800 },
  ];
  assert.deepEqual((await dbs.sql1(docs)).rows, expected);
  assert.deepEqual((await dbs.sql2(docs)).rows, expected);
  const conflicts = async (sql: typeof dbs.sql1) =>
    (
      await sql(
        'SELECT table_name, key::text, conflict_type, resolution FROM pgbisync.conflicts ORDER BY table_name, key::text, id',
      )
    ).rows;
  // db1 kept its later updates against db2's delete (both tables) and db2's body; db2 repaired docs'
  // rows 1 (missing) and 2 (db1's update won over db2's own body) from db1.
  assert.deepEqual(await conflicts(dbs.sql1), [
    {
      table_name: 'public.docs',
      key: '{"id": 1}',
      conflict_type: 'delete_origin_differs',
      resolution: 'keep_local',
    },
    {
      table_name: 'public.docs',
      key: '{"id": 2}',
      conflict_type: 'update_origin_differs',
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
      resolution: 'repaired',
    },
    {
      table_name: 'public.docs',
      key: '{"id": 2}',
      conflict_type: 'update_origin_differs',
      resolution: 'repaired',
    },
  ]);
  await teardown(config, { keepTopics: false });
});

test('a key change lacking unchanged TOAST values of a row the target deleted meanwhile is repaired whole', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  const config = syncConfig(dbs, ['public.docs']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO docs VALUES (3, ${BODY}, 0)`);
    await waitFor('the row on db2', async () => (await dbs.sql2('SELECT 1 FROM docs')).rowCount === 1);
    await sync.stop();
  }
  // The sync is down: db2 deletes row 3, then db1 moves it to key 4 (the later write of key 4; the
  // key change carries no body: unchanged TOAST). db2 has no row at 3 to take the body from.
  await dbs.sql2('DELETE FROM docs WHERE id = 3');
  await new Promise((r) => setTimeout(r, 50));
  await dbs.sql1('UPDATE docs SET id = 4, n = 1 WHERE id = 3');
  {
    await using sync = await startSync(config);
    await waitFor(
      'docs equal on both nodes',
      async () => {
        const [x, y] = await Promise.all([tableRows(dbs.sql1, 'docs'), tableRows(dbs.sql2, 'docs')]);
        return x.length === 1 && JSON.stringify(x) === JSON.stringify(y);
      },
      60_000,
    );
    await sync.stop();
  }
  const docs = 'SELECT id, n, length(body) AS len FROM docs ORDER BY id';
  assert.deepEqual((await dbs.sql2(docs)).rows, [{ id: 4, n: 1, len: 12800 }]);
  assert.deepEqual(
    (
      await dbs.sql2(
        "SELECT key::text, conflict_type, resolution FROM pgbisync.conflicts WHERE resolution <> 'keep_deleted' ORDER BY id",
      )
    ).rows,
    [{ key: '{"id": 4}', conflict_type: 'update_missing', resolution: 'repaired' }],
  );
  await teardown(config, { keepTopics: false });
});
