/**
 * A table without a primary key (pgbench_history: insert-only, REPLICA IDENTITY FULL) is refused by
 * setup with the reason and the fix (it was accepted, and then every applier blocked at its first row
 * with "no primary key on the target"); with the fix the doc gives (a uuid key column), it syncs both
 * ways.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, type FatalError } from '../runtime/errors.ts';
import { startSync, syncConfig, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { setup, teardown } from './setup.ts';

test('a keyless table is refused by setup with the fix; with a uuid key it syncs both ways', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql(`CREATE TABLE public.history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
               ALTER TABLE public.history REPLICA IDENTITY FULL`);
  }
  const config = syncConfig(dbs, ['public.history']);
  await assert.rejects(
    setup(config),
    (error: FatalError) =>
      error.code === ErrorCode.PG_NO_KEY &&
      /public\.history on node \S+ has no primary key \(REPLICA IDENTITY FULL is not enough/.test(
        error.message,
      ) &&
      /ADD COLUMN row_id uuid NOT NULL DEFAULT gen_random_uuid\(\) PRIMARY KEY/.test(error.hint ?? ''),
  );
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql(
      'ALTER TABLE public.history ADD COLUMN row_id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY',
    );
  }
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(
      'INSERT INTO history (tid, delta, mtime) SELECT g, g, now() FROM generate_series(1, 50) g',
    );
    await dbs.sql2(
      'INSERT INTO history (tid, delta, mtime) SELECT g, -g, now() FROM generate_series(1, 50) g',
    );
    const digest = (sql: typeof dbs.sql1) =>
      sql('SELECT count(*)::int AS n, sum(delta)::int AS s, count(DISTINCT row_id)::int AS ids FROM history');
    await waitFor('100 rows on both nodes', async () => {
      const [x, y] = await Promise.all([digest(dbs.sql1), digest(dbs.sql2)]);
      return x.rows[0].n === 100 && y.rows[0].n === 100;
    });
    for (const sql of [dbs.sql1, dbs.sql2])
      assert.deepEqual((await digest(sql)).rows[0], { n: 100, s: 0, ids: 100 });
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
