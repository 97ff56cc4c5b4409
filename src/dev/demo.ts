/**
 * `pgbisync dev demo`: a live two-way sync on the local dev stack. Creates a `demo` database with a
 * sample schema on db1 and db2 (db1 seeded, db2 empty), writes a config, runs setup and the sync in
 * this process, and writes a small workload on both sides while printing a one-line status each
 * second, until Ctrl-C or --duration. At the end it drains, compares both databases and tears down.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { parseConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { SyncRunner } from '../daemon/sync-runner.ts';
import { createLogger } from '../observability/logger.ts';
import { Metrics } from '../observability/metrics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { resolveTables } from '../operate/sync-plan.ts';
import { newPgClient } from '../pg/client.ts';
import { sleep } from '../runtime/sleep.ts';
import type { StackStatus } from './stack.ts';

export const DEMO_DATABASE = 'demo';

/** db1 hands out odd order ids, db2 even ones: serial keys written on both sides never collide. */
const SCHEMA = (node: number) => `
CREATE TABLE public.accounts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner text NOT NULL,
  balance numeric(12,2) NOT NULL DEFAULT 0,
  tags text[],
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE public.orders_id_seq START ${node} INCREMENT 2;
CREATE TABLE public.orders (
  id bigint PRIMARY KEY DEFAULT nextval('public.orders_id_seq'),
  account_id uuid NOT NULL REFERENCES public.accounts (id),
  amount numeric(12,2) NOT NULL,
  status text NOT NULL,
  details jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);`;

const SEED = `
INSERT INTO accounts (owner, balance, tags)
  SELECT 'owner ' || g, g * 10, ARRAY['seed', 'g' || g] FROM generate_series(1, 50) g;
INSERT INTO orders (account_id, amount, status, details)
  SELECT id, balance / 2, 'new', jsonb_build_object('seed', true) FROM accounts;`;

export interface DemoOptions {
  readonly stack: StackStatus;
  readonly durationSec: number | undefined;
  readonly out: (line: string) => void;
}

function demoUrl(serverUrl: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${DEMO_DATABASE}`;
  return url.toString();
}

async function onServer(serverUrl: string, sql: string): Promise<number> {
  const admin = new URL(serverUrl);
  admin.pathname = '/postgres';
  const client = newPgClient({ connectionString: admin.toString() });
  await client.connect();
  try {
    return (await client.query(sql)).rowCount ?? 0;
  } finally {
    await client.end();
  }
}

async function recreateDemo(stack: StackStatus, config: Config, out: (line: string) => void): Promise<void> {
  // A previous demo's slots, origins and topics would block DROP DATABASE or confuse the new run.
  const exists = await Promise.all(
    stack.nodes.map((n) => onServer(n.url, `SELECT 1 FROM pg_database WHERE datname = '${DEMO_DATABASE}'`)),
  );
  if (exists.every((rows) => rows > 0)) {
    await teardown(config, { keepTopics: false }, (line) => out(`previous demo: ${line}`));
  }
  for (const [i, node] of stack.nodes.entries()) {
    await onServer(node.url, `DROP DATABASE IF EXISTS ${DEMO_DATABASE} WITH (FORCE)`);
    await onServer(node.url, `CREATE DATABASE ${DEMO_DATABASE}`);
    const client = newPgClient({ connectionString: demoUrl(node.url) });
    await client.connect();
    try {
      await client.query(SCHEMA(i + 1));
      if (i === 0) await client.query(SEED);
    } finally {
      await client.end();
    }
  }
}

export async function runDemo(o: DemoOptions): Promise<boolean> {
  const { stack, out } = o;
  const yaml = `# written by pgbisync dev demo
kafka:
  brokers: [${stack.kafka.brokers.join(', ')}]
  topicPrefix: pgbisync
nodes:
${stack.nodes.map((n) => `  - { name: ${n.name}, url: "${demoUrl(n.url)}" }`).join('\n')}
tables: [public.accounts, public.orders]
conflicts: { policy: last-writer-wins }
apply: { maxWaitMs: 10 }
http: { port: 0 }
`;
  const configPath = join(stack.stateDir, 'demo.yaml');
  writeFileSync(configPath, yaml);
  const config = parseConfig(yaml, configPath);
  out(`config: ${configPath}`);
  await recreateDemo(stack, config, out);
  out(`databases: ${stack.nodes.map((n) => demoUrl(n.url)).join('  ')}  (db1 seeded, db2 empty)`);
  await setup(config, (line) => out(`setup: ${line}`));

  const tables = await resolveTables(config);
  const metrics = new Metrics();
  const runner = new SyncRunner({ config, tables, log: createLogger('warn'), metrics });
  const sync = new AbortController();
  const writes = new AbortController();
  // First Ctrl-C (or the duration) stops the writes and drains; a second one stops at once.
  const stop = () => (writes.signal.aborted ? sync.abort() : writes.abort());
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const timer = o.durationSec === undefined ? undefined : setTimeout(stop, o.durationSec * 1000);
  let failure: unknown;
  const running = runner.run(sync.signal).catch((error: unknown) => {
    failure = error;
    writes.abort();
  });
  const clients = await Promise.all(
    stack.nodes.map(async (n) => {
      const c = newPgClient({ connectionString: demoUrl(n.url) });
      await c.connect();
      return c;
    }),
  );
  let equal = false;
  try {
    out('sync running: writing on both sides; Ctrl-C to stop');
    for (let tick = 0; !writes.signal.aborted; tick++) {
      await Promise.all(clients.map((c, i) => writeSomething(c, i, tick)));
      if (tick % 4 === 0) out(await statusLine(clients, runner));
      await sleep(250, writes.signal);
    }
    if (failure === undefined) {
      out('writes stopped; draining and comparing the two databases');
      equal = await waitEqual(clients, 30_000, sync.signal);
      out(await statusLine(clients, runner));
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    sync.abort();
    await running;
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    await Promise.all(clients.map((c) => c.end()));
  }
  if (failure !== undefined) throw failure;
  out(equal ? 'db1 and db2 are identical' : 'db1 and db2 DIFFER after 30 s of draining');
  out(`config kept at ${configPath}: try  pgbisync status -c ${configPath}`);
  return equal;
}

async function writeSomething(c: pg.Client, node: number, tick: number): Promise<void> {
  const who = `db${node + 1}`;
  await c.query('BEGIN');
  await c.query(`INSERT INTO accounts (owner, balance, tags) VALUES ($1, $2, $3)`, [
    `${who} customer ${tick}`,
    (tick % 100) + 0.5,
    [who, `t${tick}`],
  ]);
  await c.query(
    `INSERT INTO orders (account_id, amount, status, details)
       SELECT id, 9.99, 'new', jsonb_build_object('by', $1::text, 'tick', $2::int) FROM accounts ORDER BY random() LIMIT 1`,
    [who, tick],
  );
  await c.query('COMMIT');
  // Both sides update the seeded accounts: concurrent updates of the same rows, resolved by last writer.
  await c.query(
    `UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE owner = 'owner ' || (1 + $1::int % 50)`,
    [tick],
  );
  if (tick % 3 === node) {
    await c.query(
      `DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE status = 'new' AND id % 2 = $1)`,
      [(node + 1) % 2],
    );
  }
}

async function counts(c: pg.Client): Promise<string> {
  const r = await c.query<{ a: string; o: string }>(
    'SELECT (SELECT count(*) FROM accounts)::text AS a, (SELECT count(*) FROM orders)::text AS o',
  );
  return `${r.rows[0]!.a} accounts ${r.rows[0]!.o} orders`;
}

async function statusLine(clients: pg.Client[], runner: SyncRunner): Promise<string> {
  const sides = await Promise.all(clients.map(counts));
  const applied = [...runner.states.values()]
    .filter((s) => s.name.startsWith('apply'))
    .map((s) => `${s.name.slice(6)} ${s.transactions ?? 0} txns`)
    .join(', ');
  return `db1: ${sides[0]} | db2: ${sides[1]} | applied ${applied}`;
}

async function fingerprint(c: pg.Client): Promise<string> {
  const r = await c.query<{ h: string }>(
    `SELECT md5(string_agg(x, '|' ORDER BY x)) AS h FROM (
       SELECT to_jsonb(a)::text AS x FROM accounts a UNION ALL SELECT to_jsonb(o)::text FROM orders o) t`,
  );
  return r.rows[0]!.h;
}

async function waitEqual(clients: pg.Client[], timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !signal.aborted) {
    const [x, y] = await Promise.all(clients.map(fingerprint));
    if (x === y) return true;
    await sleep(250);
  }
  return false;
}
