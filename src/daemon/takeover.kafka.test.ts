/**
 * Two `pgbisync run` instances on one config, under writes on both nodes (docs/deployment.md):
 * - kill -9 of the instance that owns every component: the other owns them all within 15 s;
 * - SIGSTOP of the owner for 60 s: the other takes over; on SIGCONT the old owner writes nothing and
 *   stands by.
 * Checked from the outside, with plain SQL: every row written on a node reaches the other (nothing
 * lost), and a trigger that fires on applied rows (ENABLE ALWAYS) records each write of an applied row,
 * so a transaction applied twice shows as a key written twice (nothing applied twice).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { setup, teardown } from '../operate/setup.ts';
import { killHard, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;
const TAKEOVER_BOUND_MS = 15_000;

const SCHEMA = `
CREATE TABLE public.ledger (id text PRIMARY KEY, node text NOT NULL, n int NOT NULL);
CREATE TABLE public.applied_writes (id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION public.note_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.applied_writes (id) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER note_applied AFTER INSERT OR UPDATE ON public.ledger FOR EACH ROW EXECUTE FUNCTION public.note_applied();
ALTER TABLE public.ledger ENABLE REPLICA TRIGGER note_applied;`;

interface Instance {
  readonly name: string;
  readonly child: ChildProcess;
  url(): string | undefined;
}

interface ComponentView {
  name: string;
  state: string;
  owner?: string;
}

function startInstance(name: string, configPath: string): Instance {
  const logPath = join(dirname(configPath), `${name}.log`);
  const child = spawn(process.execPath, [BIN, 'run', '-c', configPath, '--http-port', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PGBISYNC_INSTANCE: name, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    writeFileSync(logPath, log);
  });
  return { name, child, url: () => /"http":"(http:\/\/[^"]+)"/.exec(log)?.[1] };
}

async function components(instance: Instance): Promise<ComponentView[] | undefined> {
  const url = instance.url();
  if (url === undefined) return undefined;
  try {
    const r = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
    return ((await r.json()) as { components: ComponentView[] }).components;
  } catch {
    return undefined;
  }
}

/** Every component runs in `instance` (and `count` of them exist). */
async function ownsAll(instance: Instance, count: number): Promise<boolean> {
  const views = await components(instance);
  return (
    views !== undefined &&
    views.length === count &&
    views.every((c) => c.state === 'running' && c.owner === instance.name)
  );
}

async function standsByForAll(instance: Instance, count: number, owner: string): Promise<boolean> {
  const views = await components(instance);
  return (
    views !== undefined &&
    views.length === count &&
    views.every((c) => c.state === 'standby' && c.owner === owner)
  );
}

async function healthz(instance: Instance): Promise<string> {
  const r = await fetch(`${instance.url()}/healthz`);
  return `${r.status} ${(await r.text()).trim()}`;
}

test('two instances: kill -9 and SIGSTOP of the owner hand every component to the other; nothing lost or applied twice', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(SCHEMA);
  await dbs.sql2(SCHEMA);
  const config = syncConfig(dbs, ['public.ledger']);
  const count = 4; // a capture per node, an applier per direction
  const configPath = writeRunConfig(config, ['public.ledger'], { apply: { maxWaitMs: 10 } });
  await setup(config);
  const writers = await Promise.all(
    [dbs.db1, dbs.db2].map(async (url) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  // Two-way load: each node inserts its own keys, a few rows per transaction, until told to stop.
  let writing = true;
  let rounds = 0;
  const load = (async () => {
    while (writing) {
      await Promise.all(
        writers.map((c, i) =>
          c.query(
            `INSERT INTO ledger SELECT $1 || '-' || ($2::int * 3 + g), $1, $2 FROM generate_series(0, 2) g`,
            [i === 0 ? 'a' : 'b', rounds],
          ),
        ),
      );
      rounds++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const first = startInstance('first', configPath);
  let second: Instance | undefined;
  let revived: Instance | undefined;
  try {
    await waitFor('the first instance owns every component', () => ownsAll(first, count), 60_000);
    assert.equal(await healthz(first), '200 active');
    second = startInstance('second', configPath);
    await waitFor('the second stands by', () => standsByForAll(second!, count, 'first'), 30_000);
    assert.equal(await healthz(second), '200 standby');

    // kill -9 of the owner.
    await new Promise((r) => setTimeout(r, 2_000));
    const killedAt = Date.now();
    await killHard(first.child);
    await waitFor('the second owns every component', () => ownsAll(second!, count), TAKEOVER_BOUND_MS);
    const killTakeoverMs = Date.now() - killedAt;
    const metrics = await (await fetch(`${second.url()}/metrics`)).text();
    assert.match(metrics, /pgbisync_takeovers_total\{component="capture [^"]+"\} 1/);

    // A third instance stands by; SIGSTOP of the owner (the second) for 60 s.
    revived = startInstance('third', configPath);
    await waitFor('the third stands by', () => standsByForAll(revived!, count, 'second'), 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    const stoppedAt = Date.now();
    second.child.kill('SIGSTOP');
    await waitFor('the third owns every component', () => ownsAll(revived!, count), 60_000);
    const stopTakeoverMs = Date.now() - stoppedAt;
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - stoppedAt))));
    second.child.kill('SIGCONT');
    await waitFor('the woken owner stands by', () => standsByForAll(second!, count, 'third'), 30_000);
    assert.equal(second.child.exitCode, null, 'the woken owner keeps running, as a standby');
    // The third still owns everything: the woken one took nothing back and holds no lease.
    assert.ok(await ownsAll(revived, count));
    const owners =
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgbisync owner second %'";
    assert.equal((await dbs.sql1(owners)).rows[0].n, 0);
    assert.equal((await dbs.sql2(owners)).rows[0].n, 0);

    writing = false;
    await load;
    // Drain: every row of each node on the other.
    const expected = rounds * 3;
    await waitFor(
      'every row on both nodes',
      async () => {
        const [x, y] = await Promise.all([
          dbs.sql1('SELECT count(*)::int AS n FROM ledger'),
          dbs.sql2('SELECT count(*)::int AS n FROM ledger'),
        ]);
        return x.rows[0].n === 2 * expected && y.rows[0].n === 2 * expected;
      },
      60_000,
    );
    const rows = 'SELECT id, node, n FROM ledger ORDER BY id';
    assert.deepEqual((await dbs.sql1(rows)).rows, (await dbs.sql2(rows)).rows, 'the nodes are identical');
    // Each applied row written once: on db1 the rows of b, on db2 those of a.
    const twice = `SELECT id, count(*)::int AS n FROM applied_writes GROUP BY id HAVING count(*) > 1 LIMIT 5`;
    assert.deepEqual((await dbs.sql1(twice)).rows, [], 'a transaction applied twice into db1');
    assert.deepEqual((await dbs.sql2(twice)).rows, [], 'a transaction applied twice into db2');
    const applied = 'SELECT count(*)::int AS n FROM applied_writes';
    assert.equal((await dbs.sql1(applied)).rows[0].n, expected);
    assert.equal((await dbs.sql2(applied)).rows[0].n, expected);
    process.stderr.write(
      `takeover after kill -9: ${killTakeoverMs} ms; after SIGSTOP: ${stopTakeoverMs} ms; ${rounds} rounds of writes\n`,
    );
    assert.ok(killTakeoverMs <= TAKEOVER_BOUND_MS);
  } finally {
    writing = false;
    await load.catch(() => undefined);
    second?.child.kill('SIGCONT');
    await killHard(first.child);
    if (second !== undefined) await killHard(second.child);
    if (revived !== undefined) await killHard(revived.child);
    await Promise.all(writers.map((c) => c.end()));
  }
  await teardown(config, { keepTopics: false });
});
