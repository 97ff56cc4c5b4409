/**
 * The dev stack's standby (./standby.ts, `dev up --standby`, PostgreSQL 17+): a streaming physical
 * standby with what a failover slot needs, which a multi-host node URL skips while it is read-only and
 * takes once promoted. Runs a primary and its standby of its own beside the test stack's ports (db1's
 * port + 8 and + 9); `--standby` on an older major is refused before anything starts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { query } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';
import { PostgresServer } from './postgres-server.ts';
import { DEFAULT_STACK, DevStack } from './stack.ts';

const major = () => testEnv.pgMajor() || 18;

test('dev up --standby before PostgreSQL 17 is refused with the fix', { skip: major() >= 17 }, async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pgbisync-standby-'));
  try {
    const stack = new DevStack({ ...DEFAULT_STACK, stateDir, pgMajor: major(), standby: true });
    await assert.rejects(
      stack.up(() => undefined),
      (e: Error & { hint?: string }) => {
        assert.match(e.message, /--standby needs PostgreSQL 17 or later/);
        assert.match(e.hint ?? '', /--pg 18/);
        return true;
      },
    );
    assert.equal(existsSync(join(stateDir, 'state.json')), false, 'nothing started');
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a standby of a dev server streams, syncs slots, is skipped by read-write until promoted', {
  skip: major() < 17,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-standby-'));
  chmodSync(dir, 0o755); // the server user (another user when the tests run as root) creates its folders here
  const base = Number(new URL(testEnv.db1Url()).port) + 8;
  const primary = new PostgresServer({
    name: 'p',
    major: major(),
    port: base,
    dir: join(dir, 'p'),
    database: 'app',
  });
  const standby = new PostgresServer({
    name: 's',
    major: major(),
    port: base + 1,
    dir: join(dir, 's'),
    database: 'app',
    standbyOf: { port: base, dataDir: primary.dataDir, slot: 's_slot' },
  });
  try {
    await primary.start();
    await query(primary.url, 'CREATE TABLE t (id int PRIMARY KEY)');
    await standby.start();
    await query(primary.url, 'INSERT INTO t VALUES (1)');
    const settings = await query(
      standby.url,
      `SELECT pg_is_in_recovery() AS r, current_setting('sync_replication_slots') AS s, current_setting('hot_standby_feedback') AS h,
              current_setting('primary_slot_name') AS slot, current_setting('primary_conninfo') AS c, current_setting('synchronized_standby_slots') AS w`,
    );
    assert.deepEqual(
      { ...settings.rows[0], c: /dbname=postgres/.test(settings.rows[0].c) },
      { r: true, s: 'on', h: 'on', slot: 's_slot', c: true, w: '' },
    );
    const onPrimary = await query(
      primary.url,
      "SELECT current_setting('synchronized_standby_slots') AS w, (SELECT active FROM pg_replication_slots WHERE slot_name = 's_slot') AS a",
    );
    assert.deepEqual(onPrimary.rows[0], { w: 's_slot', a: true });
    for (;;) {
      const r = await query(standby.url, 'SELECT count(*)::int AS n FROM t');
      if (r.rows[0].n === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const both = (attrs: string) =>
      `postgres://postgres@127.0.0.1:${base + 1},127.0.0.1:${base}/app?target_session_attrs=${attrs}`;
    const portOf = async (url: string) =>
      Number((await query(url, "SELECT current_setting('port') AS p")).rows[0].p);
    assert.equal(await portOf(both('read-write')), base);
    assert.equal(await portOf(both('primary')), base);
    assert.equal(await portOf(both('standby')), base + 1);
    assert.equal(await portOf(both('any')), base + 1);

    await primary.crash();
    await assert.rejects(
      portOf(both('read-write')),
      /tried 127\.0\.0\.1:\d+ \(read-only: transaction_read_only = on\), 127\.0\.0\.1:\d+ \(connect ECONNREFUSED/,
    );
    await standby.promote();
    assert.equal(await portOf(both('read-write')), base + 1);
    await query(both('read-write'), 'INSERT INTO t VALUES (2)');
  } finally {
    await standby.stop().catch(() => undefined);
    await primary.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
