/**
 * Failover of a source primary (PostgreSQL 17+, docs/correctness.md): node a is a primary with a
 * streaming standby (src/dev/standby.ts, what `dev up --standby` makes), its URL lists both with
 * target_session_attrs=read-write, and its slot is a failover slot. Rows cross both ways; once the
 * standby's synced copy of a's slot has caught up, the primary stops (immediate) and the standby is
 * promoted. The capture of a follows the new primary through the URL and streams on from the synced
 * slot, the applier into a writes there too: every row written before and after the failover is on both
 * nodes, and a trigger that fires on applied rows only shows each applied once (checkLedger).
 *
 * Node a runs on servers of its own beside the test stack's ports (db1's port + 11 and + 12): the stack's
 * db1 must not be stopped; node b is the test's database on the stack's db2.
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
import { checkLedger, LEDGER_SCHEMA } from '../testing/instances.ts';
import { startSync, syncConfig, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases, query, type TestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const ROWS = 30; // per node and phase

/** `count` rows of `node` (ids `<node>-<k>`), from k = `from`, one transaction per 3 rows. */
async function writeRows(sql: TestDatabases['sql1'], node: 'a' | 'b', from: number, count: number) {
  for (let k = from; k < from + count; k += 3)
    await sql(
      `INSERT INTO ledger SELECT $1 || '-' || g, $1, g FROM generate_series($2::int, $2::int + 2) g`,
      [node, k],
    );
}

const lsnOf = (text: string | null | undefined): bigint => (text == null ? 0n : parseLsn(text));

test('failover: the capture and the applier of a node follow its promoted standby through a multi-host url; nothing lost or applied twice', {
  skip: testEnv.pgMajor() < 17 ? 'failover slots need PostgreSQL 17+' : false,
}, async () => {
  await using dbs = await createTestDatabases('fo');
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-failover-'));
  chmodSync(dir, 0o755); // the server user (another user when the tests run as root) creates its folders here
  const base = Number(new URL(testEnv.db1Url()).port) + 11;
  const major = testEnv.pgMajor();
  const primary = new PostgresServer({
    name: 'fo-primary',
    major,
    port: base,
    dir: join(dir, 'primary'),
    database: dbs.name,
  });
  const standby = new PostgresServer({
    name: 'fo-standby',
    major,
    port: base + 1,
    dir: join(dir, 'standby'),
    database: dbs.name,
    standbyOf: { port: base, dataDir: primary.dataDir, slot: 'fo_standby' },
  });
  try {
    await primary.start();
    await standby.start();
    const aUrl = `postgres://postgres@127.0.0.1:${base},127.0.0.1:${base + 1}/${dbs.name}?target_session_attrs=read-write`;
    const nodes: TestDatabases = { ...dbs, db1: aUrl, sql1: (text, params) => query(aUrl, text, params) };
    await nodes.sql1(LEDGER_SCHEMA);
    await nodes.sql2(LEDGER_SCHEMA);
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
      const count = async (url: string) =>
        (await query(url, 'SELECT count(*)::int AS n FROM ledger')).rows[0].n as number;
      await waitFor(
        'the first rows on both nodes',
        async () => (await count(aUrl)) === 2 * ROWS && (await count(dbs.db2)) === 2 * ROWS,
        60_000,
      );

      // The standby's copy of a's slot (sync_replication_slots) catches up with the primary's, and
      // the standby replays everything the primary wrote.
      const slot = `pgbisync_${a}`;
      const onPrimary = await query(
        primary.url,
        'SELECT confirmed_flush_lsn::text AS c, pg_current_wal_lsn()::text AS w FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      const [confirmed, written] = [lsnOf(onPrimary.rows[0]?.c), lsnOf(onPrimary.rows[0]?.w)];
      assert.ok(confirmed > 0n, 'the primary slot confirmed the first rows');
      await waitFor(
        "the standby's synced slot at the primary's confirmed position, the standby's replay at its WAL end",
        async () => {
          const r = await query(
            standby.url,
            `SELECT s.synced, s.temporary, s.confirmed_flush_lsn::text AS c, pg_last_wal_replay_lsn()::text AS replayed
                 FROM pg_replication_slots s WHERE s.slot_name = $1`,
            [slot],
          );
          const row = r.rows[0];
          return (
            row?.synced === true &&
            row.temporary === false &&
            lsnOf(row.c) >= confirmed &&
            lsnOf(row.replayed) >= written
          );
        },
        90_000,
      );

      await primary.crash();
      // Until the promotion, no host of a's URL takes writes: the capture restarts, naming each host.
      const capture = () => sync.runner.states.get(`capture ${a}`)?.lastError ?? '';
      await waitFor('the capture of a finding no read-write host', async () =>
        /no host of the node url gives a target_session_attrs=read-write session; tried 127\.0\.0\.1:\d+ \(connect ECONNREFUSED.*\), 127\.0\.0\.1:\d+ \(read-only: transaction_read_only = on\)/.test(
          capture(),
        ),
      );
      await standby.promote();
      // Written on the promoted standby (the URL's read-write host now), and on b.
      await writeRows(nodes.sql1, 'a', ROWS, ROWS);
      await writeRows(nodes.sql2, 'b', ROWS, ROWS);
      const problem = await checkLedger(nodes.sql1, nodes.sql2, 2 * ROWS);
      assert.equal(problem, undefined, problem);
      const used = await query(
        aUrl,
        "SELECT current_setting('port')::int AS port, (SELECT active FROM pg_replication_slots WHERE slot_name = $1) AS active",
        [slot],
      );
      assert.deepEqual(used.rows[0], { port: base + 1, active: true }, 'a streams from the promoted standby');
      await sync.stop();
    }
    await teardown(config, { keepTopics: false });
  } finally {
    await standby.stop().catch(() => undefined);
    await primary.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
