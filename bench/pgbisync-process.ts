/**
 * pgbisync under test: the real CLI (`setup`, `run`, `teardown`) on a config written for the bench
 * database, as child processes. CPU counted: the `pgbisync run` process, the Kafka broker, and the
 * PostgreSQL backends pgbisync connects to (walsenders of the captures, the appliers' sessions, the
 * snapshot reader). Memory: the `pgbisync run` process's peak RSS (VmHWM; after `kill()` and `restart()`,
 * the larger of the two processes').
 *
 * Both directions always run (a two-node config); the one-way scenario simply writes on db1 only.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { connect, sleep } from './db.ts';
import { ProcessGroup } from './proc-stats.ts';
import type { CpuBreakdown, ReplicationFigures, ReplicationUnderTest } from './replication.ts';
import { mergeConfig } from './settings.ts';

const run = promisify(execFile);
/** The CLI under test; BENCH_CLI points at another checkout's bin/pgbisync.js (before/after runs). */
const CLI = resolve(process.env.BENCH_CLI ?? resolve(import.meta.dirname, '..', 'bin', 'pgbisync.js'));
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export interface PgbisyncOptions {
  readonly label: string;
  /** Bench database URLs of db1 and db2. */
  readonly nodes: readonly { name: string; url: string }[];
  readonly brokers: readonly string[];
  readonly brokerPid: number | undefined;
  readonly tables: readonly string[];
  /** Where the config and the process's log go. */
  readonly workDir: string;
  /** Folder for a V8 CPU profile of the run process (--cpu-prof), if wanted. */
  readonly cpuProfileDir?: string | undefined;
  /** Merged into the written config (BenchSettings.pgbisyncConfig). */
  readonly configOverrides?: Readonly<Record<string, unknown>>;
}

export class PgbisyncProcess implements ReplicationUnderTest {
  readonly label: string;
  readonly #o: PgbisyncOptions;
  readonly #configPath: string;
  readonly #logPath: string;
  readonly #node = new ProcessGroup();
  readonly #kafka = new ProcessGroup();
  readonly #backends = new ProcessGroup();
  #child: ChildProcess | undefined;
  #exited: Promise<number | null> | undefined;
  #admins: pg.Client[] = [];
  #stopping = false;
  readonly #failure = Promise.withResolvers<never>();
  /** performance.now() when the run process was spawned. */
  spawnedAt = 0;

  constructor(options: PgbisyncOptions) {
    this.label = options.label;
    this.#o = options;
    mkdirSync(options.workDir, { recursive: true });
    const slug = options.label.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    this.#configPath = join(options.workDir, `${slug}.yaml`);
    this.#logPath = join(options.workDir, `${slug}.log`);
    const prefix = `bench_${slug.replace(/-/g, '_')}_${Date.now().toString(36)}`;
    const config = {
      kafka: { brokers: options.brokers, topicPrefix: prefix },
      nodes: options.nodes.map((n) => ({ name: n.name, url: n.url })),
      tables: options.tables,
      http: { port: 0 },
    };
    // JSON is YAML: the config loader reads it as written.
    const merged = mergeConfig(config, options.configOverrides ?? {});
    writeFileSync(this.#configPath, `# written by npm run bench\n${JSON.stringify(merged, null, 2)}\n`);
  }

  get failure(): Promise<never> {
    return this.#failure.promise;
  }

  get logPath(): string {
    return this.#logPath;
  }

  async start(): Promise<void> {
    await run(process.execPath, [CLI, 'setup', '-c', this.#configPath]);
    this.#admins = await Promise.all(this.#o.nodes.map((n) => connect(n.url)));
    if (this.#o.brokerPid !== undefined) this.#kafka.add([this.#o.brokerPid]);
    writeFileSync(this.#logPath, '');
    this.spawnedAt = performance.now();
    await this.#spawn();
  }

  /**
   * SIGKILLs the run process (a crash: no shutdown of any kind) and waits until it is gone; its exit is
   * not a failure. `restart()` starts it again.
   */
  async kill(): Promise<void> {
    this.#node.poll();
    const child = this.#child;
    const exited = this.#exited;
    this.#child = undefined;
    child?.kill('SIGKILL');
    await exited;
  }

  /** The VmHWM (MiB) of each run process in turn (more than one after `kill()` and `restart()`). */
  get processPeaksRssMb(): number[] {
    return this.#node.peaksRssMb;
  }

  /** Starts the run process again on the same config (after `kill()`); returns once it runs. */
  async restart(): Promise<void> {
    await this.#spawn();
  }

  /** Starts `pgbisync run`, its output appended to the log; returns once it logs that it runs. */
  async #spawn(): Promise<void> {
    const logFrom = statSync(this.#logPath).size;
    const log = openSync(this.#logPath, 'a');
    const profile =
      this.#o.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${this.#o.cpuProfileDir}`];
    const child = spawn(
      process.execPath,
      [...profile, CLI, 'run', '-c', this.#configPath, '--http-port', '0'],
      {
        stdio: ['ignore', log, log],
        env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json' },
      },
    );
    closeSync(log);
    this.#child = child;
    this.#exited = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    this.#failure.promise.catch(() => undefined);
    void this.#exited.then((code) => {
      if (!this.#stopping && this.#child === child)
        this.#failure.reject(new Error(`pgbisync run exited (${code}); see ${this.#logPath}`));
    });
    this.#node.add([child.pid!]);
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (!readFileSync(this.#logPath).subarray(logFrom).includes('"msg":"running"')) {
      if (child.exitCode !== null) throw new Error(`pgbisync run exited early; see ${this.#logPath}`);
      if (performance.now() > deadline) throw new Error(`pgbisync run not ready; see ${this.#logPath}`);
      await sleep(50);
    }
  }

  /** Adds pgbisync's PostgreSQL backends (they appear as components connect). */
  async #findBackends(): Promise<void> {
    for (const admin of this.#admins) {
      const r = await admin.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgbisync-%'",
      );
      this.#backends.add(r.rows.map((row) => row.pid));
    }
  }

  async poll(): Promise<void> {
    await this.#findBackends();
    this.#node.poll();
    this.#kafka.poll();
    this.#backends.poll();
  }

  cpu(): CpuBreakdown {
    return {
      pgbisync: this.#node.cpuSeconds(),
      kafka: this.#kafka.cpuSeconds(),
      postgres: this.#backends.cpuSeconds(),
    };
  }

  /** True while the run process lives (a crash fails the scenario instead of hanging it). */
  get alive(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async stop(): Promise<ReplicationFigures> {
    this.#stopping = true;
    await this.poll();
    const figures = { cpu: this.cpu(), peakRssMb: this.#node.maxPeakRssMb };
    if (this.#child !== undefined && this.alive) {
      this.#child.kill('SIGTERM');
      const exited = await Promise.race([this.#exited, sleep(STOP_TIMEOUT_MS).then(() => 'timeout')]);
      if (exited === 'timeout') {
        this.#child.kill('SIGKILL');
        await this.#exited;
      }
    }
    await Promise.all(this.#admins.map((c) => c.end()));
    await run(process.execPath, [CLI, 'teardown', '-c', this.#configPath]);
    return figures;
  }
}
