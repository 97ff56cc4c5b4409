/**
 * Two-way sync end to end on real PostgreSQL and a real Kafka broker: snapshot of a seeded node, changes
 * crossing in both directions exactly once, quiet when writes stop, conflicts resolved by last writer,
 * teardown leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { serverName } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const TABLE = `CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, qty int, note text)`;

test('changes cross both ways once, the sync goes quiet, teardown leaves nothing', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  await dbs.sql1(`INSERT INTO items SELECT g, 'seed ' || g, g, NULL FROM generate_series(1, 100) g`);
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const rows1 = () => tableRows(dbs.sql1, 'items');
    const rows2 = () => tableRows(dbs.sql2, 'items');
    await waitFor('the snapshot on db2', async () => (await rows2()).length === 100);

    await dbs.sql1(`INSERT INTO items SELECT g, 'one ' || g, g, 'from a' FROM generate_series(101, 150) g`);
    await dbs.sql2(`INSERT INTO items SELECT g, 'two ' || g, g, 'from b' FROM generate_series(201, 250) g`);
    await dbs.sql1(`UPDATE items SET qty = qty + 1000 WHERE id <= 10`);
    await dbs.sql2(`UPDATE items SET note = 'b touched' WHERE id BETWEEN 11 AND 20`);
    await dbs.sql2(`DELETE FROM items WHERE id BETWEEN 21 AND 25`);
    await dbs.sql1(
      `BEGIN; DELETE FROM items WHERE id = 30; UPDATE items SET name = 'multi' WHERE id = 31; COMMIT`,
    );
    // Bulk, on both nodes at once: 940 more changes each (600 inserts in transactions of ten, 300
    // single-row updates, 40 single-row deletes), so that each side makes over 1,000 changes.
    const bulk = (from: number, who: string) => `DO $$ BEGIN
        FOR i IN ${from}..${from + 599} LOOP
          INSERT INTO items VALUES (i, '${who} bulk ' || i, i, NULL);
          IF i % 10 = 9 THEN COMMIT; END IF;
        END LOOP;
        FOR i IN ${from}..${from + 299} LOOP UPDATE items SET qty = qty + 1 WHERE id = i; COMMIT; END LOOP;
        FOR i IN ${from + 500}..${from + 539} LOOP DELETE FROM items WHERE id = i; COMMIT; END LOOP;
      END $$`;
    await Promise.all([dbs.sql1(bulk(1000, 'a')), dbs.sql2(bulk(2000, 'b'))]);
    await waitFor(
      'both nodes equal',
      async () => {
        const [x, y] = await Promise.all([rows1(), rows2()]);
        return x.length === 194 + 2 * 560 && JSON.stringify(x) === JSON.stringify(y);
      },
      60_000,
    );
    const r = await dbs.sql2('SELECT qty, note FROM items WHERE id = 5');
    assert.deepEqual(r.rows[0], { qty: 1005, note: null });

    // Quiet: once writes stop, no new events, and the WAL stops moving. PostgreSQL itself may log a
    // record or two after activity (bgwriter's running-xacts snapshot, every 15 s, only after other WAL),
    // so wait for a 10 s window without any WAL: a sync that echoed changes would never give one.
    // Autovacuum would also write WAL after the bulk (vacuum, statistics): vacuum now, on both nodes,
    // so it has nothing left to do during the window. VACUUM is local to a node (never replicated).
    for (const sql of [dbs.sql1, dbs.sql2]) {
      await sql('VACUUM (ANALYZE) items, pgbisync.apply_progress, pgbisync.tombstones, pgbisync.conflicts');
    }
    const admin = new KafkaAdmin(kafkaOptions(config, 'test'));
    const positions = async () => ({
      lsn1: (await dbs.sql1('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l,
      lsn2: (await dbs.sql2('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l,
      topicA: (await admin.endOffsets(serverName(config, a))).get(0),
      topicB: (await admin.endOffsets(serverName(config, b))).get(0),
    });
    try {
      const first = await positions();
      let windowStart = first;
      let windowStartedAt = Date.now();
      await waitFor(
        '10 s without WAL or events',
        async () => {
          const now = await positions();
          assert.equal(now.topicA, first.topicA, 'no new events on a topic once writes stop');
          assert.equal(now.topicB, first.topicB, 'no new events on b topic once writes stop');
          if (now.lsn1 !== windowStart.lsn1 || now.lsn2 !== windowStart.lsn2) {
            windowStart = now;
            windowStartedAt = Date.now();
          }
          return Date.now() - windowStartedAt >= 10_000;
        },
        60_000,
      );
      // Each change crossed exactly once: b's topic holds only b's own writes (50 inserts, 10 updates,
      // 5 deletes + 5 tombstones; bulk: 600 inserts, 300 updates, 40 deletes + 40 tombstones), nothing
      // applied from a.
      assert.equal(first.topicB, 70n + 980n);
      // a's topic: the 100 copied rows in one row batch (one transaction wrote them), 50 inserts, 10
      // updates, a delete + tombstone and an update; bulk.
      assert.equal(first.topicA, 64n + 980n);
    } finally {
      await admin.close();
    }
    // PG 16+ filters our applied transactions in the server (origin 'none'); PG 15 sends them and the
    // capture drops them itself.
    const dropped = (await sync.metrics.loopDropped.get()).values.reduce((n, v) => n + v.value, 0);
    const version = Number((await dbs.sql1('SHOW server_version_num')).rows[0].server_version_num);
    if (version < 160000) assert.ok(dropped > 0, 'PG 15: the capture must drop applied transactions');
    else assert.equal(dropped, 0, 'PG 16+: the server filters applied transactions');
    await sync.stop();
  }
  const report = await teardown(config, { keepTopics: false });
  assert.deepEqual(
    report.nodes.map((n) => n.slots.length),
    [1, 1],
  );
  for (const sql of [dbs.sql1, dbs.sql2]) {
    const left = await sql(
      `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgbisync%' AND database = current_database())::int AS slots,
              (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgbisync%')::int AS pubs,
              (SELECT count(*) FROM pg_replication_origin WHERE roname LIKE $1)::int AS origins`,
      [`%${dbs.name}%`],
    );
    assert.deepEqual(left.rows[0], { slots: 0, pubs: 0, origins: 0 });
  }
});

test('concurrent updates of one row converge on the later write, and the conflict is recorded', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO items VALUES (1, 'base', 0, NULL)`);
    await waitFor(
      'row 1 on db2',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 1')).rowCount === 1,
    );
    await sync.stop();
  }
  // Both sides write the same row while the sync is down; db2 writes last.
  await dbs.sql1(`UPDATE items SET name = 'from a', qty = 1 WHERE id = 1`);
  await new Promise((r) => setTimeout(r, 20));
  await dbs.sql2(`UPDATE items SET name = 'from b', qty = 2 WHERE id = 1`);
  // insert/insert on a new key: db1 last.
  await dbs.sql2(`INSERT INTO items VALUES (2, 'b first', 0, NULL)`);
  await new Promise((r) => setTimeout(r, 20));
  await dbs.sql1(`INSERT INTO items VALUES (2, 'a later', 0, NULL)`);
  {
    await using sync = await startSync(config);
    await waitFor('convergence', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return JSON.stringify(x) === JSON.stringify(y) && x.some((r) => r.includes('from b'));
    });
    const rows = await dbs.sql1('SELECT id, name FROM items ORDER BY id');
    assert.deepEqual(rows.rows, [
      { id: 1, name: 'from b' },
      { id: 2, name: 'a later' },
    ]);
    // db1 kept its own row 2 against b's older insert, and took b's newer update of row 1. Row 2 on db1
    // never changes, so what shows that db1's applier reached b's insert is the conflict it records.
    await waitFor(
      'both conflicts recorded on db1',
      async () => (await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.conflicts')).rows[0].n >= 2,
    );
    const c1 = await dbs.sql1(
      `SELECT conflict_type, resolution, key->>'id' AS id FROM pgbisync.conflicts ORDER BY id`,
    );
    assert.deepEqual(c1.rows.map((r) => `${r.id}:${r.conflict_type}:${r.resolution}`).sort(), [
      '1:update_origin_differs:apply_remote',
      '2:insert_exists:keep_local',
    ]);
    // Every recorded conflict is counted in metrics, per direction.
    const recorded = async (sql: typeof dbs.sql1) =>
      Number((await sql('SELECT count(*)::int AS n FROM pgbisync.conflicts')).rows[0].n);
    const counted = (await sync.metrics.conflicts.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(counted, (await recorded(dbs.sql1)) + (await recorded(dbs.sql2)));
    assert.ok(counted >= 2);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('key changes, unchanged TOAST values and truncates cross intact', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text, n int)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.docs']);
  await setup(config);
  {
    await using sync = await startSync(config);
    const same = async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'docs'), tableRows(dbs.sql2, 'docs')]);
      return JSON.stringify(x) === JSON.stringify(y);
    };
    // A body far over the TOAST threshold, random so it does not compress below it.
    await dbs.sql1(
      `INSERT INTO docs SELECT g, 'doc ' || g, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400)), 0
         FROM generate_series(1, 3) g`,
    );
    await waitFor('inserts on b', async () => (await dbs.sql2('SELECT 1 FROM docs')).rowCount === 3);
    // Updates that leave the TOASTed body alone: pgoutput sends it as "unchanged".
    await dbs.sql1(`UPDATE docs SET n = n + 1, title = 'edited' WHERE id = 1`);
    // Key change on a, then on b.
    await dbs.sql1(`UPDATE docs SET id = 100 WHERE id = 2`);
    await waitFor('a changes on b', same);
    await dbs.sql2(`UPDATE docs SET id = 200, n = 7 WHERE id = 3`);
    await waitFor('b changes on a', same);
    const r = await dbs.sql1('SELECT id, title, n, length(body) AS len FROM docs ORDER BY id');
    assert.deepEqual(r.rows, [
      { id: 1, title: 'edited', n: 1, len: 12800 },
      { id: 100, title: 'doc 2', n: 0, len: 12800 },
      { id: 200, title: 'doc 3', n: 7, len: 12800 },
    ]);
    await dbs.sql2('TRUNCATE docs');
    await waitFor('truncate on a', async () => (await dbs.sql1('SELECT 1 FROM docs')).rowCount === 0);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('update/delete conflicts: the later write wins, a delete is remembered against older updates', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  const pause = () => new Promise((r) => setTimeout(r, 20));
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO items SELECT g, 'base', 0, NULL FROM generate_series(1, 4) g`);
    await waitFor('rows on b', async () => (await dbs.sql2('SELECT 1 FROM items')).rowCount === 4);
    await sync.stop();
  }
  // Row 1: a updates, then b deletes (delete is later: the row must end deleted everywhere).
  await dbs.sql1(`UPDATE items SET name = 'a upd' WHERE id = 1`);
  await pause();
  await dbs.sql2(`DELETE FROM items WHERE id = 1`);
  // Row 2: b deletes, then a updates (update is later: the row must survive, with a's values).
  await dbs.sql2(`DELETE FROM items WHERE id = 2`);
  await pause();
  await dbs.sql1(`UPDATE items SET name = 'a later upd' WHERE id = 2`);
  // Row 3: a deletes, then b updates and a's delete arrives after (b's update is later: survives).
  await dbs.sql1(`DELETE FROM items WHERE id = 3`);
  await pause();
  await dbs.sql2(`UPDATE items SET qty = 33 WHERE id = 3`);
  {
    await using sync = await startSync(config);
    await waitFor('convergence', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return JSON.stringify(x) === JSON.stringify(y) && x.length === 3;
    });
    const rows = await dbs.sql2('SELECT id, name, qty FROM items ORDER BY id');
    assert.deepEqual(rows.rows, [
      { id: 2, name: 'a later upd', qty: 0 },
      { id: 3, name: 'base', qty: 33 },
      { id: 4, name: 'base', qty: 0 },
    ]);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('per-table policies: node-priority keeps the named node version, source-wins takes every incoming one', async () => {
  await using dbs = await createTestDatabases();
  const ddl =
    'CREATE TABLE public.pri (id int PRIMARY KEY, v text); CREATE TABLE public.src (id int PRIMARY KEY, v text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const b = `${dbs.name}_b`; // syncConfig's name for the second node
  const config = syncConfig(
    dbs,
    ['public.pri', 'public.src'],
    `conflicts:
  policy: last-writer-wins
  tables:
    public.pri: { policy: node-priority, priorityNode: ${b} }
    public.src: { policy: source-wins }`,
  );
  await setup(config);
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO pri VALUES (1, 'base'); INSERT INTO src VALUES (1, 'base')`);
    await waitFor(
      'rows on b',
      async () => (await dbs.sql2('SELECT 1 FROM pri UNION ALL SELECT 1 FROM src')).rowCount === 2,
    );
    await sync.stop();
  }
  // While the sync is down: on pri b writes first and a last (last-writer-wins would pick a); on src a
  // writes first and b last.
  await dbs.sql2(`UPDATE pri SET v = 'from b' WHERE id = 1`);
  await dbs.sql1(`UPDATE src SET v = 'from a' WHERE id = 1`);
  await new Promise((r) => setTimeout(r, 20));
  await dbs.sql1(`UPDATE pri SET v = 'from a' WHERE id = 1`);
  await dbs.sql2(`UPDATE src SET v = 'from b' WHERE id = 1`);
  {
    await using sync = await startSync(config);
    const value = async (sql: typeof dbs.sql1, table: string) =>
      (await sql(`SELECT v FROM ${table} WHERE id = 1`)).rows[0]?.v as string;
    await waitFor('pri: b wins on both nodes', async () => (await value(dbs.sql1, 'pri')) === 'from b');
    // source-wins: each node takes the other's change, older or not (so they swap).
    await waitFor(
      'src: each node took the incoming change',
      async () => (await value(dbs.sql1, 'src')) === 'from b' && (await value(dbs.sql2, 'src')) === 'from a',
    );
    const recorded = async (sql: typeof dbs.sql1) =>
      (
        await sql(
          `SELECT table_name || ':' || resolution || ':' || policy AS r FROM pgbisync.conflicts ORDER BY 1`,
        )
      ).rows.map((r) => r.r as string);
    // b's pri never changes (it keeps its own): what shows that b's applier reached a's pri update, which
    // a committed after its src update, is the conflict it records.
    await waitFor('both conflicts recorded on b', async () => (await recorded(dbs.sql2)).length >= 2);
    assert.equal(await value(dbs.sql2, 'pri'), 'from b', "b kept its own version against a's newer one");
    assert.deepEqual(await recorded(dbs.sql1), [
      'public.pri:apply_remote:node-priority',
      'public.src:apply_remote:source-wins',
    ]);
    assert.deepEqual(await recorded(dbs.sql2), [
      'public.pri:keep_local:node-priority',
      'public.src:apply_remote:source-wins',
    ]);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('primary-key change conflicts: a key moved on one node and the old key updated later on the other', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLE);
  await dbs.sql2(TABLE);
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  const pause = () => new Promise((r) => setTimeout(r, 20));
  {
    await using sync = await startSync(config);
    await dbs.sql1(`INSERT INTO items SELECT g, 'base', 0, NULL FROM generate_series(1, 2) g`);
    await waitFor('rows on b', async () => (await dbs.sql2('SELECT 1 FROM items')).rowCount === 2);
    await sync.stop();
  }
  // Row 1: a moves it to key 10, then b updates key 1 (later): b's row 1 survives next to a's row 10.
  await dbs.sql1(`UPDATE items SET id = 10, name = 'moved by a' WHERE id = 1`);
  await pause();
  await dbs.sql2(`UPDATE items SET name = 'b later' WHERE id = 1`);
  // Row 2: b updates it, then a moves it to key 20 (later): the move wins, key 2 is gone everywhere.
  await dbs.sql2(`UPDATE items SET name = 'b earlier' WHERE id = 2`);
  await pause();
  await dbs.sql1(`UPDATE items SET id = 20, name = 'moved later' WHERE id = 2`);
  {
    await using sync = await startSync(config);
    await waitFor('convergence', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return JSON.stringify(x) === JSON.stringify(y) && x.length === 3;
    });
    const rows = await dbs.sql2('SELECT id, name FROM items ORDER BY id');
    assert.deepEqual(rows.rows, [
      { id: 1, name: 'b later' },
      { id: 10, name: 'moved by a' },
      { id: 20, name: 'moved later' },
    ]);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
