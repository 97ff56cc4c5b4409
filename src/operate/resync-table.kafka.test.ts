/**
 * `pgbisync resync <table> [--from <node>]`: rows of one table removed on b out of band (triggers off,
 * under a's replication origin: neither captured nor remembered, as a restore from an old backup or a
 * bulk fix with triggers off would leave them) come back from a's copy of that table while the sync runs;
 * the other table is not copied; the command ends with verify of the table. Paused, the copy waits
 * while the sync streams on; resumed, it starts where it stopped; asked anew, it copies the table whole.
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

/** Deletes `where` on b out of band: neither captured (a pgbisync origin) nor remembered (triggers off). */
async function deleteOutOfBand(url: string, b: string, where: string): Promise<void> {
  const oob = new pg.Client({ connectionString: url });
  await oob.connect();
  try {
    await oob.query('SET session_replication_role = replica');
    await oob.query('SELECT pg_replication_origin_session_setup($1)', [objectNames.origin('oob', b)]);
    await oob.query(`DELETE FROM items WHERE ${where}`);
  } finally {
    await oob.end();
  }
}

// Both ways a copy sends rows (capture.snapshotRecords): each reads heap page ranges and resumes at one.
for (const records of ['batched', 'events'] as const)
  test(`resync of a table (${records}): paused, the sync streams on without it; resumed, the copy goes on from its page; asked anew, it copies whole`, async () => {
    await using dbs = await createTestDatabases();
    for (const sql of [dbs.sql1, dbs.sql2]) {
      // Few rows per page: the copy's pages are many.
      await sql('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL) WITH (fillfactor = 10)');
      await sql('CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL)');
    }
    const config = syncConfig(
      dbs,
      ['public.items', 'public.other'],
      `capture: { snapshotRecords: ${records} }`,
    );
    const [a, b] = config.nodes.map((n) => n.name) as [string, string];
    await setup(config);
    await dbs.sql2('SELECT pg_replication_origin_create($1)', [objectNames.origin('oob', b)]);
    const options = { from: a, stallTimeoutMs: 60_000, pollMs: 200, onProgress: () => {} };
    const ids = async (sql: typeof dbs.sql2) =>
      (await sql('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id as number);
    {
      await using sync = await startSync(config);
      await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
      await dbs.sql1("INSERT INTO items SELECT g, repeat('a', 300) FROM generate_series(1, 300) g");
      await waitFor('rows on b', async () => (await ids(dbs.sql2)).length === 300);
      await sync.stop();
    }
    // Rows removed on b out of band, on a's first pages and on its last ones.
    await deleteOutOfBand(dbs.db2, b, 'id <= 20 OR id > 280');
    await resyncTable(config, 'public.items', { ...options, wait: false });
    const lines: string[] = [];
    await resyncTable(config, 'public.items', {
      ...options,
      wait: false,
      pause: true,
      onProgress: (l) => lines.push(l),
    });
    assert.match(
      lines.join('\n'),
      /the copy from \S+ is paused \(at heap page 0\); `pgbisync resync public\.items` resumes it there/,
    );
    // Where an interrupted copy would have stopped: the page of row 150 (rows before it were sent then).
    const page = (await dbs.sql1('SELECT (ctid::text::point)[0]::int AS p FROM items WHERE id = 150')).rows[0]
      .p as number;
    assert.ok(page > 2, `row 150 on page ${page}`);
    await dbs.sql1('UPDATE pgbisync.copy_progress SET next_page = $1 WHERE node = $2', [page, a]);
    {
      await using sync = await startSync(config);
      await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
      // Paused: not copied, and the sync streams on.
      await dbs.sql1("INSERT INTO other VALUES (1, 'a')");
      await waitFor('other crosses', async () => (await tableRows(dbs.sql2, 'other')).length === 1);
      assert.equal((await ids(dbs.sql2)).length, 260, 'a paused copy copies nothing');
      // Resumed: from the page it stopped at, so rows 281-300 come back, rows 1-20 (before it) do not.
      const resumed = await resyncTable(config, 'public.items', { ...options, wait: true });
      assert.equal(resumed.verified?.identical, false);
      const held = await ids(dbs.sql2);
      assert.ok(
        held.includes(300) && !held.includes(20) && held.length === 280,
        `b holds ${held.length} rows`,
      );
      assert.equal(
        (await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.copy_progress')).rows[0].n,
        0,
        'positions forgotten once copied',
      );
      // Asked anew: a whole copy.
      const whole = await resyncTable(config, 'public.items', { ...options, wait: true });
      assert.equal(whole.verified?.identical, true);
      assert.equal((await ids(dbs.sql2)).length, 300);
      await sync.stop();
    }
    await dbs.sql2('SELECT pg_replication_origin_drop($1)', [objectNames.origin('oob', b)]);
    await teardown(config, { keepTopics: false });
  });
