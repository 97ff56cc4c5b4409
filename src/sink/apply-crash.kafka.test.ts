/**
 * Apply under crashes: 50,000 changes (25,000 two-row transfer transactions) stream from a to b while
 * `pgbisync run` is SIGKILLed and restarted 5 times. A reader polling b must never see half a transfer
 * (the sum of balances is invariant), and afterwards b must equal a row for row, counters included.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { setup, teardown } from '../operate/setup.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';

const ACCOUNTS = 100;
const TRANSFERS = Number(process.env.PGBISYNC_TEST_TRANSFERS ?? 25_000);
const KILLS = Number(process.env.PGBISYNC_TEST_KILLS ?? 5);
/** Kills come every KILL_MS to 2 * KILL_MS. */
const KILL_MS = Number(process.env.PGBISYNC_TEST_KILL_MS ?? 1500);

test(`${TRANSFERS * 2} changes with ${KILLS} SIGKILLs: atomic on the target, none lost or doubled`, async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.acct (id int PRIMARY KEY, balance int NOT NULL, counter int NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1(`INSERT INTO acct SELECT g, 1000, 0 FROM generate_series(1, ${ACCOUNTS}) g`);
  const config = syncConfig(dbs, ['public.acct']);
  const configPath = writeRunConfig(config, ['public.acct'], { apply: { maxWaitMs: 10 } });
  await setup(config);
  const logPath = (n: number) => join(dirname(configPath), `run-${n}.log`);
  let child = startRun(configPath, logPath(0));
  const total = ACCOUNTS * 1000;
  const reader = new pg.Client({ connectionString: dbs.db2 });
  await reader.connect();
  let readerStop = false;
  let reads = 0;
  const torn: number[] = [];
  const readerLoop = (async () => {
    while (!readerStop) {
      const r = await reader.query<{ s: string | null; n: string }>(
        'SELECT sum(balance)::text AS s, count(*)::text AS n FROM acct',
      );
      const row = r.rows[0]!;
      if (row.n === String(ACCOUNTS) && Number(row.s) !== total) torn.push(Number(row.s));
      reads++;
    }
  })();
  try {
    // Transfers run server-side, one commit each: fast enough to keep the pipeline busy while killing.
    const writer = dbs.sql1(`
      DO $$ DECLARE a int; b int; BEGIN
        FOR i IN 1..${TRANSFERS} LOOP
          a := 1 + (i::bigint * 7919) % ${ACCOUNTS}; b := 1 + (i::bigint * 104729 + 13) % ${ACCOUNTS};
          IF a = b THEN b := 1 + b % ${ACCOUNTS}; END IF;
          UPDATE acct SET balance = balance - 1, counter = counter + 1 WHERE id = a;
          UPDATE acct SET balance = balance + 1, counter = counter + 1 WHERE id = b;
          COMMIT;
        END LOOP; END $$`);
    for (let k = 0; k < KILLS; k++) {
      await new Promise((r) => setTimeout(r, KILL_MS + Math.random() * KILL_MS));
      await killHard(child);
      child = startRun(configPath, logPath(k + 1));
    }
    await writer;
    await waitFor(
      `b equal to a (logs in ${dirname(configPath)})`,
      async () => {
        assert.equal(child.exitCode, null, 'pgbisync run exited');
        const [x, y] = await Promise.all([tableRows(dbs.sql1, 'acct'), tableRows(dbs.sql2, 'acct')]);
        return JSON.stringify(x) === JSON.stringify(y);
      },
      120_000,
    ).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}\n${await divergence(dbs, dirname(configPath))}`);
    });
    const counters = await dbs.sql2('SELECT sum(counter)::int AS c, sum(balance)::int AS s FROM acct');
    assert.deepEqual(counters.rows[0], { c: TRANSFERS * 2, s: total });
  } finally {
    readerStop = true;
    await readerLoop.catch(() => undefined);
    await reader.end();
    await killHard(child);
  }
  assert.ok(reads > 50, `the reader polled ${reads} times`);
  assert.deepEqual(torn, [], 'a reader on b saw half of a transfer');
  await teardown(config, { keepTopics: false });
});

/** What a failed run left behind, for the failure message: differing rows, b's progress and conflicts, logged errors. */
async function divergence(dbs: TestDatabases, logDir: string): Promise<string> {
  const [x, y] = await Promise.all([tableRows(dbs.sql1, 'acct'), tableRows(dbs.sql2, 'acct')]);
  const onB = new Set(y);
  const onA = new Set(x);
  const progress = await dbs.sql2('SELECT * FROM pgbisync.apply_progress');
  const conflicts = await dbs.sql2('SELECT * FROM pgbisync.conflicts ORDER BY id LIMIT 5');
  const errors = readdirSync(logDir)
    .filter((f) => f.endsWith('.log'))
    .flatMap((f) =>
      readFileSync(join(logDir, f), 'utf8')
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l))
        .map((l) => `${f}: ${l.slice(0, 600)}`),
    );
  return [
    `rows only on a: ${x
      .filter((r) => !onB.has(r))
      .slice(0, 5)
      .join(' ')}`,
    `rows only on b: ${y
      .filter((r) => !onA.has(r))
      .slice(0, 5)
      .join(' ')}`,
    `b's apply_progress: ${JSON.stringify(progress.rows)}`,
    `b's conflicts (first 5): ${JSON.stringify(conflicts.rows)}`,
    `logged warnings and errors (last 20):`,
    ...errors.slice(-20),
  ].join('\n');
}
