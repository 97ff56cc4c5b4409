/**
 * The stamp keeper (./stamp-keeper.ts) on a server of the test's own (freezing must reach every
 * database of the cluster). Without a hold, a row's commit time is gone once every database is frozen;
 * with the keeper's slot, rows written after its hold keep theirs through the same freezing, until every
 * direction into the node applied past them. The keeper holds only what is older than half of
 * `vacuum_freeze_min_age` xids: the server runs with 0 (every candidate held), then with the default
 * (50 million: the young hold is let go). The slot holds no WAL; `conflicts.keepCommitTimes: false` and
 * teardown drop it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { PGBISYNC_SCHEMA_SQL } from '../pg/pgbisync-schema.ts';
import { freezeEveryDatabase, setCommitTimestamps, withOwnServer } from '../testing/own-server.ts';
import { query } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';
import { teardown } from './setup.ts';
import { StampKeeper } from './stamp-keeper.ts';

const stampOf = async (url: string, id: number): Promise<string | null> =>
  (await query(url, 'SELECT pg_xact_commit_timestamp(xmin)::text AS ts FROM t WHERE id = $1', [id])).rows[0]
    .ts;

const slots = async (url: string) =>
  (
    await query(
      url,
      "SELECT slot_name, slot_type, xmin::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name LIKE 'pgbisync\\_\\_stamps\\_%' ORDER BY 1",
    )
  ).rows as { slot_name: string; slot_type: string; xmin: string | null; restart_lsn: string | null }[];

test('the stamp slot keeps commit times through freezing until every direction applied past them', async () => {
  // Its db1 port + 104.
  await withOwnServer('stamp-keeper', 104, async (server) => {
    await setCommitTimestamps(server, 'on');
    const db1 = server.url;
    await query(db1, 'CREATE DATABASE db2');
    const db2 = Object.assign(new URL(db1), { pathname: '/db2' }).toString();
    for (const url of [db1, db2]) {
      await query(url, PGBISYNC_SCHEMA_SQL);
      await query(url, 'CREATE TABLE t (id int PRIMARY KEY)');
    }
    const yaml = (extra: string) => `
kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.stampkeeper }
nodes:
  - { name: a, url: "${db1}" }
  - { name: b, url: "${db2}" }
tables: [public.t]
conflicts: { maxClockSkewMs: 0${extra} }`;
    const config = parseConfig(yaml(''), 'test config');

    // Without a hold, freezing every database takes a fresh row's commit time (what the keeper prevents).
    await query(db1, 'INSERT INTO t VALUES (0)');
    for (let round = 0; round < 3; round++) await freezeEveryDatabase(server);
    assert.equal(await stampOf(db1, 0), null, 'no hold: the commit time is truncated');

    // Every candidate is old enough to be held.
    await query(db1, 'ALTER SYSTEM SET vacuum_freeze_min_age = 0');
    await query(db1, 'SELECT pg_reload_conf()');
    const keeper = new StampKeeper({ slackMs: 0 });
    const first = await keeper.round(config, ['public.t']);
    assert.deepEqual(
      [...first.values()].map((h) => [h.made, h.skipped, h.watermarkMs]),
      [
        [true, false, undefined],
        [true, false, undefined],
      ],
      'both slots made; no direction applied anything yet',
    );
    const made = await slots(db1);
    assert.deepEqual(
      made.map((s) => [s.slot_name, s.slot_type, s.restart_lsn]),
      [
        ['pgbisync__stamps_a', 'physical', null],
        ['pgbisync__stamps_b', 'physical', null],
      ],
      'physical slots that hold no WAL',
    );
    assert.ok(
      made.every((s) => s.xmin !== null),
      'each holds an xmin',
    );

    await query(db1, 'INSERT INTO t VALUES (1)');
    await query(db2, 'INSERT INTO t VALUES (1)');
    for (let round = 0; round < 3; round++) await freezeEveryDatabase(server);
    assert.notEqual(await stampOf(db1, 1), null, 'held: the row on a keeps its commit time');
    assert.notEqual(await stampOf(db2, 1), null, 'held: the row on b keeps its commit time');

    // Still nothing applied: the hold stays where it is.
    const second = await keeper.round(config, ['public.t']);
    assert.equal(second.get('a')?.hold, first.get('a')?.hold);
    assert.equal(second.get('b')?.hold, first.get('b')?.hold);

    // a -> b applied a commit of a from after the rows; b -> a not yet: b's hold moves, a's stays.
    const progress = async (url: string, source: string) =>
      query(
        url,
        `INSERT INTO pgbisync.apply_progress (source_node, topic, kafka_partition, next_offset, commit_lsn, commit_time)
         VALUES ($1, 'x', 0, 1, '0/1', clock_timestamp() + interval '1 second')`,
        [source],
      );
    await progress(db2, 'a');
    const third = await keeper.round(config, ['public.t']);
    assert.equal(third.get('a')?.hold, first.get('a')?.hold, "a's hold waits for b -> a");
    assert.ok((third.get('b')?.hold ?? 0n) > (first.get('b')?.hold ?? 0n), "b's hold moved on");
    // Both nodes are databases of this one server, so a's hold still keeps b's rows too.
    for (let round = 0; round < 3; round++) await freezeEveryDatabase(server);
    assert.notEqual(await stampOf(db2, 1), null, "a's hold keeps the server's commit times");
    await progress(db1, 'b');
    const fourth = await keeper.round(config, ['public.t']);
    assert.ok((fourth.get('a')?.hold ?? 0n) > (first.get('a')?.hold ?? 0n), "a's hold moved on");
    for (let round = 0; round < 3; round++) await freezeEveryDatabase(server);
    assert.equal(await stampOf(db1, 1), null, 'every direction applied past the rows: let go on a');
    assert.equal(await stampOf(db2, 1), null, '... and on b');

    // With the default vacuum_freeze_min_age, vacuum would not freeze such young rows: the holds go.
    await query(db1, 'ALTER SYSTEM RESET vacuum_freeze_min_age');
    await query(db1, 'SELECT pg_reload_conf()');
    const fifth = await keeper.round(config, ['public.t']);
    assert.deepEqual([fifth.get('a')?.hold, fifth.get('b')?.hold], [null, null]);
    assert.deepEqual(
      (await slots(db1)).map((s) => s.xmin),
      [null, null],
      'the slots hold no xmin',
    );

    // keepCommitTimes off drops the slots; teardown drops a slot made again.
    await keeper.round(parseConfig(yaml(', keepCommitTimes: false'), 'test config'), ['public.t']);
    assert.deepEqual(await slots(db1), [], 'keepCommitTimes: false drops the slots');
    await keeper.round(config, ['public.t']);
    assert.equal((await slots(db1)).length, 2);
    await teardown(config, { keepTopics: true });
    assert.deepEqual(await slots(db1), [], 'teardown drops them');
  });
});
