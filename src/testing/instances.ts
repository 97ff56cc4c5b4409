/**
 * Several `pgbisync run` instances on one config, for the tests of ownership and takeover: start one
 * under a name (its HTTP address read from its log), read its /status and /healthz, and a two-way
 * workload whose outcome is checked with plain SQL (every row on every node, each applied row written
 * once: a trigger that fires on applied rows only records each write).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import { newPgClient } from '../pg/client.ts';
import { waitFor } from './sync-fixture.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

export interface RunInstance {
  readonly name: string;
  readonly child: ChildProcess;
  url(): string | undefined;
  /** The last `lines` lines of its log (what a failed wait on it prints). */
  logTail(lines: number): string;
}

export interface ComponentView {
  name: string;
  state: string;
  owner?: string;
}

/** Starts `pgbisync run -c configPath` as instance `name`; its JSON log goes to `<name>.log` beside the config. */
export function startInstance(name: string, configPath: string, env: NodeJS.ProcessEnv = {}): RunInstance {
  const logPath = join(dirname(configPath), `${name}.log`);
  const child = spawn(process.execPath, [BIN, 'run', '-c', configPath, '--http-port', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      ...env,
      PGBISYNC_INSTANCE: name,
      PGBISYNC_LOG_FORMAT: 'json',
      PGBISYNC_LOG_LEVEL: 'info',
    },
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    writeFileSync(logPath, log);
  });
  return {
    name,
    child,
    url: () => /"http":"(http:\/\/[^"]+)"/.exec(log)?.[1],
    logTail: (lines) => log.trimEnd().split('\n').slice(-lines).join('\n'),
  };
}

/** The instance's /status components, or undefined while it does not answer (starting, frozen). */
export async function componentsOf(instance: RunInstance): Promise<ComponentView[] | undefined> {
  const url = instance.url();
  if (url === undefined) return undefined;
  try {
    const r = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
    return ((await r.json()) as { components: ComponentView[] }).components;
  } catch {
    return undefined;
  }
}

/** The named components (all `count` of them when `names` is undefined) run in `instance`. */
export async function owns(
  instance: RunInstance,
  count: number,
  names?: readonly string[],
): Promise<boolean> {
  const views = await componentsOf(instance);
  if (views === undefined || views.length !== count) return false;
  return views
    .filter((c) => names === undefined || names.includes(c.name))
    .every((c) => c.state === 'running' && c.owner === instance.name);
}

/** Every component of `instance` stands by for `owner`. */
export async function standsBy(instance: RunInstance, count: number, owner: string): Promise<boolean> {
  const views = await componentsOf(instance);
  return (
    views !== undefined &&
    views.length === count &&
    views.every((c) => c.state === 'standby' && c.owner === owner)
  );
}

export async function healthz(instance: RunInstance): Promise<string> {
  const r = await fetch(`${instance.url()}/healthz`);
  return `${r.status} ${(await r.text()).trim()}`;
}

/** The ledger the two-way workload writes, and the record of each write of an applied row. */
export const LEDGER_SCHEMA = `
CREATE TABLE public.ledger (id text PRIMARY KEY, node text NOT NULL, n int NOT NULL);
CREATE TABLE public.applied_writes (id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION public.note_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.applied_writes (id) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER note_applied AFTER INSERT OR UPDATE ON public.ledger FOR EACH ROW EXECUTE FUNCTION public.note_applied();
ALTER TABLE public.ledger ENABLE REPLICA TRIGGER note_applied;`;

export interface LedgerLoad {
  /** Stops writing (once, whoever calls it again gets the same answer); resolves with the rows each node wrote. */
  stop(): Promise<number>;
}

/** Each node inserts its own keys (`a-<k>`, `b-<k>`), three rows per transaction, until stopped. */
export async function startLedgerLoad(urls: readonly [string, string]): Promise<LedgerLoad> {
  const writers = await Promise.all(
    urls.map(async (url) => {
      const c = newPgClient({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let writing = true;
  let rounds = 0;
  const loop = (async () => {
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
  let stopped: Promise<number> | undefined;
  const stop = async () => {
    writing = false;
    try {
      await loop;
    } finally {
      await Promise.all(writers.map((c) => c.end()));
    }
    return rounds * 3;
  };
  return { stop: () => (stopped ??= stop()) };
}

type Sql = (text: string) => Promise<pg.QueryResult>;

/**
 * Waits until both nodes hold the `perNode` rows of each node, then checks: the nodes are identical,
 * and each node recorded exactly one write per applied row (nothing lost, nothing applied twice).
 */
export async function checkLedger(sql1: Sql, sql2: Sql, perNode: number): Promise<string | undefined> {
  const count = 'SELECT count(*)::int AS n FROM ledger';
  await waitFor(
    'every row on both nodes',
    async () =>
      (await sql1(count)).rows[0].n === 2 * perNode && (await sql2(count)).rows[0].n === 2 * perNode,
    90_000,
  );
  const rows = 'SELECT id, node, n FROM ledger ORDER BY id';
  if (JSON.stringify((await sql1(rows)).rows) !== JSON.stringify((await sql2(rows)).rows))
    return 'the nodes differ';
  const twice = 'SELECT id, count(*)::int AS n FROM applied_writes GROUP BY id HAVING count(*) > 1 LIMIT 5';
  for (const [node, sql] of [
    ['db1', sql1],
    ['db2', sql2],
  ] as const) {
    const dup = (await sql(twice)).rows;
    if (dup.length > 0) return `applied twice into ${node}: ${JSON.stringify(dup)}`;
    const n = (await sql('SELECT count(*)::int AS n FROM applied_writes')).rows[0].n;
    if (n !== perNode) return `${n} applied writes into ${node}, expected ${perNode}`;
  }
  return undefined;
}
