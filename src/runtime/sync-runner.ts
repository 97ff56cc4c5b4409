/**
 * `pgbisync run`: a capture per node and an applier per direction, in one process, supervised.
 *
 * Capture on node N publishes to N's topics; the applier N -> M consumes them and writes into M under
 * the origin `pgbisync_N`, so M's capture drops what it applied (no loops). Each component owns its
 * connections and Kafka clients; a retryable failure restarts only that component.
 */
import { randomUUID } from 'node:crypto';
import type { Config, NodeConfig } from '../config/schema.ts';
import { KafkaConsumer, KafkaProducer } from '../kafka/client.ts';
import { deadLetterTopic, eventTopics, serverName, topicFor, transactionTopic } from '../kafka/topics.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { kafkaOptions } from '../operate/kafka-options.ts';
import { formatLsn } from '../pg/lsn.ts';
import { Applier } from '../sink/applier.ts';
import { Capture } from '../source/capture.ts';
import { DebeziumChangeEncoder } from '../source/debezium-encoder.ts';
import { isConcurrentApplyFailure } from './errors.ts';
import { type Component, supervise } from './supervisor.ts';
import { type Direction, directions, policyFor } from './sync-plan.ts';

export const CONNECTOR_VERSION = 'pgbisync-0.1.0';

export interface SyncRunnerOptions {
  readonly config: Config;
  /** The resolved synced tables (see resolveTables). */
  readonly tables: readonly string[];
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** Live state for /status and the demo's status line. */
export interface ComponentState {
  name: string;
  /** blocked: waits for an operator to fix the target (lastError, fix); retried until fixed. */
  state: 'starting' | 'running' | 'restarting' | 'blocked' | 'stopped';
  lastError?: string;
  /** What the operator must do, while blocked. */
  fix?: string;
  events?: number;
  transactions?: number;
  lastLsn?: string;
  lastCommitTime?: string;
}

export class SyncRunner {
  readonly #o: SyncRunnerOptions;
  readonly states = new Map<string, ComponentState>();

  constructor(options: SyncRunnerOptions) {
    this.#o = options;
  }

  /** Runs until `signal` aborts; rejects on a fatal error (after stopping every component). */
  async run(signal: AbortSignal): Promise<void> {
    const { config, log } = this.#o;
    const components = [
      // A node captured by a Debezium connector has no pgbisync capture: its connector publishes.
      ...config.nodes.filter((node) => node.debezium === undefined).map((node) => this.#capture(node)),
      ...directions(config).map((d) => this.#applier(d)),
    ];
    for (const c of components) this.states.set(c.name, { name: c.name, state: 'starting' });
    await supervise(components, signal, {
      onRestart: (name, error, delayMs) => {
        const state = this.states.get(name);
        if (state !== undefined) {
          state.state = 'restarting';
          state.lastError = error instanceof Error ? error.message : String(error);
        }
        this.#o.metrics.restarts.inc({ component: name });
        if (isConcurrentApplyFailure(error)) {
          // Expected when local writes and the applier meet on the same rows: no stack, no warning.
          log.info(
            { component: name, code: error.code, reason: error.message, delayMs },
            'transaction raced a local write on the same rows; applying it again',
          );
          return;
        }
        log.warn({ component: name, err: error, delayMs }, 'component failed, restarting');
      },
      onBlocked: (name, error, delayMs) => {
        const state = this.states.get(name);
        if (state !== undefined) {
          // Logged when the reason changes, not at every retry.
          if (state.state !== 'blocked' || state.lastError !== error.message) {
            log.error(
              { component: name, err: error, fix: error.hint },
              'stream blocked until the target is fixed',
            );
          }
          state.state = 'blocked';
          state.lastError = error.message;
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

  #capture(node: NodeConfig): Component {
    const { config, tables, log, metrics } = this.#o;
    const name = `capture ${node.name}`;
    return {
      name,
      run: async (signal) => {
        const state = this.states.get(name)!;
        const snapshotRows = new Map<string, number>();
        const producer = new KafkaProducer({
          ...kafkaOptions(config, `capture-${node.name}`),
          compression: config.kafka.compression,
          lingerMs: config.capture.lingerMs,
        });
        const capture = new Capture({
          node: node.name,
          url: node.url,
          tables,
          encoder: new DebeziumChangeEncoder({
            serverName: serverName(config, node.name),
            database: new URL(node.url).pathname.slice(1),
            schemas: config.capture.schemasEnabled,
            connectorVersion: CONNECTOR_VERSION,
          }),
          producer,
          topicFor: topicFor(config, node.name),
          snapshot: config.capture.snapshot,
          snapshotChunkRows: config.capture.snapshotChunkRows,
          maxBatchEvents: config.capture.maxBatchEvents,
          onProgress: (event) => {
            switch (event.kind) {
              case 'sent':
                for (const [table, n] of event.byTable)
                  metrics.eventsCaptured.inc({ node: node.name, table }, n);
                state.events = (state.events ?? 0) + event.events;
                break;
              case 'confirmed':
                metrics.confirmedLsn.set({ node: node.name }, Number(event.lsn));
                state.lastLsn = formatLsn(event.lsn);
                break;
              case 'loop-dropped':
                metrics.loopDropped.inc({ node: node.name });
                break;
              case 'snapshot': {
                // Progress carries each table's rows so far: count what is new since the last report.
                const { table, rows } = event.progress;
                const counted = snapshotRows.get(table) ?? 0;
                if (rows > counted) metrics.eventsCaptured.inc({ node: node.name, table }, rows - counted);
                snapshotRows.set(table, rows);
                log.info({ node: node.name, ...event.progress }, 'snapshot progress');
                break;
              }
              default:
                event satisfies never;
            }
          },
        });
        state.state = 'running';
        log.info({ node: node.name, slot: capture.slot }, 'capture started');
        try {
          await capture.run(signal);
        } finally {
          await producer.close().catch(() => undefined);
        }
      },
    };
  }

  #applier(d: Direction): Component {
    const { config, tables, log, metrics } = this.#o;
    const direction = `${d.source.name}->${d.target.name}`;
    const name = `apply ${direction}`;
    const topics = eventTopics(config, d.source.name, tables);
    return {
      name,
      run: async (signal) => {
        const state = this.states.get(name)!;
        const dlqProducer = new KafkaProducer(kafkaOptions(config, `dlq-${d.source.name}-${d.target.name}`));
        const applier = new Applier({
          sourceNode: d.source.name,
          targetNode: d.target.name,
          targetUrl: d.target.url,
          sourceUrl: d.source.url,
          topics,
          openConsumer: (startOffsets) =>
            new KafkaConsumer({
              ...kafkaOptions(config, `apply-${d.source.name}-${d.target.name}`),
              // A group of its own per consumer instance: positions live in the target database, and
              // a shared group would make a restarted applier wait for the broker to evict its
              // killed predecessor (the session timeout) before it gets the partition.
              groupId: `${config.kafka.clientId}-apply-${d.source.name}-${d.target.name}-${randomUUID().slice(0, 8)}`,
              topics,
              startOffsets,
              maxWaitMs: config.apply.maxWaitMs,
              minBytes: config.apply.fetchMinBytes,
            }),
          deadLetter: { topic: deadLetterTopic(config, d.source.name), sink: dlqProducer },
          policyFor: policyFor(config),
          maxBatchTransactions: config.apply.maxBatchTransactions,
          maxBatchRows: config.apply.maxBatchRows,
          ...(d.source.debezium !== undefined
            ? {
                debezium: {
                  topicPrefix: d.source.debezium.topicPrefix,
                  transactionTopic: transactionTopic(config, d.source.name),
                },
              }
            : config.mode === 'per-table'
              ? // Our own per-table topics: the same shape as a Debezium connector's, without
                // transaction metadata (each table's part of a transaction is applied on its own).
                { debezium: { topicPrefix: serverName(config, d.source.name), transactionTopic: undefined } }
              : {}),
          onProgress: (event) => {
            if (event.kind === 'applied') {
              if (state.state === 'blocked') {
                log.info({ direction }, 'stream unblocked: the target accepted the blocked transaction');
                state.state = 'running';
                delete state.lastError;
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
            } else {
              metrics.deadLetters.inc({ direction });
              log.error(
                {
                  direction,
                  topic: event.record.topic,
                  offset: String(event.record.offset),
                  err: event.error,
                },
                'record sent to the dead-letter topic',
              );
            }
          },
        });
        if (state.state !== 'blocked') state.state = 'running'; // until it applies again
        log.info({ direction, topics }, 'applier started');
        try {
          await applier.run(signal);
        } finally {
          await dlqProducer.close().catch(() => undefined);
        }
      },
    };
  }
}
