/**
 * A hostile producer on a synced topic, against real PostgreSQL and Kafka: records that are not change
 * events, change events naming a table outside the config or one of pgbisync's own tables, and change
 * events of a synced table carrying `pgbisync.*` headers a capture never writes, a row batch naming a
 * table outside the config. Each is dead-lettered
 * with its reason and code, counted by code, and never reaches the target; the direction carries on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRowBatch } from '../events/row-batch.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import type { InRecord, OutRecord } from '../kafka/records.ts';
import { deadLetterTopic, serverName } from '../kafka/topics.ts';
import {
  COMMIT_LSN_HEADER,
  DEAD_LETTER_HEADERS,
  LAST_HEADER,
  LAST_VALUE,
  ROWS_HEADER,
  ROWS_VALUE,
  transactionEndHeaders,
} from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { readTopic, startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

interface Envelope {
  payload: { after: { id: number; v: string }; source: { schema: string; table: string } };
}

/** A copy of the real insert event `real` with row `id` (value `v`) of `schema.table`. */
function forged(
  real: InRecord,
  topic: string,
  o: { id: number; schema?: string; table?: string },
): OutRecord {
  const key = JSON.parse(real.key!.toString()) as { payload: { id: number } };
  key.payload.id = o.id;
  const value = JSON.parse(real.value!.toString()) as Envelope;
  value.payload.after = { id: o.id, v: 'hostile' };
  if (o.schema !== undefined) value.payload.source.schema = o.schema;
  if (o.table !== undefined) value.payload.source.table = o.table;
  return { topic, key: Buffer.from(JSON.stringify(key)), value: Buffer.from(JSON.stringify(value)) };
}

test('records that are not ours are dead-lettered with the reason, counted, and never applied', async () => {
  await using dbs = await createTestDatabases();
  const ddl = `CREATE TABLE public.t (id int PRIMARY KEY, v text);
               CREATE TABLE public.secret (id int PRIMARY KEY, v text)`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  // The forgeries below copy a real event: the copy of a row written before the slot is one too.
  const config = syncConfig(dbs, ['public.t'], 'capture: { snapshotRecords: events }');
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  const topic = serverName(config, a);
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO t VALUES (1, 'before')`);
    await waitFor('row 1 on b', async () => (await dbs.sql2('SELECT 1 FROM t')).rowCount === 1);
    const [real] = await readTopic(config, topic, (rs) => rs.length >= 1);
    assert.ok(real?.value !== null && real?.key !== null && real !== undefined);
    const progressBefore = (await dbs.sql2('SELECT * FROM pgbisync.apply_progress ORDER BY 1')).rows;

    const hostile: OutRecord[] = [
      { topic, key: Buffer.from('k'), value: Buffer.from('{"not": "an event"') },
      forged(real, topic, { id: 66, table: 'secret' }),
      forged(real, topic, { id: 67, schema: 'pgbisync', table: 'apply_progress' }),
      { ...forged(real, topic, { id: 77 }), headers: { [DEAD_LETTER_HEADERS.code]: 'PGB0000' } },
      {
        ...forged(real, topic, { id: 78 }),
        headers: { [LAST_HEADER]: LAST_VALUE, [COMMIT_LSN_HEADER]: 'not-an-lsn' },
      },
      { ...forged(real, topic, { id: 79 }), headers: { 'pgbisync.sneaky': '1' } },
      // A row batch (the initial copy's form) naming a table outside the config.
      {
        topic,
        key: null,
        value: encodeRowBatch({
          schema: 'public',
          table: 'secret',
          columns: ['id', 'v'],
          rows: 1,
          commitTimeUs: 1n,
          values: ['{68}', '{hostile}'],
        }),
        headers: { ...transactionEndHeaders(1n, true), [ROWS_HEADER]: ROWS_VALUE },
      },
    ];
    const producer = new KafkaProducer(kafkaOptions(config, 'hostile'));
    try {
      await producer.send(hostile);
    } finally {
      await producer.close();
    }
    await dbs.sql1(`INSERT INTO t VALUES (2, 'after')`);
    await waitFor('row 2 on b', async () => (await dbs.sql2('SELECT 1 FROM t WHERE id = 2')).rowCount === 1);

    // Nothing hostile reached the target: checked with plain SQL.
    assert.deepEqual((await dbs.sql2('SELECT id, v FROM t ORDER BY id')).rows, [
      { id: 1, v: 'before' },
      { id: 2, v: 'after' },
    ]);
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM secret')).rows[0].n, 0);
    const progressAfter = (await dbs.sql2('SELECT * FROM pgbisync.apply_progress ORDER BY 1')).rows;
    assert.equal(progressAfter.length, progressBefore.length);
    assert.ok(!JSON.stringify(progressAfter).includes('hostile'), JSON.stringify(progressAfter));
    assert.equal(sync.runner.states.get(`apply ${a}->${b}`)?.state, 'running');

    const dead = await readTopic(config, deadLetterTopic(config, a), (rs) => rs.length >= hostile.length);
    // In offset order (records with forged headers are screened before the others are decoded).
    const seen = dead
      .map((r) => new Map(r.headers))
      .sort((x, y) => Number(x.get(DEAD_LETTER_HEADERS.offset)) - Number(y.get(DEAD_LETTER_HEADERS.offset)))
      .map((h) => ({ code: h.get(DEAD_LETTER_HEADERS.code), error: h.get(DEAD_LETTER_HEADERS.error) ?? '' }));
    assert.deepEqual(
      seen.map((s) => s.code),
      ['PGB3101', 'PGB3103', 'PGB3103', 'PGB3104', 'PGB3104', 'PGB3104', 'PGB3103'],
      JSON.stringify(seen),
    );
    assert.match(seen[1]!.error, /names table public\.secret, which is not synced/);
    assert.match(seen[2]!.error, /pgbisync's own table pgbisync\.apply_progress/);
    assert.match(seen[3]!.error, /header pgbisync\.dlq\.code is not one a capture writes/);
    assert.match(seen[4]!.error, /header pgbisync\.commit_lsn is 'not-an-lsn'/);
    assert.match(seen[5]!.error, /header pgbisync\.sneaky/);
    assert.match(seen[6]!.error, /names table public\.secret, which is not synced/);
    const counts = new Map<string, number>();
    for (const v of (await sync.metrics.deadLetters.get()).values) {
      counts.set(String(v.labels.code), (counts.get(String(v.labels.code)) ?? 0) + v.value);
    }
    assert.deepEqual(Object.fromEntries(counts), { PGB3101: 1, PGB3103: 3, PGB3104: 3 });
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
