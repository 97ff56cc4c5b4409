/**
 * The initial copy as row batches (capture.snapshotRecords: batched, the default in transactional mode):
 * every common type arrives as the stream would bring it, each row keeps its own commit time on the
 * target (one batch per source transaction), rows too large for a batch travel as events, and the
 * batches apply under last-writer-wins against the target's own writes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { serverName } from '../kafka/topics.ts';
import { isRowBatch } from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { formatTailEvent, type TailEvent, tail } from '../operate/tail.ts';
import { EVERY_TYPE_DDL, EVERY_TYPE_ROWS } from '../testing/every-type.ts';
import { readTopic, startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('every common type copies in row batches as it streams', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(EVERY_TYPE_DDL);
  await dbs.sql2(EVERY_TYPE_DDL);
  await dbs.sql1(EVERY_TYPE_ROWS); // before the slot: copied
  const config = syncConfig(dbs, ['public.everything']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await tableRows(dbs.sql2, 'everything')).length === 3);
    assert.deepEqual(await tableRows(dbs.sql2, 'everything'), await tableRows(dbs.sql1, 'everything'));
    // money's text form follows lc_monetary: the batch carries the number.
    assert.equal(
      (await dbs.sql2('SELECT m::numeric::text AS m FROM everything WHERE id = 1')).rows[0].m,
      '12.34',
    );
    await sync.stop();
  }
  const records = await readTopic(config, serverName(config, a), (rs) =>
    rs.some((r) => isRowBatch(r.headers)),
  );
  const batches = records.filter((r) => isRowBatch(r.headers));
  assert.equal(batches.length, 1, 'one transaction wrote the three rows: one batch');
  assert.equal(JSON.parse(batches[0]!.value!.toString()).rows, 3);
  // tail shows a batch as one line of its rows, not as malformed.
  const tailed: TailEvent[] = [];
  const seen = await tail(config, ['public.everything'], {
    node: a,
    from: 'beginning',
    max: 1,
    signal: AbortSignal.timeout(20_000),
    onEvent: (event) => tailed.push(event),
    onMalformed: (where, error) => assert.fail(`${where}: ${String(error)}`),
  });
  assert.deepEqual(seen, { events: 1, malformed: 0 });
  assert.deepEqual([tailed[0]?.op, tailed[0]?.table, tailed[0]?.rows], ['r', 'public.everything', 3]);
  assert.match(formatTailEvent(tailed[0]!), /r {2}public\.everything {2}3 rows \(a row batch\)/);
  await teardown(config, { keepTopics: false });
});

test('each copied row keeps its own commit time: one batch per source transaction', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  // Three transactions, rows interleaved on the same pages: 1-100, then 101-150, then an update of 1-10.
  await dbs.sql1(`INSERT INTO items SELECT g, 'first' FROM generate_series(1, 100) g`);
  await dbs.sql1(`INSERT INTO items SELECT g, 'second' FROM generate_series(101, 150) g`);
  await dbs.sql1(`UPDATE items SET v = 'third' WHERE id <= 10`);
  const config = syncConfig(dbs, ['public.items']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await tableRows(dbs.sql2, 'items')).length === 150);
    await sync.stop();
  }
  assert.deepEqual(await tableRows(dbs.sql2, 'items'), await tableRows(dbs.sql1, 'items'));
  // The version each node holds of each row: its commit time (a's own, applied on b under a's origin).
  const versions = `SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us
                      FROM items ORDER BY id`;
  const onA = (await dbs.sql1(versions)).rows;
  assert.deepEqual((await dbs.sql2(versions)).rows, onA);
  assert.equal(new Set(onA.map((r) => r.us)).size, 3, 'three commit times');
  const records = await readTopic(config, serverName(config, a), (rs) => rs.length >= 3);
  const batches = records.filter((r) => isRowBatch(r.headers)).map((r) => JSON.parse(r.value!.toString()));
  assert.deepEqual(
    batches.map((b) => b.rows).sort((x, y) => x - y),
    [10, 50, 90],
  );
  await teardown(config, { keepTopics: false });
});

test('rows too large for a batch travel as events, the rest in batches', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  // Row 5's body (900 kB, not compressible) is above what a batch holds; it shares its page with
  // small rows. Kafka's topic takes it (max.message.bytes raised), as it would streamed.
  await dbs.sql1(`INSERT INTO docs SELECT g, 'small ' || g FROM generate_series(1, 4) g`);
  await dbs.sql1(`INSERT INTO docs SELECT 5, string_agg(md5(g::text), '') FROM generate_series(1, 28125) g`);
  await dbs.sql1(`INSERT INTO docs SELECT g, 'small ' || g FROM generate_series(6, 2000) g`);
  const base = syncConfig(dbs, ['public.docs'], 'capture: { snapshotChunkRows: 500 }');
  const config = {
    ...base,
    kafka: { ...base.kafka, maxMessageBytes: 4_000_000, compression: 'none' as const },
  };
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await tableRows(dbs.sql2, 'docs')).length === 2000);
    await sync.stop();
  }
  const sum = "SELECT md5(string_agg(id || body, ',' ORDER BY id)) AS h FROM docs";
  assert.deepEqual((await dbs.sql2(sum)).rows, (await dbs.sql1(sum)).rows);
  const rowsIn = (rs: readonly InRecord[]) =>
    rs.reduce(
      (n, r) => n + (r.value === null ? 0 : isRowBatch(r.headers) ? JSON.parse(r.value.toString()).rows : 1),
      0,
    );
  const records = (await readTopic(config, serverName(config, a), (rs) => rowsIn(rs) >= 2000)).filter(
    (r) => r.value !== null,
  );
  const events = records.filter((r) => !isRowBatch(r.headers));
  const batched = rowsIn(records.filter((r) => isRowBatch(r.headers)));
  // The large row's page went as events (it and its neighbours); everything else in batches of at most
  // 500 rows (snapshotChunkRows).
  assert.ok(events.length >= 1 && events.length < 300, `${events.length} events`);
  assert.equal(batched + events.length, 2000);
  for (const r of records.filter((x) => isRowBatch(x.headers))) {
    assert.ok(JSON.parse(r.value!.toString()).rows <= 500);
  }
  await teardown(config, { keepTopics: false });
});

test("a batch applies under last-writer-wins: the target's newer row stays, its older row is replaced", async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql2(`INSERT INTO items VALUES (1, 'b older')`); // before a's rows: a's copy wins
  await dbs.sql1(`INSERT INTO items SELECT g, 'a' FROM generate_series(1, 50) g`);
  await dbs.sql2(`INSERT INTO items VALUES (2, 'b newer')`); // after a's rows: b's row wins
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitFor('both nodes equal, 50 rows', async () => {
      const [x, y] = [await tableRows(dbs.sql1, 'items'), await tableRows(dbs.sql2, 'items')];
      return x.length === 50 && JSON.stringify(x) === JSON.stringify(y);
    });
    await sync.stop();
  }
  const rows = (await dbs.sql2('SELECT id, v FROM items WHERE id <= 3 ORDER BY id')).rows;
  assert.deepEqual(rows, [
    { id: 1, v: 'a' },
    { id: 2, v: 'b newer' },
    { id: 3, v: 'a' },
  ]);
  const conflicts = (
    await dbs.sql2(
      `SELECT key::text, resolution FROM pgbisync.conflicts WHERE table_name = 'public.items' ORDER BY 1`,
    )
  ).rows;
  assert.deepEqual(conflicts, [
    { key: '{"id": 1}', resolution: 'apply_remote' },
    { key: '{"id": 2}', resolution: 'keep_local' },
  ]);
  await teardown(config, { keepTopics: false });
});
