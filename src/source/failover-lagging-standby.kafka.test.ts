/**
 * Failover to a standby that lagged (PostgreSQL 17+, docs/correctness.md "failover or point-in-time
 * restore of a source"): node a is a primary with a streaming standby (src/dev/standby.ts, what
 * `dev up --standby` makes) and a failover slot. Rows cross; the standby's WAL receiver is then cut
 * (primary_conninfo emptied) and a writes on, more WAL than it will write after the failover; b applies
 * it. The primary stops (immediate) and the standby is promoted: its timeline 2 forks below the commit
 * LSN b applied last from timeline 1, so the rows written on it come at LSNs b already passed. Each of
 * them must reach b (they were skipped as re-published when the applier compared LSNs alone), and b's
 * rows must reach the new primary, each applied once (a replica trigger's count).
 *
 * synchronized_standby_slots is cleared on the primary here: with it, the primary would not send the
 * capture what the standby had not received, and the standby could not lag behind pgbisync.
 *
 * Node a runs on servers of its own beside the test stack's ports (db1's port + 13 and + 14).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Config } from '../config/schema.ts';
import { PostgresServer } from '../dev/postgres-server.ts';
import { setup, teardown } from '../operate/setup.ts';
import { parseLsn } from '../pg/lsn.ts';
import { LEDGER_SCHEMA } from '../testing/instances.ts';
import { startSync, syncConfig, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases, query, type TestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const ROWS = 30; // per node and phase

/** `count` rows of `node` (ids `<node>-<k>`, n = k), from k = `from`, one transaction per 3 rows. */
async function writeRows(sql: TestDatabases['sql1'], node: 'a' | 'b', from: number, count: number) {
  for (let k = from; k < from + count; k += 3)
    await sql(
      `INSERT INTO ledger SELECT $1 || '-' || g, $1, g FROM generate_series($2::int, $2::int + 2) g`,
      [node, k],
    );
}

const lsnOf = (text: string | null | undefined): bigint => (text == null ? 0n : parseLsn(text));

/** Rows of `node` with n in [from, from + ROWS) on the database at `url`. */
const rowsOf = async (url: string, node: 'a' | 'b', from: number) =>
  (
    await query(url, 'SELECT count(*)::int AS n FROM ledger WHERE node = $1 AND n >= $2 AND n < $2 + $3', [
      node,
      from,
      ROWS,
    ])
  ).rows[0].n as number;

test('failover to a standby that lagged: rows written on the new timeline at LSNs already applied from the old one reach the other node', {
  skip: testEnv.pgMajor() < 17 ? 'failover slots need PostgreSQL 17+' : false,
}, async () => {
  await using dbs = await createTestDatabases('lag');
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-lagging-'));
  chmodSync(dir, 0o755); // the server user (another user when the tests run as root) creates its folders here
  const base = Number(new URL(testEnv.db1Url()).port) + 13;
  const major = testEnv.pgMajor();
  const primary = new PostgresServer({
    name: 'lag-primary',
    major,
    port: base,
    dir: join(dir, 'primary'),
    database: dbs.name,
  });
  const standby = new PostgresServer({
    name: 'lag-standby',
    major,
    port: base + 1,
    dir: join(dir, 'standby'),
    database: dbs.name,
    standbyOf: { port: base, dataDir: primary.dataDir, slot: 'lag_standby' },
  });
  try {
    await primary.start();
    await standby.start();
    await query(primary.url, "ALTER SYSTEM SET synchronized_standby_slots = ''");
    await query(primary.url, 'SELECT pg_reload_conf()');
    const aUrl = `postgres://postgres@127.0.0.1:${base},127.0.0.1:${base + 1}/${dbs.name}?target_session_attrs=read-write`;
    const nodes: TestDatabases = { ...dbs, db1: aUrl, sql1: (text, params) => query(aUrl, text, params) };
    await nodes.sql1(LEDGER_SCHEMA);
    await nodes.sql2(LEDGER_SCHEMA);
    await nodes.sql1('CREATE TABLE filler (id int PRIMARY KEY, pad text)'); // not synced: WAL only
    const plain = syncConfig(nodes, ['public.ledger']);
    const a = plain.nodes[0]!.name;
    const config: Config = {
      ...plain,
      nodes: plain.nodes.map((n) => (n.name === a ? { ...n, failoverSlot: true } : n)),
    };
    await setup(config);
    {
      await using sync = await startSync(config);
      await waitForStreaming(config, [nodes.sql1, nodes.sql2]);
      await writeRows(nodes.sql1, 'a', 0, ROWS);
      await writeRows(nodes.sql2, 'b', 0, ROWS);
      await waitFor(
        'the first rows on both nodes',
        async () => (await rowsOf(dbs.db2, 'a', 0)) === ROWS && (await rowsOf(aUrl, 'b', 0)) === ROWS,
        60_000,
      );

      // The standby's copy of a's slot catches up with the primary's (a promoted standby needs it).
      const slot = `pgbisync_${a}`;
      const onPrimary = await query(
        primary.url,
        'SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      const confirmed = lsnOf(onPrimary.rows[0]?.c);
      await waitFor(
        "the standby's synced slot at the primary's confirmed position",
        async () => {
          const r = await query(
            standby.url,
            'SELECT synced, temporary, confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1',
            [slot],
          );
          const row = r.rows[0];
          return row?.synced === true && row.temporary === false && lsnOf(row.c) >= confirmed;
        },
        90_000,
      );

      // The standby stops receiving WAL; the primary writes on, and b applies it.
      await query(standby.url, "ALTER SYSTEM SET primary_conninfo = ''");
      await query(standby.url, 'SELECT pg_reload_conf()');
      await waitFor('the standby without a WAL receiver', async () => {
        const r = await query(standby.url, 'SELECT count(*)::int AS n FROM pg_stat_wal_receiver');
        return r.rows[0].n === 0;
      });
      const replayed = lsnOf(
        (await query(standby.url, 'SELECT pg_last_wal_replay_lsn()::text AS l')).rows[0].l,
      );
      await query(
        primary.url,
        "INSERT INTO filler SELECT g, repeat('x', 400) FROM generate_series(1, 20000) g",
      );
      await writeRows(nodes.sql1, 'a', ROWS, ROWS);
      await waitFor('the rows a wrote while the standby lagged, on b', async () => {
        return (await rowsOf(dbs.db2, 'a', ROWS)) === ROWS;
      });
      const applied = lsnOf(
        (
          await dbs.sql2('SELECT commit_lsn::text AS l FROM pgbisync.apply_progress WHERE source_node = $1', [
            a,
          ])
        ).rows[0]?.l,
      );
      assert.ok(applied > replayed, 'b applied transactions past what the standby replayed');

      await primary.crash();
      await standby.promote();
      // Written on the promoted standby (timeline 2), at LSNs b already passed on timeline 1; and on b.
      await writeRows(nodes.sql1, 'a', 2 * ROWS, ROWS);
      await writeRows(nodes.sql2, 'b', ROWS, ROWS);
      const written = lsnOf((await query(standby.url, 'SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
      assert.ok(written < applied, 'the new timeline reused LSNs b had applied');

      await waitFor(
        'the rows written on the promoted standby on b, and b rows on it',
        async () =>
          (await rowsOf(dbs.db2, 'a', 2 * ROWS)) === ROWS && (await rowsOf(aUrl, 'b', ROWS)) === ROWS,
        60_000,
      );
      const progress = await dbs.sql2(
        'SELECT source_timeline::int AS tli, source_timeline_history AS history FROM pgbisync.apply_progress WHERE source_node = $1',
        [a],
      );
      assert.equal(progress.rows[0]?.tli, 2, "b's watermark of a is on timeline 2");
      assert.match(progress.rows[0]?.history ?? '', /^1@[0-9A-F]+\/[0-9A-F]+$/);
      for (const [name, url] of [
        ['a', aUrl],
        ['b', dbs.db2],
      ] as const) {
        const twice = await query(url, 'SELECT id FROM applied_writes GROUP BY id HAVING count(*) > 1');
        assert.deepEqual(twice.rows, [], `rows applied twice on ${name}`);
      }
      // What the old primary wrote past the fork stays on b only (docs/correctness.md): a lost it.
      assert.equal(await rowsOf(aUrl, 'a', ROWS), 0);
      await sync.stop();
    }
    await teardown(config, { keepTopics: false });
  } finally {
    await standby.stop().catch(() => undefined);
    await primary.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
