/**
 * Tables added and removed while `pgbisync run` runs, through the CLI as an operator does it: edit the
 * config, `pgbisync reload` (or SIGHUP). An added table is set up and copied from both nodes (keys on
 * both end with the newer version) while it is written, then streams; a config that does not load is
 * refused and the sync runs on unchanged; a removed table stops syncing, its data kept. One process
 * throughout (SIGHUP used to end it).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from '../testing/cli.ts';
import { FaultProxy } from '../testing/fault-proxy.ts';
import { tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const cli = (args: string[]) => runCli(args);

test('reload: a table added while running is copied and synced, a bad config is refused, a removed one stops', async () => {
  await using dbs = await createTestDatabases();
  const ddl = `CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
               CREATE TABLE public.extra (id int PRIMARY KEY, v text NOT NULL)`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-reload-'));
  const file = join(dir, 'pgbisync.yaml');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  const writeConfig = (tables: string) =>
    writeFileSync(
      file,
      `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${a}, url: "${dbs.db1}" }
  - { name: ${b}, url: "${dbs.db2}" }
tables: [${tables}]
apply: { maxWaitMs: 10 }
http: { port: 0 }
`,
    );
  writeConfig('public.items');
  const c = ['-c', file];
  assert.equal(cli(['setup', ...c]).code, 0);
  // extra holds rows on both nodes before it is synced; key 5 on both, newer on b.
  await dbs.sql1(`INSERT INTO extra SELECT g, 'a' FROM generate_series(1, 5) g`);
  await dbs.sql2(`INSERT INTO extra SELECT g, 'b' FROM generate_series(5, 8) g`);

  const run: ChildProcess = spawn(process.execPath, [BIN, 'run', ...c], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  let runLog = '';
  run.stderr?.on('data', (d: Buffer) => {
    runLog += d.toString();
  });
  try {
    await waitFor(`run listening (log: ${runLog})`, async () => /"http":"http:\/\/[^"]+"/.test(runLog));
    const url = /"http":"(http:\/\/[^"]+)"/.exec(runLog)![1]!;
    await dbs.sql1(`INSERT INTO items VALUES (1, 'a')`);
    await waitFor('items cross', async () => (await dbs.sql2('SELECT 1 FROM items')).rowCount === 1);
    assert.equal((await dbs.sql2('SELECT 1 FROM extra WHERE id = 1')).rowCount, 0, 'extra not synced yet');

    // Added: reload (the command), while extra is written on both nodes.
    writeConfig('public.items, public.extra');
    const writing = (async () => {
      for (let i = 0; i < 20; i++) {
        await dbs.sql1(`INSERT INTO extra VALUES (${100 + i}, 'during a')`);
        await dbs.sql2(`INSERT INTO extra VALUES (${200 + i}, 'during b')`);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const reloaded = cli(['reload', ...c, '--url', url]);
    await writing;
    assert.equal(reloaded.code, 0, reloaded.stdout + reloaded.stderr);
    assert.match(reloaded.stdout, /reloaded: 2 tables; added: public\.extra; removed: none/);
    await waitFor(`extra equal on both nodes (log: ${runLog.slice(-3000)})`, async () => {
      const rows1 = JSON.stringify(await tableRows(dbs.sql1, 'extra'));
      return rows1 === JSON.stringify(await tableRows(dbs.sql2, 'extra'));
    });
    assert.equal((await dbs.sql1('SELECT count(*)::int AS n FROM extra')).rows[0].n, 8 + 40);
    assert.deepEqual((await dbs.sql1('SELECT v FROM extra WHERE id = 5')).rows, [{ v: 'b' }]);
    await dbs.sql2(`INSERT INTO extra VALUES (300, 'after')`);
    await waitFor(
      'extra streams',
      async () => (await dbs.sql1('SELECT 1 FROM extra WHERE id = 300')).rowCount === 1,
    );

    // A config that does not load: refused by SIGHUP and by the command; the sync runs on as it was.
    writeFileSync(file, 'tables: [public.items\n');
    run.kill('SIGHUP');
    await waitFor('SIGHUP reload refused', async () => /reload refused/.test(runLog));
    const refused = cli(['reload', ...c, '--url', url]);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /reload refused, the sync runs on unchanged: .*not valid YAML/);
    await dbs.sql1(`INSERT INTO extra VALUES (301, 'still')`);
    await waitFor(
      'still synced',
      async () => (await dbs.sql2('SELECT 1 FROM extra WHERE id = 301')).rowCount === 1,
    );

    // Removed (SIGHUP this time): its changes no longer cross, its data stays, its triggers are gone.
    writeConfig('public.items');
    run.kill('SIGHUP');
    await waitFor('reloaded without extra', async () => /"removed":\["public.extra"\]/.test(runLog));
    await waitFor('triggers of extra dropped', async () => {
      const t = await dbs.sql1(
        "SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.extra'::regclass AND tgname LIKE 'pgbisync%'",
      );
      return t.rows[0].n === 0;
    });
    await dbs.sql1(`INSERT INTO extra VALUES (400, 'not synced')`);
    await dbs.sql1(`INSERT INTO items VALUES (2, 'synced')`);
    await waitFor(
      'items still cross',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 2')).rowCount === 1,
    );
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await dbs.sql2('SELECT 1 FROM extra WHERE id = 400')).rowCount, 0);
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM extra')).rows[0].n, 8 + 40 + 2);
    assert.equal(run.exitCode, null, `one process throughout: ${runLog.slice(-2000)}`);
  } finally {
    const exited = new Promise((resolve) => run.once('exit', resolve));
    run.kill('SIGTERM');
    await exited;
  }
  assert.equal(run.exitCode, 0, `run must stop cleanly on SIGTERM: ${runLog.slice(-3000)}`);
  assert.equal(cli(['teardown', ...c]).code, 0);
});

test('reload: a SIGHUP while run is starting up (a node not answering yet) is kept and followed once it runs', async () => {
  await using dbs = await createTestDatabases();
  const ddl = `CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
               CREATE TABLE public.extra (id int PRIMARY KEY, v text NOT NULL)`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  // run reaches node a through a proxy that passes no bytes while the test holds it: run waits for it
  // in its start-up checks (as after a crash of the node or a network cut). setup and teardown, run
  // as blocking child processes here, go to the node directly.
  const db1 = new URL(dbs.db1);
  const proxy = await FaultProxy.start({ host: db1.hostname, port: Number(db1.port) });
  const viaProxy = new URL(dbs.db1);
  viaProxy.port = String(proxy.port);
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-reload-'));
  const file = join(dir, 'pgbisync.yaml');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  const writeConfig = (tables: string, url1: string) =>
    writeFileSync(
      file,
      `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${a}, url: "${url1}" }
  - { name: ${b}, url: "${dbs.db2}" }
tables: [${tables}]
apply: { maxWaitMs: 10 }
http: { port: 0 }
`,
    );
  const c = ['-c', file];
  let run: ChildProcess | undefined;
  let runLog = '';
  try {
    writeConfig('public.items', dbs.db1);
    const setUp = cli(['setup', ...c]);
    assert.equal(setUp.code, 0, setUp.stdout + setUp.stderr);
    await dbs.sql1(`INSERT INTO extra VALUES (1, 'a')`);

    writeConfig('public.items', viaProxy.href);
    proxy.set({ kind: 'stall' });
    run = spawn(process.execPath, [BIN, 'run', ...c], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
    });
    run.stderr?.on('data', (d: Buffer) => {
      runLog += d.toString();
    });
    await waitFor(`run starting (log: ${runLog})`, async () => /"msg":"starting"/.test(runLog));
    await new Promise((r) => setTimeout(r, 500));
    assert.doesNotMatch(runLog, /"msg":"running"/, 'still in its start-up checks');
    // The operator adds a table and sends SIGHUP while run is still starting (SIGHUP's default action
    // ended the process: the torture test's addtable met it after a kill and restart).
    writeConfig('public.items, public.extra', viaProxy.href);
    run.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(
      run.signalCode,
      null,
      `run must survive a SIGHUP during its start-up: ${runLog.slice(-2000)}`,
    );
    assert.equal(run.exitCode, null, `run must survive a SIGHUP during its start-up: ${runLog.slice(-2000)}`);
    proxy.set({ kind: 'pass' });
    await waitFor(`the reload asked during start-up done (log: ${runLog.slice(-3000)})`, async () =>
      /"added":\["public.extra"\]/.test(runLog),
    );
    await waitFor(
      'extra copied',
      async () => (await dbs.sql2('SELECT 1 FROM extra WHERE id = 1')).rowCount === 1,
    );
    await dbs.sql1(`INSERT INTO items VALUES (1, 'a')`);
    await waitFor('items cross', async () => (await dbs.sql2('SELECT 1 FROM items')).rowCount === 1);
    const exited = new Promise((resolve) => run!.once('exit', resolve));
    run.kill('SIGTERM');
    await exited;
    assert.equal(run.exitCode, 0, `run must stop cleanly on SIGTERM: ${runLog.slice(-3000)}`);
  } finally {
    if (run !== undefined && run.exitCode === null && run.signalCode === null) run.kill('SIGKILL');
    await proxy.close();
  }
  writeConfig('public.items, public.extra', dbs.db1);
  assert.equal(cli(['teardown', ...c]).code, 0);
});
