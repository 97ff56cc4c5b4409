/**
 * A source transaction far larger than apply.maxBatchRows (a migration's INSERT, then an UPDATE of every
 * row) crosses as one target transaction applied in pieces: a reader on the target never sees a part of
 * it, and a SIGKILL of `pgbisync run` while the target transaction is open (pieces written, not
 * committed) rolls it back; after the restart it is applied once, whole.
 */
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { setup, teardown } from '../operate/setup.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const ROWS = Number(process.env.PGBISYNC_TEST_HUGE_ROWS ?? 60_000);
const PIECE_ROWS = 2_000;

test(`a ${ROWS}-row transaction is applied in pieces as one target transaction, once, across a SIGKILL mid-way`, async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.big (id int PRIMARY KEY, n int NOT NULL, pad text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.big']);
  const configPath = writeRunConfig(config, ['public.big'], { apply: { maxBatchRows: PIECE_ROWS } });
  await setup(config);
  let child = startRun(configPath, `${dirname(configPath)}/run-0.log`);
  const reader = new pg.Client({ connectionString: dbs.db2 });
  await reader.connect();
  /** What the reader saw on b: (rows, sum of n) pairs, each must be a whole state. */
  const seen = new Set<string>();
  let stop = false;
  const readerLoop = (async () => {
    while (!stop) {
      const r = await reader.query<{ c: string; s: string | null }>(
        'SELECT count(*)::text AS c, sum(n)::text AS s FROM big',
      );
      seen.add(`${r.rows[0]!.c}/${r.rows[0]!.s ?? 0}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  /** The applier's target transaction on b is open: pieces written, not committed. */
  const applyOpen = async () => {
    const r = await dbs.sql2(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name LIKE 'pgbisync-apply%' AND backend_xid IS NOT NULL AND state <> 'active'`,
    );
    return r.rows[0].n > 0;
  };
  const sumAfterInsert = (ROWS * (ROWS + 1)) / 2;
  try {
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(`INSERT INTO big SELECT g, g, repeat('x', 100) FROM generate_series(1, ${ROWS}) g`);
    // Killed while the insert's target transaction is open: nothing of it may stay.
    await waitFor('the pieces of the insert being applied on b', applyOpen, 60_000);
    await killHard(child);
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM big')).rows[0].n, 0);
    child = startRun(configPath, `${dirname(configPath)}/run-1.log`);
    await waitFor(
      'the insert on b',
      async () => (await dbs.sql2('SELECT count(*)::int AS n FROM big')).rows[0].n === ROWS,
      120_000,
    );
    const inserted = await dbs.sql2('SELECT count(DISTINCT xmin::text)::int AS n FROM big');
    assert.equal(inserted.rows[0].n, 1, 'the insert is one target transaction');
    await dbs.sql1('UPDATE big SET n = n + 1');
    await waitFor(
      'the update on b',
      async () =>
        (await dbs.sql2('SELECT sum(n)::bigint::text AS s FROM big')).rows[0].s ===
        String(sumAfterInsert + ROWS),
      120_000,
    );
    assert.equal(child.exitCode, null, 'pgbisync run is still running');
  } finally {
    stop = true;
    await readerLoop.catch(() => undefined);
    await reader.end();
    await killHard(child);
  }
  const whole = new Set(['0/0', `${ROWS}/${sumAfterInsert}`, `${ROWS}/${sumAfterInsert + ROWS}`]);
  assert.deepEqual(
    [...seen].filter((s) => !whole.has(s)),
    [],
    'a reader on b saw a part of a transaction',
  );
  // The update is one target transaction too.
  const txns = await dbs.sql2('SELECT count(DISTINCT xmin::text)::int AS n, count(*)::int AS c FROM big');
  assert.deepEqual(txns.rows[0], { n: 1, c: ROWS });
  await teardown(config, { keepTopics: false });
});
