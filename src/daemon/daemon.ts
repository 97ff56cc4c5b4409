/**
 * `pgbisync run` as a process: the supervised components (./sync-runner.ts), the HTTP endpoints, the lag
 * sampler, the tombstone pruner and the stamp keeper, and reloading the config while running.
 *
 * Reload (SIGHUP, `pgbisync reload`, POST /reload): the config file is read again and checked; a file
 * that does not load, or nodes whose tables do not resolve, leave the running sync as it is (the
 * reload is refused, with the error and its fix). Otherwise `setup` runs for the new config (the
 * publications gain the added tables, their triggers are made; a removed table loses pgbisync's
 * triggers and tombstones, its data stays), and every component is restarted with it: each capture then
 * copies the tables added since its last copy (../source/added-tables.ts) while the nodes take writes,
 * and streams on from its slot. The restart is a graceful stop (acknowledged positions are kept), so
 * nothing is applied twice or lost. The HTTP port stays the one the process started with.
 */
import { loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { CatchUpTracker } from '../operate/caught-up.ts';
import { sampleLag } from '../operate/lag-sampler.ts';
import { setup } from '../operate/setup.ts';
import { keepStamps } from '../operate/stamp-keeper.ts';
import { resolveTables } from '../operate/sync-plan.ts';
import { pruneTombstones } from '../operate/tombstone-pruner.ts';
import { describeError, PgbisyncError } from '../runtime/errors.ts';
import { type HttpServer, type ReloadOutcome, startHttpServer } from './http-server.ts';
import { SyncRunner } from './sync-runner.ts';

export interface DaemonOptions {
  /** The file the config was read from, read again at each reload. */
  readonly configFile: string;
  readonly config: Config;
  readonly tables: readonly string[];
  readonly httpPort: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Called once the HTTP server listens, with its address and this instance's name. */
  readonly onListening?: (url: string, instance: string) => void;
}

interface Generation {
  readonly config: Config;
  readonly tables: readonly string[];
}

export class Daemon {
  readonly #o: DaemonOptions;
  #current: Generation;
  #runner: SyncRunner;
  /** A reloaded config waiting for the running generation to stop. */
  #next: Generation | undefined;
  #stopGeneration: AbortController | undefined;
  /** Reloads run one at a time, in the order asked. */
  #reloads: Promise<unknown> = Promise.resolve();

  constructor(o: DaemonOptions) {
    this.#o = o;
    this.#current = { config: o.config, tables: o.tables };
    this.#runner = this.#newRunner(this.#current);
  }

  /** The running components' states and this instance's name (for /status, /healthz). */
  get states() {
    return this.#runner.states;
  }

  get instance(): string {
    return this.#runner.instance;
  }

  /** Runs until `signal` aborts; rejects on a fatal error (after stopping every component). */
  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.#o;
    const http: HttpServer = await startHttpServer({
      host: this.#o.config.http.host,
      port: this.#o.httpPort,
      metrics: this.#o.metrics,
      runner: this,
      reload: () => this.reload('POST /reload'),
    });
    this.#o.onListening?.(http.url, this.instance);
    try {
      while (!signal.aborted) {
        const next = this.#next;
        if (next !== undefined) {
          this.#next = undefined;
          this.#current = next;
          this.#runner = this.#newRunner(next);
          log.info({ tables: next.tables, instance: this.instance }, 'running with the reloaded config');
        }
        const stop = new AbortController();
        const abort = () => stop.abort();
        signal.addEventListener('abort', abort, { once: true });
        this.#stopGeneration = stop;
        const { config, tables } = this.#current;
        const sampling = sampleLag(config, this.#o.metrics, log, stop.signal);
        // The keeper's rounds find the directions caught up; the pruner moves on with them too.
        const catchUp = new CatchUpTracker();
        const pruning = pruneTombstones(config, log, stop.signal, catchUp);
        const keeping = keepStamps(config, tables, this.#o.metrics, log, stop.signal, catchUp);
        try {
          await this.#runner.run(stop.signal);
        } finally {
          stop.abort(); // a failed run stops the sampler too
          signal.removeEventListener('abort', abort);
          await sampling;
          await pruning;
          await keeping;
        }
        if (this.#next === undefined) break;
      }
    } finally {
      await http.close();
    }
  }

  /**
   * Reads the config file again and, when it loads and its tables resolve, sets the nodes up for it and
   * restarts every component with it. Never rejects: a refused reload leaves the sync running as it is.
   */
  reload(why: string): Promise<ReloadOutcome> {
    const outcome = this.#reloads.then(() => this.#reload(why));
    this.#reloads = outcome;
    return outcome;
  }

  async #reload(why: string): Promise<ReloadOutcome> {
    const { log } = this.#o;
    const before = (this.#next ?? this.#current).tables;
    log.info({ why, config: this.#o.configFile }, 'reloading the config');
    let next: Generation;
    try {
      const config = loadConfigFile(this.#o.configFile);
      await setup(config, (line) => log.info({ why }, `reload: ${line}`));
      next = { config, tables: await resolveTables(config) };
    } catch (error) {
      const fix =
        error instanceof PgbisyncError && error.hint !== undefined
          ? `${error.hint}; then reload again`
          : 'fix the cause, then reload again';
      log.error({ why, err: error, fix }, 'reload refused: the sync runs on with the config it had');
      return { reloaded: false, tables: before, added: [], removed: [], error: describeError(error), fix };
    }
    const added = next.tables.filter((t) => !before.includes(t));
    const removed = before.filter((t) => !next.tables.includes(t));
    this.#next = next;
    log.info({ why, added, removed, tables: next.tables }, 'config reloaded: restarting the components');
    this.#stopGeneration?.abort();
    return { reloaded: true, tables: next.tables, added, removed };
  }

  #newRunner(g: Generation): SyncRunner {
    return new SyncRunner({ config: g.config, tables: g.tables, log: this.#o.log, metrics: this.#o.metrics });
  }
}
