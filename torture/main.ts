/**
 * `npm run torture -- [--seed N] [--duration S] [--nodes 2|3] [--instances 1|2] [--faults list|all|none] [--workload list|all]`
 * (scripts/torture.sh brings up a stack of its own and calls this). Random transactions on every node
 * while faults hit the daemon, the broker, the nodes and the network; then a drain, and the independent
 * checker (torture/checker.ts). Prints one summary line, writes bench/results/torture-<seed>.json, and
 * exits 1 when any check failed. A failing seed reproduces its workload and fault schedule with the
 * same --seed (the interleaving of the sessions is the machine's).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { DevStack } from '../src/dev/stack.ts';
import { FaultProxy } from '../src/testing/fault-proxy.ts';
import { addTableLater } from './add-table.ts';
import { type CheckNode, checkData, checkQuiet, type Finding } from './checker.ts';
import { Daemon } from './daemon.ts';
import { Servers } from './failover.ts';
import { FAULT_KINDS, type FaultKind, faultsEnded, inject, schedule } from './faults.ts';
import { Random } from './random.ts';
import { TABLES } from './schema.ts';
import {
  COMMIT_MARKERS_DDL,
  History,
  runWorkload,
  WORKLOAD_KINDS,
  type WorkloadKind,
  withSession,
} from './workload.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'pgbisync.js');
const exec = promisify(execFile);

const USAGE = `usage: npm run torture -- [--seed N | --seeds "N M ..."] [--duration S] [--nodes 2|3] [--instances 1|2]
  [--faults list|all|none] [--workload list|all] [--clients N] [--big-rows N] [--drain-timeout S] [--quiet-ms MS] [--keep]
faults: ${FAULT_KINDS.join(', ')}
workload: ${WORKLOAD_KINDS.join(', ')}
Environment (scripts/torture.sh): TORTURE_PORT_BASE (24100), TORTURE_STATE_DIR (.state/torture), TORTURE_PG_MAJOR (18),
TORTURE_STANDBY=0 (no standby: no failover fault), TORTURE_KEEP_STACK=1 (leave the stack running).`;

function list<T extends string>(value: string, all: readonly T[], what: string): T[] {
  if (value === 'all') return [...all];
  if (value === 'none') return [];
  const items = value.split(',').map((s) => s.trim()) as T[];
  for (const i of items)
    if (!all.includes(i)) throw new Error(`--${what}: unknown ${i} (one of ${all.join(', ')})`);
  return items;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      duration: { type: 'string', default: '60' },
      nodes: { type: 'string', default: '2' },
      // Two `pgbisync run` on one config: kills and freezes hit one of them, the other takes over.
      instances: { type: 'string', default: '1' },
      faults: { type: 'string', default: 'all' },
      workload: { type: 'string', default: 'all' },
      clients: { type: 'string', default: '3' },
      'big-rows': { type: 'string', default: '20000' },
      'drain-timeout': { type: 'string', default: '300' },
      'quiet-ms': { type: 'string', default: '10000' },
      'state-dir': { type: 'string', default: '.state/torture' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  const seed = Number(values.seed);
  const durationMs = Number(values.duration) * 1000;
  const nodeCount = Number(values.nodes);
  if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed: a non-negative integer');
  if (nodeCount !== 2 && nodeCount !== 3) throw new Error('--nodes: 2 or 3');
  const instanceCount = Number(values.instances);
  if (instanceCount !== 1 && instanceCount !== 2) throw new Error('--instances: 1 or 2');
  const faultKinds = list<FaultKind>(values.faults!, FAULT_KINDS, 'faults');
  const workloadKinds = new Set(list<WorkloadKind>(values.workload!, WORKLOAD_KINDS, 'workload'));
  workloadKinds.add('basic');
  const stateDir = resolve(values['state-dir']!);
  const stack = DevStack.fromStateDir(stateDir);
  if (stack === undefined) throw new Error(`no stack in ${stateDir}: run scripts/torture.sh (it starts one)`);
  takeLock(stateDir);
  const runDir = join(stateDir, 'runs', String(seed));
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const started = Date.now();
  const log = (line: string) =>
    process.stderr.write(`[torture ${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
  const rnd = new Random(seed, 'torture');
  const faults = schedule(rnd.fork('faults'), faultKinds, durationMs, nodeCount);
  log(
    `seed ${seed}, ${durationMs / 1000} s, ${nodeCount} nodes, workload ${[...workloadKinds].join(',')}, faults: ${faults.map((f) => `${f.kind}@${(f.atMs / 1000).toFixed(0)}s`).join(' ') || 'none'}`,
  );

  const servers = new Servers(stack);
  await servers.prepare(log);
  // Node i lives on server i % 2: a third node shares the first server (its origins, its WAL). Its
  // addresses change when its server fails over to the standby.
  const serverOf = (i: number) => i % stack.servers.length;
  const addressOf = (i: number) => {
    const server = servers.server(serverOf(i));
    return {
      url: serverUrl(server.url, `torture_${seed}_${i + 1}`),
      admin: serverUrl(server.url, 'postgres'),
    };
  };
  const nodes: { name: string; url: string; admin: string }[] = Array.from({ length: nodeCount }, (_, i) => ({
    name: `n${i + 1}`,
    ...addressOf(i),
  }));
  const failsOver = (i: number) => servers.canFailOver && serverOf(i) === 0;
  // The dev stack trades durability for speed (synchronous_commit = off): a crashed server would lose
  // transactions the workload saw commit, which is no fault of the sync. Commits here are durable
  // against a server crash (the WAL reaches the kernel before COMMIT returns; fsync stays off, so an OS
  // crash is not covered, and none is injected).
  for (const n of nodes)
    await withSession(n.admin, async (c) => {
      await c.query('ALTER SYSTEM SET synchronous_commit = on');
      await c.query('SELECT pg_reload_conf()');
    });
  for (const [i, n] of nodes.entries()) {
    const db = new URL(n.url).pathname.slice(1);
    await servers.dropDatabase(serverOf(i), db, log);
    await withSession(n.admin, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}`));
  }
  for (const [i, n] of nodes.entries()) {
    const ddl = [...TABLES.map((t) => (typeof t.ddl === 'string' ? t.ddl : t.ddl(i))), COMMIT_MARKERS_DDL];
    await withSession(n.url, (c) => c.query(ddl.join(';\n')));
  }

  // The daemon reaches each node through a proxy, and a node that can fail over through a second one
  // to the standby, both in its URL (target_session_attrs=read-write picks the primary).
  const proxies = await Promise.all(
    nodes.map(async (_, i) => [
      await FaultProxy.start({ host: '127.0.0.1', port: stack.servers[serverOf(i)]!.spec.port }),
      ...(failsOver(i)
        ? [await FaultProxy.start({ host: '127.0.0.1', port: stack.standby!.spec.port })]
        : []),
    ]),
  );
  // The daemon reaches the broker through a proxy too, where the stack has a listener for one: it
  // advertises the proxy's port, so the clients stay on the proxy after bootstrapping.
  const proxied = stack.options.kafkaProxiedPort;
  const kafkaProxy =
    proxied === undefined
      ? undefined
      : await FaultProxy.start({ host: '127.0.0.1', port: proxied }, proxied + 1);
  const topicPrefix = `torture${seed}x${started.toString(36)}`;
  const lateTable = workloadKinds.has('addtable');
  let lateSynced = !lateTable;
  const configPath = join(runDir, 'pgbisync.yaml');
  const config = {
    kafka: { brokers: [`127.0.0.1:${kafkaProxy?.port ?? stack.options.kafkaPort}`], topicPrefix },
    nodes: nodes.map((n, i) => {
      const u = new URL(n.url);
      const hosts = proxies[i]!.map((p) => `127.0.0.1:${p.port}`).join(',');
      const url = `${u.protocol}//${u.username}@${hosts}${u.pathname}${failsOver(i) ? '?target_session_attrs=read-write' : ''}`;
      return { name: n.name, url, ...(failsOver(i) ? { failoverSlot: true } : {}) };
    }),
    // With `addtable`, t_late is added while the sync runs (./add-table.ts).
    tables: TABLES.filter((t) => !(lateTable && t.name === 't_late')).map((t) => `public.${t.name}`),
    // Small pieces: the one big transaction per node (--big-rows) crosses in many pieces of one open
    // target transaction, under every fault.
    apply: { maxWaitMs: 10, maxBatchRows: 2000 },
    http: { port: 0 },
  };
  writeFileSync(
    configPath,
    `# written by npm run torture (seed ${seed})\n${JSON.stringify(config, null, 2)}\n`,
  );
  await exec(process.execPath, [CLI, 'setup', '-c', configPath], { cwd: ROOT });
  const daemons =
    instanceCount === 1
      ? [new Daemon(configPath, join(runDir, 'pgbisync.log'))]
      : [1, 2].map((i) => new Daemon(configPath, join(runDir, `pgbisync-${i}.log`), `torture-${i}`));
  for (const daemon of daemons) daemon.start();
  // Interrupted (Ctrl-C, a CI timeout): the daemons must not outlive the run.
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      void Promise.all(daemons.map((d) => d.kill())).finally(() => process.exit(130));
    });

  const history = new History(join(runDir, 'history.jsonl'));
  const stopWrites = new AbortController();
  const stopFaults = new AbortController();
  const workloads = nodes.map((n, i) =>
    runWorkload({
      node: n.name,
      nodeIndex: i,
      url: () => n.url,
      clients: Number(values.clients),
      kinds: workloadKinds,
      bigRows: Number(values['big-rows']),
      random: rnd.fork(`workload-${n.name}`),
      history,
      signal: stopWrites.signal,
      lateSynced: () => lateSynced,
    }),
  );
  const adding = lateTable
    ? addTableLater({
        configPath,
        config,
        table: 'public.t_late',
        daemons,
        atMs: Math.round(durationMs * 0.4),
        log,
        signal: stopWrites.signal,
      }).then((problem) => {
        if (problem === undefined) lateSynced = true;
        return problem;
      })
    : Promise.resolve(undefined);
  const underWay = new Set<string>();
  const injecting = inject(
    faults,
    {
      daemons,
      servers,
      serverOf,
      proxies,
      kafkaProxy,
      nodeUrl: (i) => nodes[i]!.url,
      failedOver: () => {
        nodes.forEach((n, i) => {
          if (!failsOver(i)) return;
          Object.assign(n, addressOf(i));
        });
      },
      nodeNames: nodes.map((n) => n.name),
      configPath,
      clockLibrary: existsSync(join(stateDir, 'clock-offset.so'))
        ? join(stateDir, 'clock-offset.so')
        : undefined,
      log,
    },
    started,
    stopFaults.signal,
    underWay,
  );
  await new Promise((r) => setTimeout(r, durationMs));
  stopWrites.abort();
  await Promise.all(workloads);
  const addProblem = await adding;
  log(`writes stopped: ${JSON.stringify(history.counts)}; waiting for the faults to end`);
  const faultFailures = await faultsEnded(injecting, underWay, log, () => stopFaults.abort());
  for (const p of proxies.flat()) p.set({ kind: 'pass' });
  kafkaProxy?.set({ kind: 'pass' });
  for (const daemon of daemons) daemon.thaw();
  await servers.up();
  for (const daemon of daemons) if (!daemon.running) daemon.start();

  const findings: Finding[] = [];
  if (addProblem !== undefined) findings.push({ check: 'addtable', detail: addProblem });
  for (const detail of faultFailures) findings.push({ check: 'fault', detail });
  for (
    let i = 0;
    i < 60 && (await history.resolveInDoubt((name) => nodes.find((n) => n.name === name)!.url)) > 0;
    i++
  )
    await new Promise((r) => setTimeout(r, 1000));
  if (history.inDoubt.length > 0)
    findings.push({
      check: 'drain',
      detail: `${history.inDoubt.length} in-doubt commits could not be resolved`,
    });

  const drainStarted = Date.now();
  const drained = await drain(nodes, `${seed}-${started}`, Number(values['drain-timeout']) * 1000);
  log(drained ? `drained in ${((Date.now() - drainStarted) / 1000).toFixed(1)} s` : 'did not drain');
  if (!drained)
    findings.push({
      check: 'drain',
      detail: `the nodes did not see each other's fence rows within ${values['drain-timeout']} s (see ${join(runDir, instanceCount === 1 ? 'pgbisync.log' : 'pgbisync-*.log')})`,
    });
  const data = await checkData(nodes, history.transactions);
  findings.push(...data.findings);
  if (drained)
    findings.push(
      ...(await checkQuiet(nodes, config.kafka.brokers, topicPrefix, Number(values['quiet-ms']))),
    );
  for (const exit of daemons.flatMap((d) => d.unexpectedExits))
    findings.push({ check: 'daemon', detail: exit });

  await Promise.all(daemons.map((d) => d.stop()));
  // --keep: the databases stay as the run left them, pgbisync's schema (tombstones, conflicts) included.
  if (!values.keep)
    await exec(process.execPath, [CLI, 'teardown', '-c', configPath], { cwd: ROOT }).catch((error: unknown) =>
      findings.push({ check: 'daemon', detail: `teardown failed: ${String(error)}` }),
    );
  await Promise.all(proxies.flat().map((p) => p.close()));
  await kafkaProxy?.close();
  if (!values.keep) {
    for (const [i, n] of nodes.entries())
      await servers.dropDatabase(serverOf(i), new URL(n.url).pathname.slice(1), log);
  }

  const ok = findings.length === 0;
  const result = {
    seed,
    ok,
    durationS: durationMs / 1000,
    nodes: nodeCount,
    instances: instanceCount,
    workload: [...workloadKinds],
    faults,
    counts: history.counts,
    rows: data.rows,
    daemonStarts: daemons.reduce((n, d) => n + d.starts, 0),
    drainS: (Date.now() - drainStarted) / 1000,
    findings,
    runDir,
  };
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench', 'results', `torture-${seed}.json`),
    `${JSON.stringify(result, null, 2)}\n`,
  );
  for (const f of findings.slice(0, 30)) {
    log(`FAIL ${f.check}${f.table ? ` ${f.table}` : ''}${f.key ? ` ${f.key}` : ''}: ${f.detail}`);
    for (const h of f.history ?? []) log(`    ${h}`);
  }
  console.log(
    `torture seed ${seed}: ${ok ? 'PASS' : 'FAIL'} (${history.counts.committed} transactions, ${faults.length} faults, ${findings.length} findings; rerun: npm run torture -- --seed ${seed} --duration ${durationMs / 1000} --nodes ${nodeCount} --instances ${instanceCount} --faults ${faultKinds.join(',') || 'none'} --workload ${[...workloadKinds].join(',')})`,
  );
  return ok ? 0 : 1;
}

/** One run per state folder at a time: two runs would write the same databases and topics. */
function takeLock(stateDir: string): void {
  const lock = join(stateDir, 'torture.pid');
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8'));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {}
    if (alive && pid !== process.pid) throw new Error(`another torture run (pid ${pid}) uses ${stateDir}`);
  }
  writeFileSync(lock, String(process.pid));
  process.once('exit', () => rmSync(lock, { force: true }));
}

function serverUrl(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Each node writes a fence row; drained when every node holds every node's row. Twice: a capture that
 * copies its tables again (an initial copy interrupted by a kill and read anew at the restart) may copy
 * the first fence row with the fence table, ahead of the rest of the copy and of the changes before it
 * (seed 5 met it: the checker ran while the copy was still arriving). The second fence row is written
 * once the first arrived everywhere, so after any such copy read the fence table: it travels behind it.
 */
async function drain(nodes: readonly CheckNode[], token: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (const round of [1, 2]) {
    if (!(await fence(nodes, `${token}-${round}`, deadline))) return false;
  }
  return true;
}

async function fence(nodes: readonly CheckNode[], token: string, deadline: number): Promise<boolean> {
  for (const n of nodes)
    await withSession(n.url, (c) =>
      c.query('INSERT INTO fence VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET token = EXCLUDED.token', [
        n.name,
        token,
      ]),
    );
  while (Date.now() < deadline) {
    const seen = await Promise.all(
      nodes.map((n) =>
        withSession(
          n.url,
          async (c) => (await c.query('SELECT 1 FROM fence WHERE token = $1', [token])).rowCount ?? 0,
        ).catch(() => 0),
      ),
    );
    if (seen.every((s) => s === nodes.length)) return true;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return false;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
