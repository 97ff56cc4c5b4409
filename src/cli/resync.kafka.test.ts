/**
 * A slot dropped while `run` is stopped, through the CLI as an operator meets it: run syncs two nodes,
 * stops; a's slot is dropped and a's rows change (a delete among them); run starts again. a's capture
 * must block with PGB2005 naming the fix (the slot must not be re-created silently, which would lose the
 * delete for good), status must be unhealthy and name `pgbisync resync a`, and the other direction must
 * run on. (b's stored position of a is put ahead of a's WAL, as after a failover to a standby that was
 * behind.) `pgbisync resync a` (run still running) then brings every change of the gap to b, keeps b's
 * newer versions, sends only a's own versions (b records no conflict), and the nodes converge: checked
 * with plain SQL on both nodes, then `verify`; a's later changes stream to b again.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from '../testing/cli.ts';
import { tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const cli = (args: string[]) => runCli(args, { timeoutMs: 240_000 });

interface Run {
  readonly child: ChildProcess;
  log(): string;
  /** run's HTTP address, from its 'running' log line. */
  url(): Promise<string>;
  stop(): Promise<void>;
}

function startRun(config: string): Run {
  const child = spawn(process.execPath, [BIN, 'run', '-c', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  return {
    child,
    log: () => log,
    url: async () => {
      let url: string | undefined;
      await waitFor(`run's HTTP address (log: ${log})`, async () => {
        url = /"http":"(http:\/\/[^"]+)"/.exec(log)?.[1];
        return url !== undefined;
      });
      return url!;
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

interface ComponentState {
  name: string;
  state: string;
  code?: string;
  lastError?: string;
  fix?: string;
}

async function components(url: string): Promise<ComponentState[]> {
  const body = (await (await fetch(`${url}/status`)).json()) as { components: ComponentState[] };
  return body.components;
}

test('a slot dropped while run is stopped blocks that capture; resync brings the gap over, deletes included', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-resync-'));
  const config = join(dir, 'pgbisync.yaml');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  writeFileSync(
    config,
    `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${a}, url: "${dbs.db1}" }
  - { name: ${b}, url: "${dbs.db2}" }
tables: [public.items]
apply: { maxWaitMs: 10 }
http: { port: 0 }
`,
  );
  const c = ['-c', config];
  assert.equal(cli(['setup', ...c]).code, 0);

  let run = startRun(config);
  try {
    await dbs.sql1(`INSERT INTO items SELECT g, 'a' FROM generate_series(1, 20) g`);
    await dbs.sql2(`INSERT INTO items SELECT g, 'b' FROM generate_series(21, 40) g`);
    await waitFor(`40 rows on both nodes (run log: ${run.log()})`, async () => {
      const n1 = (await dbs.sql1('SELECT count(*)::int AS n FROM items')).rows[0].n;
      const n2 = (await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n;
      return n1 === 40 && n2 === 40;
    });
  } finally {
    await run.stop();
  }

  // While run is stopped: a's slot is dropped (by hand, or lost in a failover), then a's rows change.
  await dbs.sql1('SELECT pg_drop_replication_slot($1)', [`pgbisync_${a}`]);
  // As after a failover to a standby that had not replayed everything: the WAL positions of a's new
  // primary are behind those b applied from the old one.
  await dbs.sql2(`UPDATE pgbisync.apply_progress SET commit_lsn = 'FFFF/0' WHERE source_node = $1`, [a]);
  await dbs.sql1('DELETE FROM items WHERE id = 5');
  await dbs.sql1(`UPDATE items SET v = 'a gap' WHERE id IN (6, 9)`);
  await dbs.sql1(`INSERT INTO items VALUES (100, 'a gap')`);
  // b writes too, later: its direction is intact, and b's newer version of row 9 must win everywhere.
  await dbs.sql2(`UPDATE items SET v = 'b later' WHERE id IN (9, 22)`);
  await dbs.sql2('DELETE FROM items WHERE id = 23');

  run = startRun(config);
  try {
    const url = await run.url();
    await waitFor(
      `a's capture blocked with PGB2005 (run log: ${run.log()})`,
      async () =>
        (await components(url)).some(
          (s) => s.name === `capture ${a}` && s.state === 'blocked' && s.code === 'PGB2005',
        ),
      60_000,
    );
    const capture = (await components(url)).find((s) => s.name === `capture ${a}`)!;
    assert.match(
      capture.lastError ?? '',
      new RegExp(`capture of node ${a}: replication slot pgbisync_${a} is gone`),
    );
    assert.match(capture.fix ?? '', new RegExp(`pgbisync resync ${a}`));
    assert.equal((await fetch(`${url}/healthz`)).status, 503);

    const sick = cli(['status', ...c]);
    assert.equal(sick.code, 1, sick.stdout + sick.stderr);
    assert.match(
      sick.stdout,
      new RegExp(`${a}->${b} .*UNHEALTHY: .*pgbisync_${a} is gone.*pgbisync resync ${a}`),
    );
    const doctor = cli(['doctor', ...c]);
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(doctor.stdout, new RegExp(`FAIL +${a} +slot .*\\n +fix: run \`pgbisync resync ${a}\``));

    // The other direction runs on: b's changes reach a.
    await waitFor('b -> a applied while a is blocked', async () => {
      const r = await dbs.sql1(
        `SELECT (SELECT v FROM items WHERE id = 22) AS v, (SELECT count(*)::int FROM items WHERE id = 23) AS n`,
      );
      return r.rows[0].v === 'b later' && r.rows[0].n === 0;
    });
    // Nothing of a's gap reached b: the loss is real until the resync.
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items WHERE id IN (5, 100)')).rows[0].n, 1);

    const fixed = cli(['resync', a, ...c, '--timeout', '120']);
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr + run.log());
    assert.match(fixed.stdout, new RegExp(`resync ${a}: re-copy requested`));
    assert.match(fixed.stdout, new RegExp(`resync ${a}: done`));

    // Checked on the nodes, independently of pgbisync: the gap's delete, update and insert are on b,
    // b's newer row 9 was kept, and both nodes hold the same rows.
    const on2 = await dbs.sql2('SELECT id, v FROM items WHERE id IN (5, 6, 9, 100) ORDER BY id');
    assert.deepEqual(on2.rows, [
      { id: 6, v: 'a gap' },
      { id: 9, v: 'b later' },
      { id: 100, v: 'a gap' },
    ]);
    await waitFor('the nodes converge', async () => {
      const [r1, r2] = [await tableRows(dbs.sql1, 'items'), await tableRows(dbs.sql2, 'items')];
      return JSON.stringify(r1) === JSON.stringify(r2);
    });
    // Only a's own versions were copied: b's rows (and b's row 9, which reached a before the copy) did
    // not come back to b restamped as a's, so b recorded no conflict.
    assert.deepEqual((await dbs.sql2('SELECT table_name, key FROM pgbisync.conflicts')).rows, []);
    // a streams again, from its new slot's positions.
    await dbs.sql1(`INSERT INTO items VALUES (200, 'after')`);
    await waitFor('a -> b streams again', async () => {
      return (await dbs.sql2('SELECT 1 FROM items WHERE id = 200')).rowCount === 1;
    });
    assert.equal((await components(url)).find((s) => s.name === `capture ${a}`)?.state, 'running');
    await waitFor('status healthy', async () => cli(['status', ...c]).code === 0, 60_000);
  } finally {
    await run.stop();
  }
  assert.equal(run.child.exitCode, 0, run.log());
  const verified = cli(['verify', ...c]);
  assert.equal(verified.code, 0, verified.stdout);
  assert.equal(cli(['teardown', ...c]).code, 0);
});
