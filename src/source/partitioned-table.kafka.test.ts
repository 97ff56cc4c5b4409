/**
 * A partitioned table in `tables` is synced partition by partition (the nodes have the same partitions):
 * its partitions' changes are published (a row moving to another partition is a delete there and an
 * insert here, as a key change: the partition key is part of the primary key), copied partition by
 * partition (the snapshot read the partitioned table itself with ONLY: no rows), applied to the same
 * partition on the target, and its deletes remembered per partition (the tombstone trigger is cloned onto
 * every partition). A partition listed in `tables` is refused with the fix.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { ErrorCode, type FatalError } from '../runtime/errors.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `CREATE TABLE public.events (id int NOT NULL, day date NOT NULL, v text NOT NULL, PRIMARY KEY (id, day))
               PARTITION BY RANGE (day);
             CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
             CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM ('2026-07-01') TO ('2027-01-01')`;

test('a partitioned table syncs both ways partition by partition: copy, rows moving between partitions, deletes', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  // Rows before the first start: the initial copy reads them through the root.
  await dbs.sql1("INSERT INTO events SELECT g, date '2026-02-01' + g, 'a' FROM generate_series(1, 20) g");
  await assert.rejects(
    setup(syncConfig(dbs, ['public.events_1'])),
    (error: FatalError) =>
      error.code === ErrorCode.CONFIG_INVALID &&
      /public\.events_1 on node \S+ is a partition of public\.events/.test(error.message) &&
      /put public\.events in 'tables'/.test(error.hint ?? ''),
  );
  const config = syncConfig(dbs, ['public.events']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await waitFor('the copy on b', async () => (await tableRows(dbs.sql2, 'events')).length === 20);
    // b writes into the other partition, a moves rows across partitions (new day) and deletes some.
    await dbs.sql2(
      "INSERT INTO events SELECT g, date '2026-08-01' + g, 'b' FROM generate_series(100, 109) g",
    );
    await dbs.sql1("UPDATE events SET day = day + 200, v = 'moved' WHERE id <= 5");
    await dbs.sql1('DELETE FROM events WHERE id BETWEEN 6 AND 8');
    await waitFor('both nodes equal', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'events'), tableRows(dbs.sql2, 'events')]);
      return x.length === 27 && JSON.stringify(x) === JSON.stringify(y);
    });
    for (const sql of [dbs.sql1, dbs.sql2]) {
      const parts = await sql(
        'SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM events GROUP BY 1 ORDER BY 1',
      );
      assert.deepEqual(parts.rows, [
        { p: 'events_1', n: 12 },
        { p: 'events_2', n: 15 },
      ]);
    }
    // The deletes are remembered per partition on both nodes (a's by the trigger, b's by the applier),
    // so a late older change of those keys stays deleted.
    for (const sql of [dbs.sql1, dbs.sql2]) {
      const t = await sql(
        "SELECT count(*)::int AS n FROM pgbisync.tombstones WHERE table_name = 'public.events_1' AND (key ->> 'id')::int BETWEEN 6 AND 8",
      );
      assert.equal(t.rows[0].n, 3);
    }
    // A partition made while the sync runs (next year's, on both nodes, as operators do ahead of
    // time): its rows cross both ways without a restart (they were dead-lettered by the applier, which
    // knew the partitions of its start only).
    const next =
      "CREATE TABLE public.events_3 PARTITION OF public.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')";
    await dbs.sql1(next);
    await dbs.sql2(next);
    await dbs.sql1(
      "INSERT INTO events SELECT g, date '2027-02-01' + g, 'a3' FROM generate_series(200, 204) g",
    );
    await dbs.sql2(
      "INSERT INTO events SELECT g, date '2027-03-01' + g, 'b3' FROM generate_series(300, 304) g",
    );
    await waitFor("the new partition's rows on both nodes", async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'events'), tableRows(dbs.sql2, 'events')]);
      return x.length === 37 && JSON.stringify(x) === JSON.stringify(y);
    });
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
