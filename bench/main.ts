/**
 * `npm run bench` (scripts/bench.sh starts the stack and calls this): the same workload through
 * pgbisync one way, native logical replication, the seed's Debezium connector + JDBC sink on Kafka Connect
 * (one way), pgbisync both ways, and the snapshot comparison, one after the other (never two
 * replications at once). Prints a table and writes bench/results/latest.json. A scenario that fails is
 * reported as failed (table, JSON, exit code 1); the others still run.
 *
 *   node bench/main.ts --state-dir .state/bench
 *
 * Environment: see bench/settings.ts (BENCH_SCALE, BENCH_ONLY, BENCH_CPU_PROF=1, ...); BENCH_CLI=<other
 * checkout>/bin/pgbisync.js measures another build of pgbisync with the same harness.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { withClient } from './db.ts';
import { DebeziumPipeline } from './debezium.ts';
import { runHugeTxn } from './huge-txn.ts';
import { NativeReplication } from './native-replication.ts';
import { PgbisyncProcess } from './pgbisync-process.ts';
import { type BenchResults, buildJson, type Environment, formatTable } from './report.ts';
import { runScenario, type StackUrls } from './scenario.ts';
import { mergeConfig, readSettings } from './settings.ts';
import { runSnapshot } from './snapshot.ts';

interface StackStatus {
  readonly nodes: readonly { name: string; url: string; running: boolean }[];
  readonly kafka: { readonly brokers: readonly string[]; readonly running: boolean; readonly pid?: number };
  /** Present when the stack was started with --connect (scripts/bench.sh does when debezium is selected). */
  readonly connect?: { readonly url: string; readonly running: boolean; readonly pid?: number };
}

const ROOT = resolve(import.meta.dirname, '..');
const RESULTS = join(ROOT, 'bench', 'results');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'state-dir': { type: 'string', default: '.state/bench' } } });
  const stateDir = resolve(values['state-dir']!);
  const settings = readSettings();
  const stack = JSON.parse(devStatus(stateDir)) as StackStatus;
  if (!stack.kafka.running || stack.nodes.some((n) => !n.running)) {
    throw new Error(
      `the bench stack in ${stateDir} is not running (pgbisync dev up --state-dir ${stateDir})`,
    );
  }
  const urls: StackUrls = { db1: stack.nodes[0]!.url, db2: stack.nodes[1]!.url };
  const workDir = join(stateDir, 'runs');
  const profDir = settings.cpuProfile ? join(RESULTS, 'prof') : undefined;
  if (profDir !== undefined) mkdirSync(profDir, { recursive: true });
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const pgbisync =
    (label: string, tables: string[], config: Record<string, unknown> = {}) =>
    (db1: string, db2: string) =>
      new PgbisyncProcess({
        label,
        nodes: [
          { name: 'db1', url: db1 },
          { name: 'db2', url: db2 },
        ],
        brokers: stack.kafka.brokers,
        brokerPid: stack.kafka.pid,
        tables,
        workDir,
        cpuProfileDir: profDir,
        configOverrides: mergeConfig(settings.pgbisyncConfig, config),
      });
  const syncTables = ['public.bulk', 'public.steady', 'public.marker'];
  const started = new Date();
  const t0 = performance.now();
  const loadAtStart = loadavg()[0]!;
  const postgres = await withClient(urls.db1, async (c) => {
    const r = await c.query<{ v: string }>('SELECT version() AS v');
    return r.rows[0]!.v.split(' on ')[0]!;
  });
  log(`bench settings: ${JSON.stringify({ ...settings, only: [...settings.only] })}`);

  const results: {
    -readonly [K in keyof BenchResults]: BenchResults[K];
  } = {};
  const failed: Record<string, string> = {};
  /** Runs a scenario; a failure is recorded (and reported) instead of ending the bench. */
  const attempt = async <T>(name: string, scenario: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await scenario();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      failed[name] = message;
      log(`  scenario ${name} FAILED: ${message}`);
      return undefined;
    }
  };
  if (settings.only.has('one-way')) {
    log('pgbisync, writes on db1 only (one direction):');
    results.oneWay = await attempt('one-way', () =>
      runScenario(urls, settings, 1, pgbisync('pgbisync one-way', syncTables), log),
    );
  }
  if (settings.only.has('one-way-schemaless')) {
    log('pgbisync, one direction, schemaless events (capture.schemasEnabled: false):');
    results.oneWaySchemaless = await attempt('one-way-schemaless', () =>
      runScenario(
        urls,
        settings,
        1,
        pgbisync('pgbisync one-way schemaless', syncTables, { capture: { schemasEnabled: false } }),
        log,
      ),
    );
  }
  if (settings.only.has('native')) {
    log('native logical replication db1 -> db2:');
    results.native = await attempt('native', () =>
      runScenario(
        urls,
        settings,
        1,
        (db1, db2) =>
          new NativeReplication({ sourceUrl: db1, targetUrl: db2, tables: ['bulk', 'steady', 'marker'] }),
        log,
      ),
    );
  }
  if (settings.only.has('debezium')) {
    log('Debezium PostgreSQL connector + Debezium JDBC sink on Kafka Connect, db1 -> db2:');
    const connect = stack.connect;
    results.debezium = await attempt('debezium', async () => {
      if (connect?.running !== true || connect.pid === undefined) {
        throw new Error(
          `Kafka Connect is not running in ${stateDir} (scripts/bench.sh starts it with dev up --connect when BENCH_ONLY selects debezium)`,
        );
      }
      return runScenario(
        urls,
        settings,
        1,
        (db1, db2) =>
          new DebeziumPipeline({
            sourceUrl: db1,
            targetUrl: db2,
            tables: syncTables,
            brokers: stack.kafka.brokers,
            brokerPid: stack.kafka.pid,
            connectUrl: connect.url,
            connectPid: connect.pid!,
          }),
        log,
      );
    });
  }
  if (settings.only.has('two-way')) {
    log('pgbisync, writes on db1 and db2 at once (both directions):');
    results.twoWay = await attempt('two-way', () =>
      runScenario(urls, settings, 2, pgbisync('pgbisync two-way', syncTables), log),
    );
  }
  if (settings.only.has('snapshot')) {
    log('snapshot:');
    results.snapshot = await attempt('snapshot', () =>
      runSnapshot(
        urls,
        settings.snapshotRows,
        pgbisync('pgbisync snapshot', ['public.snap', 'public.marker']),
        log,
      ),
    );
  }
  if (settings.only.has('huge-txn')) {
    log('huge transactions (one insert, then one update, of BENCH_HUGE_ROWS rows):');
    results.hugeTxn = await attempt('huge-txn', () =>
      runHugeTxn(
        urls,
        settings.hugeRows,
        settings.hugePayloadBytes,
        settings.hugeKill,
        pgbisync('pgbisync huge-txn', ['public.huge', 'public.marker']),
        (db1, db2) => new NativeReplication({ sourceUrl: db1, targetUrl: db2, tables: ['huge', 'marker'] }),
        log,
      ),
    );
    if (results.hugeTxn?.consistent === false) {
      failed['huge-txn'] =
        `checks failed: ${JSON.stringify({ ...results.hugeTxn.checks, kill: results.hugeTxn.kill })}`;
    }
  }
  results.failed = failed;
  const env: Environment = {
    cpus: cpus().length,
    loadAverage: { start: loadAtStart, end: loadavg()[0]! },
    node: process.versions.node,
    postgres,
    startedAt: started.toISOString(),
    seconds: (performance.now() - t0) / 1000,
  };
  const json = buildJson(settings, env, results);
  mkdirSync(RESULTS, { recursive: true });
  const text = `${JSON.stringify(json, null, 2)}\n`;
  writeFileSync(join(RESULTS, 'latest.json'), text);
  writeFileSync(join(RESULTS, `${started.toISOString().replace(/[:.]/g, '-')}.json`), text);
  process.stdout.write(`\n${formatTable(settings, env, results)}\n\nwrote bench/results/latest.json\n`);
  if (Object.keys(failed).length > 0) {
    process.stderr.write(`bench: scenario(s) failed: ${Object.keys(failed).join(', ')}\n`);
    process.exitCode = 1;
  }
}

/** `dev status --json`; it exits 3 when a part is down, still printing the status (checked by the caller). */
function devStatus(stateDir: string): string {
  const args = [join(ROOT, 'bin', 'pgbisync.js'), 'dev', 'status', '--json', '--state-dir', stateDir];
  try {
    return execFileSync(process.execPath, args, { encoding: 'utf8' });
  } catch (error) {
    const e = error as { status?: number; stdout?: string };
    if (e.status === 3 && e.stdout) return e.stdout;
    throw error;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
