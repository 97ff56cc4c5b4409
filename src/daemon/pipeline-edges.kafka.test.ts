/**
 * Edges of the pipeline on real PostgreSQL + Kafka: every common type crosses intact, a poison record on
 * a topic goes to the dead-letter topic without stopping the applier, a record of a newer wire version
 * or a target constraint blocks its direction alone, and the slot keeps advancing while the synced tables are idle but the database
 * is busy (no unbounded WAL retention).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import { deadLetterTopic, serverName } from '../kafka/topics.ts';
import {
  DEAD_LETTER_HEADERS,
  LAST_HEADER,
  LAST_VALUE,
  transactionEndHeaders,
  WIRE_HEADER,
  WIRE_VERSION,
} from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { EVERY_TYPE_ROWS as ROWS, EVERY_TYPE_DDL as TYPES } from '../testing/every-type.ts';
import { readTopic, startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('every common type crosses to the other node and back intact', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TYPES);
  await dbs.sql2(TYPES);
  const config = syncConfig(dbs, ['public.everything']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(ROWS);
    const same = async () =>
      JSON.stringify(await tableRows(dbs.sql1, 'everything')) ===
      JSON.stringify(await tableRows(dbs.sql2, 'everything'));
    await waitFor('rows on b', same);
    // `same` compares every row's to_jsonb text, i.e. each value through its type's output function.
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM everything')).rows[0].n, 3);
    // And back: b changes every row, a must follow.
    await dbs.sql2(`UPDATE everything SET t = coalesce(t, '') || ' (b)', jb = '{"b": 1}'`);
    await waitFor(
      'b update on a',
      async () => (await same()) && (await tableRows(dbs.sql1, 'everything'))[0]!.includes('(b)'),
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a poison record goes to the dead-letter topic and the applier carries on', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.t (id int PRIMARY KEY, v text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.t']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO t VALUES (1, 'before')`);
    await waitFor('row 1 on b', async () => (await dbs.sql2('SELECT 1 FROM t')).rowCount === 1);
    const producer = new KafkaProducer(kafkaOptions(config, 'poison'));
    try {
      await producer.send([
        {
          topic: serverName(config, a),
          key: Buffer.from('k'),
          value: Buffer.from('{"not": "an event"'),
          headers: { [LAST_HEADER]: LAST_VALUE },
        },
      ]);
    } finally {
      await producer.close();
    }
    await dbs.sql1(`INSERT INTO t VALUES (2, 'after')`);
    await waitFor('row 2 on b', async () => (await dbs.sql2('SELECT 1 FROM t WHERE id = 2')).rowCount === 1);
    const [first] = await readTopic(config, deadLetterTopic(config, a), (rs) => rs.length >= 1, 15_000);
    const dead =
      first === undefined
        ? undefined
        : { value: first.value?.toString() ?? '', headers: new Map(first.headers) };
    assert.ok(dead !== undefined, 'the poison record must be in the dead-letter topic');
    assert.equal(dead.value, '{"not": "an event"');
    assert.equal(dead.headers.get(DEAD_LETTER_HEADERS.topic), serverName(config, a));
    assert.equal(dead.headers.get(DEAD_LETTER_HEADERS.code), 'PGB3101');
    assert.equal(dead.headers.get(LAST_HEADER), LAST_VALUE, 'the record keeps its own headers');
    assert.match(dead.headers.get(DEAD_LETTER_HEADERS.error) ?? '', /./);
    const counted = (await sync.metrics.deadLetters.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(counted, 1);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a record of a newer wire version blocks its direction before anything after it is applied', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.t (id int PRIMARY KEY, v text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.t']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const toB = () => sync.runner.states.get(`apply ${a}->${b}`)!;
    await dbs.sql1(`INSERT INTO t VALUES (1, 'before')`);
    await waitFor('row 1 on b', async () => (await dbs.sql2('SELECT 1 FROM t')).rowCount === 1);
    // What a later capture could write: a transaction whose end says it follows the next wire version.
    const [written] = await readTopic(config, serverName(config, a), (rs) => rs.length >= 1);
    assert.ok(written !== undefined);
    const producer = new KafkaProducer(kafkaOptions(config, 'future'));
    try {
      await producer.send([
        {
          topic: serverName(config, a),
          key: written.key,
          value: written.value,
          headers: { ...transactionEndHeaders(0xffff_ffffn), [WIRE_HEADER]: String(WIRE_VERSION + 1) },
        },
      ]);
    } finally {
      await producer.close();
    }
    await dbs.sql1(`INSERT INTO t VALUES (2, 'after')`);
    await waitFor('a->b blocked', async () => toB().state === 'blocked');
    assert.match(
      toB().lastError ?? '',
      new RegExp(
        `has wire version '${WIRE_VERSION + 1}' \\(header pgbisync\\.wire\\); this pgbisync reads versions up to ${WIRE_VERSION}`,
      ),
    );
    assert.match(toB().fix ?? '', /at least as new as the one capturing/);
    // The other direction runs on; nothing after the record crossed, nothing was set aside.
    await dbs.sql2(`INSERT INTO t VALUES (100, 'from b')`);
    await waitFor(
      'row 100 on a',
      async () => (await dbs.sql1('SELECT 1 FROM t WHERE id = 100')).rowCount === 1,
    );
    assert.equal(toB().state, 'blocked');
    assert.deepEqual((await dbs.sql2('SELECT id FROM t ORDER BY id')).rows, [{ id: 1 }, { id: 100 }]);
    assert.deepEqual(await readTopic(config, deadLetterTopic(config, a), (rs) => rs.length >= 1, 2_000), []);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a direction blocked by a target constraint leaves the process alive and the other direction applying', async () => {
  await using dbs = await createTestDatabases();
  const ddl =
    'CREATE TABLE public.t (id int PRIMARY KEY, v text); CREATE TABLE public.u (id int PRIMARY KEY)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql2(`ALTER TABLE t ADD CONSTRAINT no_bad CHECK (v <> 'bad')`);
  const config = syncConfig(dbs, ['public.t', 'public.u']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  // In `run` an unhandled rejection ends the process; here it would only fail the test, so record them.
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', record);
  try {
    {
      await using sync = await startSync(config);
      await dbs.sql1(`INSERT INTO t VALUES (0, 'first')`);
      await waitFor('row 0 on b', async () => (await dbs.sql2('SELECT 1 FROM t')).rowCount === 1);
      await sync.stop();
    }
    // A backlog that b refuses at its first transaction, which each retry of a->b reads whole: so many
    // transactions after it that the applier sends them before it reads u's catalog (first use).
    await dbs.sql1(`INSERT INTO t VALUES (1, 'bad')`);
    await dbs.sql1(
      `DO $$ BEGIN FOR i IN 2..100 LOOP INSERT INTO t VALUES (i, 'ok'); COMMIT; END LOOP; END $$`,
    );
    await dbs.sql1('INSERT INTO u VALUES (1)');
    {
      await using sync = await startSync(config);
      const toB = () => sync.runner.states.get(`apply ${a}->${b}`)!;
      const attempts = async () =>
        (await sync.metrics.restarts.get()).values.find((v) => v.labels.component === `apply ${a}->${b}`)
          ?.value ?? 0;
      await waitFor(
        'a->b blocked and retried twice',
        async () => toB().state === 'blocked' && (await attempts()) >= 3,
      );
      assert.match(toB().lastError ?? '', /SQLSTATE 23514.*no_bad/);
      await dbs.sql2(`INSERT INTO t VALUES (1000, 'from b')`);
      await waitFor(
        'row 1000 on a',
        async () => (await dbs.sql1('SELECT 1 FROM t WHERE id = 1000')).rowCount === 1,
      );
      assert.equal(toB().state, 'blocked');
      assert.deepEqual((await dbs.sql2('SELECT id FROM t ORDER BY id')).rows, [{ id: 0 }, { id: 1000 }]);
      await sync.stop();
    }
  } finally {
    process.off('unhandledRejection', record);
  }
  assert.deepEqual(unhandled, []);
  await teardown(config, { keepTopics: false });
});

test('the slot advances while synced tables are idle and the database is busy', async () => {
  await using dbs = await createTestDatabases();
  const ddl =
    'CREATE TABLE public.synced (id int PRIMARY KEY); CREATE TABLE public.other (id serial PRIMARY KEY, pad text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.synced']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const flushed = async () =>
      (
        await dbs.sql1(
          `SELECT confirmed_flush_lsn::text AS l, pg_current_wal_lsn()::text AS cur FROM pg_replication_slots WHERE slot_name = $1`,
          [`pgbisync_${a}`],
        )
      ).rows[0] as { l: string; cur: string } | undefined;
    await waitFor('slot created', async () => (await flushed()) !== undefined);
    const start = (await flushed())!.l;
    // Busy database, idle synced table: only `other` is written (not in the publication).
    await dbs.sql1(`INSERT INTO other (pad) SELECT repeat('x', 500) FROM generate_series(1, 20000)`);
    const written = (await dbs.sql1('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
    await waitFor(
      'confirmed_flush_lsn to pass the busy writes',
      async () => {
        const now = await dbs.sql1(`SELECT $1::pg_lsn >= $2::pg_lsn AS ok`, [(await flushed())!.l, written]);
        return now.rows[0].ok === true;
      },
      40_000,
    );
    assert.notEqual((await flushed())!.l, start);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
