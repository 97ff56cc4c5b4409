/**
 * Convergence under concurrent writes with crashes: random workloads on both nodes over overlapping keys
 * (inserts, updates, deletes, multi-row transactions) while `pgbisync run` is SIGKILLed and restarted
 * several times. After the drain both nodes must hold identical rows — compared here with plain SQL,
 * independently of pgbisync's code — and every surviving row must be the same version on both nodes
 * (same commit time, which is what last-writer-wins compares).
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { setup, teardown } from '../operate/setup.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const SECONDS = Number(process.env.PGBISYNC_TEST_CHAOS_SECONDS ?? 60);
const KILLS = 3;
const KEYS = 300;

const TABLES = `
CREATE TABLE public.acct (id int PRIMARY KEY, v int NOT NULL, note text);
CREATE TABLE public.line (id int PRIMARY KEY, acct int NOT NULL, amount numeric(10,2), body text);`;

/** One random transaction of 1-4 statements on overlapping keys; conflicts with the other node are the point. */
async function randomTransaction(client: pg.Client, node: string, n: number): Promise<void> {
  const statements = 1 + Math.floor(Math.random() * 4);
  await client.query('BEGIN');
  try {
    for (let i = 0; i < statements; i++) {
      const id = 1 + Math.floor(Math.random() * KEYS);
      const r = Math.random();
      if (r < 0.35) {
        await client.query(
          `INSERT INTO acct VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note`,
          [id, n, `${node} ${n}`],
        );
      } else if (r < 0.6) {
        await client.query('UPDATE acct SET v = v + 1, note = $2 WHERE id = $1', [id, `${node} upd ${n}`]);
      } else if (r < 0.72) {
        await client.query('DELETE FROM acct WHERE id = $1', [id]);
      } else if (r < 0.9) {
        await client.query(
          `INSERT INTO line SELECT g, $1, $2, repeat($3, 20) FROM generate_series($1::int * 10, $1::int * 10 + 3) g
             ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, body = EXCLUDED.body`,
          [id, n % 1000, node],
        );
      } else {
        await client.query('DELETE FROM line WHERE acct = $1', [id]);
      }
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/**
 * What an application does: a transaction that lost a deadlock (the applier writes the same rows on this
 * node, in its own order) or a serialization failure is run again. Anything else fails the test.
 */
async function writeRetrying(client: pg.Client, node: string, n: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await randomTransaction(client, node, n);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== '40P01' && code !== '40001') || attempt >= 20) throw error;
    }
  }
}

async function rowsWithVersions(url: string, table: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<{ r: string }>(
      `SELECT to_jsonb(t)::text || ' @' || coalesce(pg_xact_commit_timestamp(t.xmin)::text, '?') AS r
         FROM ${table} t ORDER BY 1`,
    );
    return r.rows.map((x) => x.r);
  } finally {
    await client.end();
  }
}

test(`${SECONDS} s of concurrent writes on both nodes with ${KILLS} SIGKILLs converge`, async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(TABLES);
  await dbs.sql2(TABLES);
  const config = syncConfig(dbs, ['public.acct', 'public.line']);
  const configPath = writeRunConfig(config, ['public.acct', 'public.line'], { apply: { maxWaitMs: 10 } });
  const logPath = (n: number) => join(dirname(configPath), `run-${n}.log`);
  await setup(config);
  const clients = await Promise.all(
    [dbs.db1, dbs.db2].map(async (url) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let child = startRun(configPath, logPath(0));
  try {
    const end = Date.now() + SECONDS * 1000;
    const killEvery = (SECONDS * 1000) / (KILLS + 1);
    let nextKill = Date.now() + killEvery;
    let kills = 0;
    let n = 0;
    while (Date.now() < end) {
      await Promise.all(clients.map((c, i) => writeRetrying(c, i === 0 ? 'a' : 'b', n)));
      n++;
      if (Date.now() >= nextKill && kills < KILLS) {
        await killHard(child);
        kills++;
        child = startRun(configPath, logPath(kills));
        nextKill += killEvery;
      }
    }
    assert.equal(kills, KILLS);
    assert.ok(n > 100, `workload ran ${n} rounds`);
    for (const table of ['acct', 'line']) {
      let diff: string[] = [];
      const identical = async () => {
        assert.equal(child.exitCode, null, `pgbisync run exited; see ${dirname(configPath)}`);
        const [x, y] = await Promise.all([
          rowsWithVersions(dbs.db1, table),
          rowsWithVersions(dbs.db2, table),
        ]);
        const [xs, ys] = [new Set(x), new Set(y)];
        diff = [
          ...x.filter((r) => !ys.has(r)).map((r) => `only a: ${r}`),
          ...y.filter((r) => !xs.has(r)).map((r) => `only b: ${r}`),
        ];
        return diff.length === 0;
      };
      await waitFor(
        `${table} identical on both nodes (logs in ${dirname(configPath)})`,
        identical,
        90_000,
      ).catch((error: unknown) => {
        throw new Error(
          `${(error as Error).message}: ${diff.length} differences: ${diff.slice(0, 6).join(' | ')}`,
        );
      });
    }
    // LWW spot check: for every recorded conflict, the version that survived (the row, or the tombstone
    // of a deleted key) is at least as new as both versions the conflict saw. (The recorded local
    // version may be older than the one finally compared when a local write raced the applier.)
    const bad = await dbs.sql1(
      `SELECT count(*)::int AS n FROM pgbisync.conflicts c
         LEFT JOIN acct a ON c.table_name = 'public.acct' AND a.id = (c.key->>'id')::int
         LEFT JOIN line l ON c.table_name = 'public.line' AND l.id = (c.key->>'id')::int
         LEFT JOIN pgbisync.tombstones tb ON tb.table_name = c.table_name AND tb.key = c.key
        WHERE CASE WHEN coalesce(a.xmin, l.xmin) IS NOT NULL THEN pgbisync.version_time(coalesce(a.xmin, l.xmin))
                   ELSE pgbisync.version_time(tb.xmin) END
              < greatest(c.local_commit_time, c.remote_commit_time)`,
    );
    assert.equal(bad.rows[0].n, 0, 'a conflict whose surviving version is older than one it saw');
    const conflicts = await dbs.sql1('SELECT count(*)::int AS n FROM pgbisync.conflicts');
    assert.ok(conflicts.rows[0].n > 0, 'overlapping writes must have produced conflicts');
  } finally {
    await killHard(child);
    await Promise.all(clients.map((c) => c.end()));
  }
  await teardown(config, { keepTopics: false });
});
