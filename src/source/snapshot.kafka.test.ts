/**
 * The initial snapshot publishes the same events the stream would: for rows of every common type, a
 * snapshot read (op r) and a streamed insert (op c) of an identical row carry the same key schema, the
 * same value schema and the same `after` (but for the id), so consumers — ours, Debezium's JDBC sink,
 * compaction by key — cannot tell them apart. Also under REPLICA IDENTITY FULL the key is the primary key.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { serverName } from '../kafka/topics.ts';
import { isRowBatch } from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { EVERY_TYPE_DDL, EVERY_TYPE_ROWS } from '../testing/every-type.ts';
import {
  readTopic,
  startSync,
  syncConfig,
  tableRows,
  waitFor,
  waitForStreaming,
} from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

interface Envelope {
  schema: unknown;
  payload: { op: string; after: Record<string, unknown> | null } | null;
}

test('snapshot reads and streamed inserts of the same rows are the same events', async () => {
  await using dbs = await createTestDatabases();
  const ddl = `${EVERY_TYPE_DDL}\nALTER TABLE public.everything REPLICA IDENTITY FULL;`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1(EVERY_TYPE_ROWS); // before the slot exists: these three go out as snapshot reads
  // Events, as consumers other than pgbisync (the JDBC sink) read them; row batches: snapshot-batches.kafka.test.ts.
  const config = syncConfig(dbs, ['public.everything'], 'capture: { snapshotRecords: events }');
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitFor('the snapshot on b', async () => (await tableRows(dbs.sql2, 'everything')).length === 3);
    // The same rows again, streamed, with ids 101-103.
    await dbs.sql1(`CREATE TEMP TABLE again AS SELECT * FROM everything;
                    UPDATE again SET id = id + 100;
                    INSERT INTO everything SELECT * FROM again`);
    await waitFor(
      'the streamed rows on b',
      async () => (await tableRows(dbs.sql2, 'everything')).length === 6,
    );
    assert.deepEqual(await tableRows(dbs.sql1, 'everything'), await tableRows(dbs.sql2, 'everything'));
    await sync.stop();
  }

  const records = new Map<string, { key: Envelope; value: Envelope }>();
  const read = await readTopic(config, serverName(config, a), (rs) => rs.length >= 6);
  for (const r of read) {
    if (r.value === null || r.key === null) continue;
    const value = JSON.parse(r.value.toString()) as Envelope;
    const key = JSON.parse(r.key.toString()) as Envelope;
    const id = String((key.payload as unknown as { id: unknown }).id);
    records.set(`${value.payload?.op}:${id}`, { key, value });
  }
  for (const id of [1, 2, 3]) {
    const read = records.get(`r:${id}`);
    const insert = records.get(`c:${id + 100}`);
    assert.ok(read !== undefined && insert !== undefined, `events of row ${id}: ${[...records.keys()]}`);
    assert.deepEqual(read.key.schema, insert.key.schema, 'key schema: the primary key only');
    assert.deepEqual(Object.keys(read.key.payload ?? {}), ['id']);
    assert.deepEqual(read.value.schema, insert.value.schema, `value schema of row ${id}`);
    const after = (e: Envelope) => ({ ...e.payload?.after, id: null });
    assert.deepEqual(after(read.value), after(insert.value), `after of row ${id}`);
  }
  await teardown(config, { keepTopics: false });
});

test('rows written while the snapshot is read appear exactly once in the final state', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.big (id int PRIMARY KEY, v int NOT NULL, note text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1(`INSERT INTO big SELECT g, 0, 'seed' FROM generate_series(1, 20000) g`);
  // Small chunks: the snapshot takes a while, and the writer below runs all through it.
  const config = syncConfig(dbs, ['public.big'], 'capture: { snapshotChunkRows: 100 }');
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  const snapshotDone = async () =>
    (
      await dbs.sql1(
        'SELECT 1 FROM pgbisync.capture_state WHERE node = $1 AND snapshot_done_at IS NOT NULL',
        [a],
      )
    ).rowCount === 1;
  {
    await using sync = await startSync(config);
    let writes = 0;
    let during = 0;
    // Inserts past the seed, updates and deletes spread over the whole table (rows the snapshot has
    // read already and rows it has yet to read), until the snapshot is done and a little after.
    let done = false;
    for (let round = 0; ; round++) {
      // Asked every tenth round, so that most round trips are writes.
      if (round % 10 === 0) done = await snapshotDone();
      if (!done) during++;
      await dbs.sql1(`BEGIN;
        INSERT INTO big VALUES (${20001 + round}, ${round}, 'new');
        UPDATE big SET v = v + 1, note = 'upd' WHERE id = ${1 + ((round * 7919) % 20000)};
        DELETE FROM big WHERE id = ${1 + ((round * 104729 + 13) % 20000)};
        COMMIT`);
      writes++;
      if (done && round > during + 50) break;
      if (round > 100_000) assert.fail('the snapshot never finished');
    }
    assert.ok(during >= 10, `only ${during} transactions ran during the snapshot: make it slower`);
    await waitFor(
      'b equals a',
      async () =>
        JSON.stringify(await tableRows(dbs.sql1, 'big')) === JSON.stringify(await tableRows(dbs.sql2, 'big')),
      120_000,
    );
    const n = (await dbs.sql2('SELECT count(*)::int AS n FROM big')).rows[0].n as number;
    assert.ok(n > 20000 - writes && n <= 20000 + writes, `${n} rows after ${writes} write transactions`);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a snapshot cut short is read again without losing what changed meanwhile', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.big (id int PRIMARY KEY, v int NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1('INSERT INTO big SELECT g, 0 FROM generate_series(1, 20000) g');
  const config = syncConfig(dbs, ['public.big'], 'capture: { snapshotChunkRows: 100 }');
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  const countOnB = async () => (await dbs.sql2('SELECT count(*)::int AS n FROM big')).rows[0].n as number;
  {
    await using sync = await startSync(config);
    await waitFor('part of the snapshot on b', async () => (await countOnB()) >= 200);
    await sync.stop();
  }
  const done = await dbs.sql1('SELECT snapshot_done_at FROM pgbisync.capture_state WHERE node = $1', [a]);
  assert.equal(done.rows[0]?.snapshot_done_at, null, 'the snapshot must have been cut short');
  const partial = await countOnB();
  assert.ok(partial < 20000, `b holds ${partial} rows`);
  // A crash right after the slot was created leaves no state row at all: the same re-read must happen.
  await dbs.sql1('DELETE FROM pgbisync.capture_state WHERE node = $1', [a]);
  // While the sync is down: delete rows b already has, change others, add new ones.
  await dbs.sql1('DELETE FROM big WHERE id <= 100');
  await dbs.sql1('UPDATE big SET v = 1 WHERE id BETWEEN 101 AND 150 OR id > 19950');
  await dbs.sql1('INSERT INTO big SELECT g, 2 FROM generate_series(20001, 20100) g');
  {
    await using sync = await startSync(config);
    await waitFor(
      'b equals a',
      async () =>
        JSON.stringify(await tableRows(dbs.sql1, 'big')) === JSON.stringify(await tableRows(dbs.sql2, 'big')),
      120_000,
    );
    await sync.stop();
  }
  assert.equal(await countOnB(), 20000);
  const redone = await dbs.sql1('SELECT snapshot_done_at FROM pgbisync.capture_state WHERE node = $1', [a]);
  assert.ok(redone.rows[0]?.snapshot_done_at instanceof Date, 'the snapshot read again is recorded as done');
  await teardown(config, { keepTopics: false });
});

for (const records of ['batched', 'events'] as const) {
  test(`a snapshot sends the node's own row versions and the deletes it remembers, each with its time (${records})`, async () => {
    await using dbs = await createTestDatabases();
    const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
    await dbs.sql1(ddl);
    await dbs.sql2(ddl);
    const config = syncConfig(dbs, ['public.items'], `capture: { snapshotRecords: ${records} }`);
    const [a] = config.nodes.map((n) => n.name) as [string];
    await setup(config);
    {
      await using sync = await startSync(config);
      await dbs.sql1(`INSERT INTO items VALUES (1, 'a'), (2, 'a'), (3, 'a')`);
      await dbs.sql2(`INSERT INTO items VALUES (10, 'b'), (11, 'b')`);
      await waitFor('5 rows on both', async () => {
        return (
          (await tableRows(dbs.sql1, 'items')).length === 5 &&
          (await tableRows(dbs.sql2, 'items')).length === 5
        );
      });
      await dbs.sql1('DELETE FROM items WHERE id = 3'); // a's delete: a tombstone on a
      await dbs.sql2('DELETE FROM items WHERE id = 11'); // b's delete, applied on a (a tombstone of b's)
      await waitFor('3 rows on both', async () => {
        return (
          (await tableRows(dbs.sql1, 'items')).length === 3 &&
          (await tableRows(dbs.sql2, 'items')).length === 3
        );
      });
      await sync.stop();
    }
    // a's capture starts afresh (no slot, no state): its snapshot holds a's own versions only, rows 1
    // and 2, and its own delete of row 3 (b's row 10 and b's delete of 11 reach every node from b).
    await dbs.sql1('SELECT pg_drop_replication_slot($1)', [`pgbisync_${a}`]);
    await dbs.sql1('DELETE FROM pgbisync.capture_state WHERE node = $1', [a]);
    const topic = serverName(config, a);
    const before = (await readTopic(config, topic, () => false, 3000)).length;
    const deletedAt = (
      await dbs.sql1(
        `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us
         FROM pgbisync.tombstones WHERE key = '{"id": 3}'`,
      )
    ).rows[0].us as string;
    {
      await using sync = await startSync(config);
      await waitForStreaming(config, [dbs.sql1]);
      await sync.stop();
    }
    const read = (
      await readTopic(config, topic, (rs) => rs.length >= before + (records === 'batched' ? 3 : 4))
    ).slice(before);
    const events = read.flatMap((r) => {
      if (isRowBatch(r.headers)) return batchRows(r);
      const key = JSON.parse(r.key!.toString()).payload as { id: number };
      if (r.value === null) return [`tombstone ${key.id}`];
      const p = (
        JSON.parse(r.value.toString()) as {
          payload: { op: string; source: { snapshot: string; ts_us: number } };
        }
      ).payload;
      return [
        `${p.op} ${key.id} snapshot=${p.source.snapshot}${p.op === 'd' ? ` ts_us=${p.source.ts_us}` : ''}`,
      ];
    });
    assert.deepEqual(events, [
      'r 1 snapshot=true',
      'r 2 snapshot=true',
      `d 3 snapshot=true ts_us=${deletedAt}`,
      'tombstone 3',
    ]);
    await teardown(config, { keepTopics: false });
  });
}

test("a snapshot sends the node's TRUNCATE as a truncate at its time: older rows go on the other nodes, newer stay", async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.items']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO items VALUES (1, 'a'), (2, 'a')`);
    await waitFor('2 rows on b', async () => (await tableRows(dbs.sql2, 'items')).length === 2);
    await sync.stop();
  }
  // While the sync is down: b writes row 5, then a truncates (later: it beats row 5 and a's rows 1, 2),
  // then b writes row 6 (later than the truncate: it stays). a's capture then starts afresh (its slot
  // lost, as `resync` makes it): the truncate travels only in a's snapshot, as the table's tombstone.
  // The torture test met it (seed 6: a node's slot made after its TRUNCATE, rows kept on the other node).
  await dbs.sql2(`INSERT INTO items VALUES (5, 'b')`);
  await dbs.sql1('TRUNCATE items');
  await dbs.sql2(`INSERT INTO items VALUES (6, 'b')`);
  // a's own row after its truncate: newer, it stays on b (sent after the truncate in a's copy, it was
  // deleted there: a source's truncate replaces that source's versions whatever their times).
  await dbs.sql1(`INSERT INTO items VALUES (7, 'a')`);
  const truncatedAt = (
    await dbs.sql1(
      `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us
         FROM pgbisync.tombstones WHERE table_name = 'public.items' AND key = '{}'`,
    )
  ).rows[0].us as string;
  await dbs.sql1('SELECT pg_drop_replication_slot($1)', [`pgbisync_${a}`]);
  await dbs.sql1('DELETE FROM pgbisync.capture_state WHERE node = $1', [a]);
  const topic = serverName(config, a);
  const before = (await readTopic(config, topic, () => false, 3000)).length;
  {
    await using sync = await startSync(config);
    await waitFor('both nodes hold rows 6 and 7 only', async () => {
      const rows = [await tableRows(dbs.sql1, 'items'), await tableRows(dbs.sql2, 'items')];
      return rows.every(
        (r) => JSON.stringify(r) === JSON.stringify(['{"v": "a", "id": 7}', '{"v": "b", "id": 6}']),
      );
    });
    await sync.stop();
  }
  const events = (await readTopic(config, topic, (rs) => rs.length >= before + 2)).slice(before).map((r) => {
    if (isRowBatch(r.headers)) return batchRows(r).join(',');
    const p = (
      JSON.parse(r.value!.toString()) as {
        payload: { op: string; source: { snapshot: string; ts_us: number } };
      }
    ).payload;
    return `${p.op} snapshot=${p.source.snapshot} ts_us=${p.source.ts_us}`;
  });
  assert.deepEqual(events.slice(0, 1), [`t snapshot=true ts_us=${truncatedAt}`]);
  assert.match(events[1] ?? '', /^r (7 )?snapshot=true/);
  await teardown(config, { keepTopics: false });
});

/** A row batch's rows as events would name them: `r <id> snapshot=true` (ids: simple integers). */
function batchRows(r: InRecord): string[] {
  const batch = JSON.parse(r.value!.toString()) as { columns: string[]; values: string[] };
  const ids = batch.values[batch.columns.indexOf('id')]!.slice(1, -1).split(',');
  return ids.map((id) => `r ${id} snapshot=true`);
}
