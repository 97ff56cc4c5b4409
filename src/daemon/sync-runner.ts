/**
 * `pgbisync run`: a capture per node and an applier per direction, in one process, supervised.
 *
 * Capture on node N publishes to N's topics; the applier N -> M consumes them and writes into M under
 * the origin `pgbisync_N@M`, so M's capture drops what it applied (no loops). Each component owns its
 * connections and Kafka clients; a retryable failure restarts only that component. With `threads: true`
 * the captures run on a worker thread (component-thread.ts) and the appliers here; metrics, logs and the
 * state behind /status stay here either way, fed by the components' reports.
 */
import type { Config } from '../config/schema.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { formatLsn } from '../pg/lsn.ts';
import { describeError, ErrorCode, isConcurrentApplyFailure, PgbisyncError } from '../runtime/errors.ts';
import { type Component, supervise } from '../runtime/supervisor.ts';
import type { ApplierProgressEvent } from '../sink/applier.ts';
import type { CaptureProgressEvent } from '../source/capture.ts';
import { ComponentThread } from './component-thread.ts';
import {
  type ComponentReport,
  type ComponentSpec,
  componentName,
  componentSpecs,
  ownedSpec,
  runComponent,
} from './components.ts';
import { type Instance, resolveInstance } from './lease.ts';
import { ownedComponent } from './owned-component.ts';
import { ProgressGate } from './progress-gate.ts';

export interface SyncRunnerOptions {
  readonly config: Config;
  /** The resolved synced tables (see resolveTables). */
  readonly tables: readonly string[];
  /** This instance: its name and the nodes it prefers; default resolveInstance(config). */
  readonly instance?: Instance;
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** Live state for /status and the demo's status line. */
export interface ComponentState {
  name: string;
  /**
   * blocked: waits for an operator to fix the target (lastError, fix); retried until fixed.
   * standby: another instance owns the component (owner); this one takes it over when that one dies.
   */
  state: 'starting' | 'standby' | 'running' | 'restarting' | 'blocked' | 'stopped';
  /** The instance that owns the component (this one while it runs here), when known. */
  owner?: string;
  /** Since when this instance owns it (ISO time), while it does. */
  ownerSince?: string;
  /** The last failure with its causes, on one line. */
  lastError?: string;
  /** The last failure's code (docs/errors.md), when it has one. */
  code?: string;
  /** What the operator must do, while blocked. */
  fix?: string;
  events?: number;
  transactions?: number;
  lastLsn?: string;
  /**
   * A capture's copy of its tables (initial snapshot, an added table, a resync), by table: rows (and
   * remembered deletes) sent so far and whether the table is done. Kept after the copy ends.
   */
  copy?: Record<
    string,
    { rows: number; deletes: number; rowsPerSec: number; done: boolean; fromPage?: number; paused?: boolean }
  >;
}

/** How often a table's copy progress is logged while it lasts (its first and last reports always are). */
const SNAPSHOT_LOG_MS = 5_000;

export class SyncRunner {
  readonly #o: SyncRunnerOptions & { readonly instance: Instance };
  readonly states = new Map<string, ComponentState>();
  /** Snapshot rows counted so far in the current attempt, by node and table. */
  readonly #snapshotRows = new Map<string, Map<string, number>>();
  /** Copy progress reaches the log every few seconds per table (./progress-gate.ts). */
  readonly #progressLog = new ProgressGate(SNAPSHOT_LOG_MS);

  constructor(options: SyncRunnerOptions) {
    this.#o = { ...options, instance: options.instance ?? resolveInstance(options.config) };
  }

  /** This instance's name, as other instances and `status` see it. */
  get instance(): string {
    return this.#o.instance.name;
  }

  /** Runs until `signal` aborts; rejects on a fatal error (after stopping every component). */
  async run(signal: AbortSignal): Promise<void> {
    const { config, tables, log } = this.#o;
    // Captures on a worker thread, appliers here: the two halves of a direction on two cores.
    const thread = config.threads
      ? new ComponentThread({ config, tables }, (error) =>
          log.warn({ err: error }, "the captures' worker thread failed between attempts; restarting it"),
        )
      : undefined;
    const components = componentSpecs(config).map((spec) => this.#component(spec, thread));
    for (const c of components) this.states.set(c.name, { name: c.name, state: 'starting' });
    try {
      await this.#supervise(components, signal);
    } finally {
      await thread?.close();
    }
  }

  #supervise(components: readonly Component[], signal: AbortSignal): Promise<void> {
    const { log } = this.#o;
    return supervise(components, signal, {
      onRestart: (name, error, delayMs) => {
        const state = this.states.get(name);
        const code = error instanceof PgbisyncError ? error.code : undefined;
        // A component given up to another instance stands by at once: nothing is wrong with it here.
        const givenUp = code === ErrorCode.OWNERSHIP_LOST || code === ErrorCode.OWNERSHIP_HANDED_OVER;
        if (state !== undefined) {
          state.state = givenUp ? 'standby' : 'restarting';
          state.lastError = describeError(error);
          if (code !== undefined) state.code = code;
          else delete state.code;
        }
        this.#o.metrics.restarts.inc({ component: name });
        if (code === ErrorCode.OWNERSHIP_HANDED_OVER) {
          log.info(
            { component: name, reason: describeError(error) },
            'component handed over as instance.prefer asks',
          );
          return;
        }
        if (isConcurrentApplyFailure(error)) {
          // Expected when local writes and the applier meet on the same rows: no stack, no warning.
          log.info(
            { component: name, code: error.code, reason: describeError(error), delayMs },
            'transaction raced a local write on the same rows; applying it again',
          );
          return;
        }
        log.warn({ component: name, err: error, delayMs }, 'component failed, restarting');
      },
      onBlocked: (name, error, delayMs) => {
        const state = this.states.get(name);
        if (state !== undefined) {
          const reason = describeError(error);
          // Logged when the reason changes, not at every retry.
          if (state.state !== 'blocked' || state.lastError !== reason) {
            log.error(
              { component: name, err: error, fix: error.hint },
              'stream blocked until an operator acts (see fix)',
            );
          }
          state.state = 'blocked';
          state.lastError = reason;
          state.code = error.code;
          if (error.hint !== undefined) state.fix = error.hint;
        }
        this.#o.metrics.restarts.inc({ component: name });
        log.debug({ component: name, delayMs }, 'retrying blocked stream');
      },
      onStopped: (name) => {
        const state = this.states.get(name);
        if (state !== undefined) state.state = 'stopped';
        log.info({ component: name }, 'component stopped');
      },
    });
  }

  /** `thread`: where captures run (appliers always run here); undefined: here too. */
  #component(spec: ComponentSpec, thread: ComponentThread | undefined): Component {
    const { config, tables, instance, log, metrics } = this.#o;
    const name = componentName(spec);
    const onReport = (r: ComponentReport) => this.#onReport(spec, name, r);
    const inner: Component = {
      name,
      run: (signal) =>
        spec.kind === 'capture' && thread !== undefined
          ? thread.run(spec, signal, onReport)
          : runComponent(spec, { config, tables, report: onReport, signal }),
    };
    const owned = ownedSpec(spec);
    const node = config.nodes.find((n) => n.name === owned.node);
    if (node === undefined) return inner; // not reached: specs come from the config's nodes
    const state = () => this.states.get(name);
    return ownedComponent(inner, {
      component: owned,
      url: node.url,
      instance,
      log,
      events: {
        standby: (owner) => {
          const s = state();
          if (s === undefined) return;
          if (s.state !== 'standby' || s.owner !== owner)
            log.info(
              { component: name, owner: owner ?? null },
              'standing by: another instance owns the component',
            );
          s.state = 'standby';
          if (owner === undefined) delete s.owner;
          else s.owner = owner;
          delete s.ownerSince;
        },
        acquired: (since, previous) => {
          const s = state();
          if (s !== undefined) {
            // Each retry of a blocked component takes its lease again: it stays blocked until it
            // applies or streams again (it read 'starting', then 'running', for a moment at every retry).
            if (s.state !== 'blocked') s.state = 'starting';
            s.owner = instance.name;
            s.ownerSince = since.toISOString();
          }
          if (previous !== undefined) {
            metrics.takeovers.inc({ component: name });
            log.warn({ component: name, from: previous }, 'took the component over from another instance');
          } else log.info({ component: name }, 'owning the component');
        },
        released: () => {
          const s = state();
          if (s === undefined) return;
          delete s.ownerSince;
          if (s.owner === instance.name) delete s.owner;
        },
      },
    });
  }

  #onReport(spec: ComponentSpec, name: string, r: ComponentReport): void {
    const { log } = this.#o;
    const state = this.states.get(name)!;
    switch (r.kind) {
      case 'started':
        if (spec.kind === 'capture') {
          this.#snapshotRows.set(spec.node, new Map()); // a new attempt copies (and counts) anew
          this.#progressLog.forget(`${spec.node}\0`); // and logs its first report of each table
          // A blocked capture (its slot lost) stays blocked until its slot is ready again.
          if (state.state !== 'blocked') state.state = 'running';
          log.info({ node: spec.node, slot: r.slot }, 'capture started');
        } else {
          if (state.state !== 'blocked') state.state = 'running'; // until it applies again
          log.info({ direction: `${spec.source}->${spec.target}`, topics: r.topics }, 'applier started');
        }
        break;
      case 'capture':
        if (spec.kind === 'capture') this.#onCaptureProgress(spec.node, state, r.event);
        break;
      case 'apply':
        if (spec.kind === 'apply') this.#onApplyProgress(`${spec.source}->${spec.target}`, state, r.event);
        break;
      default:
        r satisfies never;
    }
  }

  #onCaptureProgress(node: string, state: ComponentState, event: CaptureProgressEvent): void {
    const { log, metrics } = this.#o;
    if (state.state === 'blocked' && (event.kind === 'streaming' || event.kind === 'snapshot')) {
      log.info({ node }, 'capture unblocked: its slot is ready');
      state.state = 'running';
      delete state.lastError;
      delete state.code;
      delete state.fix;
    }
    switch (event.kind) {
      case 'streaming':
        state.state = 'running';
        break;
      case 'sent':
        for (const [table, n] of event.byTable) metrics.eventsCaptured.inc({ node, table }, n);
        state.events = (state.events ?? 0) + event.events;
        break;
      case 'confirmed':
        metrics.confirmedLsn.set({ node }, Number(event.lsn));
        state.lastLsn = formatLsn(event.lsn);
        break;
      case 'loop-dropped':
        metrics.loopDropped.inc({ node });
        break;
      case 'unsynced':
        log.info(
          { node, table: event.table },
          'changes of a published table this run does not sync are left out (added by setup: reload the config, e.g. pgbisync reload, and it is copied)',
        );
        break;
      case 'snapshot': {
        // Progress carries each table's rows (and deletes) so far: count what is new since the last report.
        const { table } = event.progress;
        const events = event.progress.rows + event.progress.deletes;
        const counts = this.#snapshotRows.get(node) ?? new Map<string, number>();
        const counted = counts.get(table) ?? 0;
        if (events > counted) metrics.eventsCaptured.inc({ node, table }, events - counted);
        counts.set(table, events);
        this.#snapshotRows.set(node, counts);
        const { table: _, ...copy } = event.progress;
        state.copy = { ...state.copy, [table]: copy };
        const ended = event.progress.done || event.progress.paused === true;
        if (this.#progressLog.admit(`${node}\0${table}`, ended)) {
          log.info({ node, ...event.progress }, 'snapshot progress');
        }
        break;
      }
      default:
        event satisfies never;
    }
  }

  #onApplyProgress(direction: string, state: ComponentState, event: ApplierProgressEvent): void {
    const { log, metrics } = this.#o;
    if (event.kind === 'applied') {
      if (state.state === 'blocked') {
        log.info({ direction }, 'stream unblocked: the target accepted the blocked transaction');
        state.state = 'running';
        delete state.lastError;
        delete state.code;
        delete state.fix;
      }
      metrics.transactionsApplied.inc({ direction }, event.transactions);
      metrics.transactionsSkipped.inc({ direction }, event.skipped);
      for (const [table, n] of event.byTable) metrics.rowsApplied.inc({ direction, table }, n);
      if (event.conflicts > 0) metrics.conflicts.inc({ direction }, event.conflicts);
      metrics.batchTransactions.observe({ direction }, event.transactions + event.skipped);
      const lagUs = BigInt(Date.now()) * 1000n - event.last.commitTimeUs;
      metrics.applyLagSeconds.set({ direction }, Number(lagUs) / 1e6);
      state.transactions = (state.transactions ?? 0) + event.transactions;
      state.lastLsn = formatLsn(event.last.commitLsn);
    } else if (event.kind === 'repaired') {
      log.info(
        { direction, repaired: event.repaired, superseded: event.superseded },
        'rows repaired from the source',
      );
    } else if (event.kind === 'stale') {
      metrics.staleDropped.inc({ direction, reason: event.reason }, event.records);
      log.debug({ direction, reason: event.reason, records: event.records }, 'stale records dropped');
    } else if (event.kind === 'repair-failed') {
      log.warn(
        { direction, err: event.error },
        'repair from the source failed; the keys stay needs_repair, retried',
      );
    } else {
      const code = event.error instanceof PgbisyncError ? event.error.code : ErrorCode.EVENT_MALFORMED;
      metrics.deadLetters.inc({ direction, code });
      log.error(
        { direction, topic: event.record.topic, offset: String(event.record.offset), err: event.error },
        'record sent to the dead-letter topic',
      );
    }
  }
}
