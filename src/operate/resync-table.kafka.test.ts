/**
 * `pgbisync resync <table> [--from <node>]`: rows of one table removed on b out of band (triggers off,
 * under a's replication origin: neither captured nor remembered, as a restore from an old backup or a
 * bulk fix with triggers off would leave them) come back from a's copy of that table while the sync runs;
 * the other table is not copied; the command ends with verify of the table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { objectNames } from '../pg/sql-names.ts';
import { ErrorCode, type FatalError } from '../runtime/errors.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { resyncTable } from './resync-table.ts';
import { setup, teardown } from './setup.ts';

test('resync of one table from one node brings back rows removed out of band, then verifies it', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
    await sql('CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL)');
  }
  const config = syncConfig(dbs, ['public.items', 'public.other']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  await using sync = await startSync(config);
  await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
  await dbs.sql1("INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g");
  await dbs.sql1("INSERT INTO other SELECT g, 'a' FROM generate_series(1, 5) g");
  await waitFor('rows on b', async () => (await tableRows(dbs.sql2, 'items')).length === 10);
  // Out of band on b: not captured (a pgbisync origin), not remembered (triggers off).
  const oob = new pg.Client({ connectionString: dbs.db2 });
  await oob.connect();
  try {
    await oob.query('SET session_replication_role = replica');
    // An origin of pgbisync's kind (the capture drops every pgbisync_* transaction); not a@b, which b's
    // applier holds.
    await oob.query('SELECT pg_replication_origin_create($1)', [objectNames.origin('oob', b)]);
    await oob.query('SELECT pg_replication_origin_session_setup($1)', [objectNames.origin('oob', b)]);
    await oob.query('DELETE FROM items WHERE id <= 3');
  } finally {
    await oob.end();
  }
  assert.equal((await tableRows(dbs.sql2, 'items')).length, 7);
  // Argument checks first.
  await assert.rejects(
    resyncTable(config, 'public.nope', { wait: true, stallTimeoutMs: 1000, onProgress: () => {} }),
    (error: FatalError) =>
      error.code === ErrorCode.CONFIG_INVALID && /neither a node nor a synced table/.test(error.message),
  );
  const lines: string[] = [];
  const result = await resyncTable(config, 'public.items', {
    from: a,
    wait: true,
    stallTimeoutMs: 60_000,
    pollMs: 200,
    onProgress: (l) => lines.push(l),
  });
  assert.equal(result.verified?.identical, true, lines.join('\n'));
  assert.deepEqual(result.from, [a]);
  const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
  assert.deepEqual(y, x);
  assert.match(
    lines.join('\n'),
    /re-copy from \S+ requested.*copy from \S+ sent to Kafka.*applied on .*verify finds the table identical/s,
  );
  // Only that table was copied again: b's capture was not asked, a's record holds both tables again.
  const copied = await dbs.sql1('SELECT copied_tables FROM pgbisync.capture_state');
  assert.deepEqual([...copied.rows[0].copied_tables].sort(), ['public.items', 'public.other']);
  await sync.stop();
  await dbs.sql2('SELECT pg_replication_origin_drop($1)', [objectNames.origin('oob', b)]);
  await teardown(config, { keepTopics: false });
});
