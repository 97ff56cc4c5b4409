/**
 * `pgbisync run` under torture: a child process that the fault schedule kills (SIGKILL), freezes
 * (SIGSTOP/SIGCONT) and restarts. An exit that no fault caused is a finding: the daemon must survive
 * whatever happens to the nodes and the broker. With `--instances 2` two of them share the config
 * (docs/deployment.md), each under its own instance name.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const CLI = resolve(import.meta.dirname, '..', 'bin', 'pgbisync.js');

export class Daemon {
  readonly #configPath: string;
  readonly #logPath: string;
  readonly #instance: string | undefined;
  #child: ChildProcess | undefined;
  #expectExit = false;
  #frozen = false;
  starts = 0;
  /** Exits that no fault caused, with the log's last lines. */
  readonly unexpectedExits: string[] = [];

  constructor(configPath: string, logPath: string, instance?: string) {
    this.#configPath = configPath;
    this.#logPath = logPath;
    this.#instance = instance;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  start(): void {
    if (this.#child !== undefined) return;
    const out = openSync(this.#logPath, 'a');
    const child = spawn(process.execPath, [CLI, 'run', '-c', this.#configPath], {
      stdio: ['ignore', out, out],
      env: {
        ...process.env,
        PGBISYNC_LOG_LEVEL: process.env.PGBISYNC_LOG_LEVEL ?? 'info',
        ...(this.#instance === undefined ? {} : { PGBISYNC_INSTANCE: this.#instance }),
      },
    });
    closeSync(out);
    this.starts++;
    this.#child = child;
    this.#expectExit = false;
    child.once('exit', (code, signal) => {
      if (this.#child === child) this.#child = undefined;
      if (!this.#expectExit) {
        const tail = readFileSync(this.#logPath, 'utf8').split('\n').slice(-15).join('\n');
        this.unexpectedExits.push(
          `pgbisync run exited by itself (code ${code}, signal ${signal}); log ends:\n${tail}`,
        );
      }
    });
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#expectExit = true;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.#frozen = false;
  }

  /** SIGHUP: `pgbisync run` reads its config again (delivered once thawed, if frozen). */
  hup(): void {
    this.#child?.kill('SIGHUP');
  }

  /** How many times the log says a reload succeeded (`config reloaded`) or was refused. */
  reloads(): { readonly done: number; readonly refused: number } {
    const log = readFileSync(this.#logPath, 'utf8');
    return {
      done: log.split('config reloaded').length - 1,
      refused: log.split('reload refused').length - 1,
    };
  }

  freeze(): void {
    if (this.#child === undefined || this.#frozen) return;
    this.#child.kill('SIGSTOP');
    this.#frozen = true;
  }

  thaw(): void {
    if (this.#child === undefined || !this.#frozen) return;
    this.#child.kill('SIGCONT');
    this.#frozen = false;
  }

  /** SIGTERM (graceful), SIGKILL after a grace period. */
  async stop(graceMs = 20_000): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.thaw();
    this.#expectExit = true;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
