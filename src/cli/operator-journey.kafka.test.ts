/**
 * The operator's journey through the CLI only, as a user would drive it: write a config, doctor fails
 * and names the fix, apply the fix, doctor passes, setup, run, writes on both sides, status, verify
 * (identical), an out-of-band divergence, verify lists exactly those keys, verify --repair, verify
 * identical, teardown leaves no slot, origin or publication.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from '../testing/cli.ts';
import { waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const cli = (args: string[]) => runCli(args);

test('config -> doctor -> fix -> setup -> run -> status -> verify -> repair -> teardown, through the CLI', async () => {
  await using dbs = await createTestDatabases();
  // orders lacks a primary key on purpose: doctor must say so and print the fix.
  const ddl = `CREATE TABLE public.accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
               CREATE TABLE public.orders (id int NOT NULL, account int, amount numeric(12,2))`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-journey-'));
  const config = join(dir, 'pgbisync.yaml');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  writeFileSync(
    config,
    `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${a}, url: "${dbs.db1}" }
  - { name: ${b}, url: "${dbs.db2}" }
tables: [public.accounts, public.orders]
conflicts: { policy: last-writer-wins }
apply: { maxWaitMs: 10 }
http: { port: 0 }
`,
  );
  const c = ['-c', config];

  const sick = cli(['doctor', ...c]);
  assert.equal(sick.code, 1, sick.stdout + sick.stderr);
  assert.match(sick.stdout, /FAIL.*orders/);
  assert.match(sick.stdout, /ALTER TABLE .*orders.* ADD PRIMARY KEY/);
  await dbs.sql1('ALTER TABLE public.orders ADD PRIMARY KEY (id)');
  await dbs.sql2('ALTER TABLE public.orders ADD PRIMARY KEY (id)');
  const well = cli(['doctor', ...c]);
  assert.equal(well.code, 0, well.stdout + well.stderr);

  assert.equal(cli(['setup', ...c]).code, 0);
  const run: ChildProcess = spawn(process.execPath, [BIN, 'run', ...c], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  let runLog = '';
  run.stderr?.on('data', (d: Buffer) => {
    runLog += d.toString();
  });
  try {
    await dbs.sql1(`INSERT INTO accounts SELECT g, 'a' || g, g FROM generate_series(1, 50) g`);
    await dbs.sql2(`INSERT INTO accounts SELECT g, 'b' || g, g FROM generate_series(51, 100) g`);
    await dbs.sql1(`INSERT INTO orders SELECT g, g, 9.99 FROM generate_series(1, 30) g`);
    await waitFor(`rows on both nodes (run log: ${runLog})`, async () => {
      const n1 = (
        await dbs.sql1('SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM orders) AS n')
      ).rows[0].n;
      const n2 = (
        await dbs.sql2('SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM orders) AS n')
      ).rows[0].n;
      return Number(n1) === 130 && Number(n2) === 130;
    });
    await waitFor('status healthy with no lag', async () => {
      const s = cli(['status', ...c, '--json']);
      if (s.code !== 0) return false;
      const report = JSON.parse(s.stdout) as {
        directions: { kafkaLag: number; slot: { active: boolean } }[];
      };
      return (
        report.directions.length === 2 && report.directions.every((d) => d.kafkaLag === 0 && d.slot.active)
      );
    });
    // What run's /metrics says about the same traffic: per node and table, per direction and table,
    // and the lag gauges (sampled at start and every 10 s).
    const url = /"http":"(http:\/\/[^"]+)"/.exec(runLog)?.[1];
    assert.ok(url !== undefined, `run logs its HTTP address: ${runLog}`);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const value = (line: string) => {
      const found = metrics.split('\n').find((l) => l.startsWith(`${line} `));
      assert.ok(found !== undefined, `${line} in /metrics:\n${metrics}`);
      return Number(found.slice(line.length + 1));
    };
    assert.equal(value(`pgbisync_events_captured_total{node="${a}",table="public.accounts"}`), 50);
    assert.equal(value(`pgbisync_events_captured_total{node="${a}",table="public.orders"}`), 30);
    assert.equal(value(`pgbisync_events_captured_total{node="${b}",table="public.accounts"}`), 50);
    assert.equal(value(`pgbisync_rows_applied_total{direction="${a}->${b}",table="public.orders"}`), 30);
    assert.equal(value(`pgbisync_rows_applied_total{direction="${b}->${a}",table="public.accounts"}`), 50);
    assert.ok(value(`pgbisync_slot_retained_wal_bytes{node="${a}"}`) >= 0);
    assert.ok(value(`pgbisync_kafka_lag_records{direction="${a}->${b}"}`) >= 0);
  } finally {
    const exited = new Promise((resolve) => run.once('exit', resolve));
    run.kill('SIGTERM');
    await exited;
  }
  assert.equal(run.exitCode, 0, `run must stop cleanly on SIGTERM: ${runLog}`);

  assert.equal(cli(['verify', ...c]).code, 0);
  // Out of band, with no sync running: three keys differ.
  await dbs.sql2(`UPDATE accounts SET balance = 0 WHERE id = 7`);
  await dbs.sql2(`DELETE FROM orders WHERE id = 3`);
  await dbs.sql1(`INSERT INTO accounts VALUES (1000, 'only a', 1)`);
  const differ = cli(['verify', ...c, '--json']);
  assert.equal(differ.code, 1, differ.stderr);
  const keys = JSON.stringify(JSON.parse(differ.stdout));
  for (const k of ['7', '3', '1000']) assert.match(keys, new RegExp(`"id":"?${k}"?`), keys);
  const repaired = cli(['verify', ...c, '--repair']);
  assert.equal(repaired.code, 0, repaired.stdout + repaired.stderr);
  assert.equal(cli(['verify', ...c]).code, 0);

  const down = cli(['teardown', ...c]);
  assert.equal(down.code, 0, down.stderr);
  for (const sql of [dbs.sql1, dbs.sql2]) {
    const left = await sql(
      `SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())::int AS slots,
              (SELECT count(*) FROM pg_publication)::int AS pubs,
              (SELECT count(*) FROM pg_replication_origin WHERE roname LIKE $1)::int AS origins`,
      [`%${dbs.name}%`],
    );
    assert.deepEqual(left.rows[0], { slots: 0, pubs: 0, origins: 0 });
  }
});
