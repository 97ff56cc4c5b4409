/**
 * Schemaless events (`capture.schemasEnabled: false`) end to end on real PostgreSQL and Kafka: records
 * carry the payload alone and name their schema in a header; the schema is kept on the source, so every
 * type crosses intact both ways, snapshot included, and records written before an ALTER TABLE are still
 * read by the schema they were written with after it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverName } from '../kafka/topics.ts';
import { SCHEMA_HEADER } from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { type TailEvent, tail } from '../operate/tail.ts';
import { EVERY_TYPE_ROWS as ROWS, EVERY_TYPE_DDL as TYPES } from '../testing/every-type.ts';
import { readTopic, startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('schemaless events carry every type both ways, across an ALTER TABLE', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TYPES);
  await dbs.sql2(TYPES);
  await dbs.sql1(ROWS); // before setup: these three cross in the snapshot
  // The copy as events too (row batches carry no schema: snapshot-batches.kafka.test.ts).
  const config = syncConfig(
    dbs,
    ['public.everything'],
    'capture: { schemasEnabled: false, snapshotRecords: events }',
  );
  const a = config.nodes[0]!.name;
  await setup(config);
  const same = async () =>
    JSON.stringify(await tableRows(dbs.sql1, 'everything')) ===
    JSON.stringify(await tableRows(dbs.sql2, 'everything'));
  {
    await using sync = await startSync(config);
    await waitFor('the snapshot on b', async () => (await tableRows(dbs.sql2, 'everything')).length === 3);
    assert.ok(await same(), 'snapshot rows identical');
    await dbs.sql1(`UPDATE everything SET t = 'streamed from a', iv = '2 days 00:00:01' WHERE id = 1`);
    await dbs.sql2(`UPDATE everything SET ts = '2001-02-03 04:05:06.000007', n = -1.5 WHERE id = 3`);
    await waitFor('both updates on both nodes', async () => {
      const r = await dbs.sql1('SELECT n::text FROM everything WHERE id = 3');
      return r.rows[0]?.n === '-1.500000' && (await same());
    });
    await sync.stop();
  }

  // The records: no schema inside, a header naming one that a's pgbisync.event_schemas holds.
  const records = await readTopic(config, serverName(config, a), (rs) => rs.length >= 4);
  const ids = new Set<string>();
  for (const r of records.filter((r) => r.value !== null)) {
    const value = JSON.parse(r.value!.toString('utf8')) as Record<string, unknown>;
    assert.ok(!('schema' in value) && 'after' in value, `record ${r.offset} is schemaless`);
    const id = r.headers.get(SCHEMA_HEADER);
    assert.match(id ?? '', /^[0-9a-f]{32}$/, `record ${r.offset} names its schema`);
    ids.add(id!);
  }
  const stored = await dbs.sql1('SELECT schema_id FROM pgbisync.event_schemas');
  for (const id of ids)
    assert.ok(
      stored.rows.some((row) => row.schema_id === id),
      `${id} is stored on a`,
    );
  // b's applier copied them, so a restart while a is down still reads a's backlog.
  const copied = await dbs.sql2('SELECT schema_id FROM pgbisync.event_schemas');
  for (const id of ids) {
    assert.ok(
      copied.rows.some((row) => row.schema_id === id),
      `${id} is copied to b`,
    );
  }
  // tail reads them the same way: the snapshot rows and the update, decoded, nothing malformed.
  const tailed: TailEvent[] = [];
  const seen = await tail(config, ['public.everything'], {
    node: a,
    from: 'beginning',
    max: 4,
    signal: AbortSignal.timeout(20_000),
    onEvent: (event) => tailed.push(event),
    onMalformed: (where, error) => assert.fail(`${where}: ${String(error)}`),
  });
  assert.deepEqual(seen, { events: 4, malformed: 0 });
  assert.deepEqual(
    tailed.map((e) => [e.op, e.key?.id]),
    [
      ['r', '1'],
      ['r', '2'],
      ['r', '3'],
      ['u', '1'],
    ],
  );
  assert.equal(tailed[3]!.changed.t, 'streamed from a');

  // While the sync is down: a change under the old definition, the ALTER on both nodes, a change
  // under the new one. On restart capture encodes each by the definition it was made under.
  await dbs.sql1(`UPDATE everything SET t = 'before the alter' WHERE id = 2`);
  for (const sql of [dbs.sql1, dbs.sql2]) await sql('ALTER TABLE everything ADD COLUMN extra numeric(10,3)');
  await dbs.sql1(`UPDATE everything SET extra = 12.5, t = 'after the alter' WHERE id = 3`);
  {
    await using _sync = await startSync(config);
    await waitFor('the changes around the alter on b', async () => {
      const r = await dbs.sql2('SELECT t, extra::text FROM everything WHERE id IN (2, 3) ORDER BY id');
      return r.rows[1]?.extra === '12.500' && (await same());
    });
    const r = await dbs.sql2('SELECT t FROM everything WHERE id = 2');
    assert.equal(r.rows[0].t, 'before the alter');
  }
  const versions = await dbs.sql1(
    `SELECT count(*)::int AS n FROM pgbisync.event_schemas WHERE value_schema LIKE '%"extra"%'`,
  );
  assert.equal(versions.rows[0].n, 1, 'the new definition got a schema of its own');
  await teardown(config, { keepTopics: false });
});
