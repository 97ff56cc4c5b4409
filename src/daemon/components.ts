/**
 * The components of `pgbisync run`: a capture per node and an applier per direction. Each builds its own
 * connections and Kafka clients for one attempt and tells the runner what it did through `report`;
 * metrics, logs and /status stay with the runner. Appliers run on the main thread; captures there too,
 * or on the captures' worker thread (`threads: true`, component-thread.ts), so their reports are plain
 * data that survives a structured clone.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import { PGBISYNC_VERSION_PREFIX } from '../events/change-event.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import { deadLetterTopic, eventTopics, serverName, topicFor, transactionTopic } from '../kafka/topics.ts';
import { applyComponent, captureComponent, type OwnedComponent } from '../operate/ownership.ts';
import { directions, policyFor, snapshotRecords } from '../operate/sync-plan.ts';
import { firstHostUrl } from '../pg/node-url.ts';
import { ErrorCode, FatalError, PgbisyncError, RetryableError } from '../runtime/errors.ts';
import { StallWatch } from '../runtime/stall-watch.ts';
import { Applier, type ApplierProgressEvent } from '../sink/applier.ts';
import { Capture, type CaptureProgressEvent } from '../source/capture.ts';
import { DebeziumChangeEncoder } from '../source/debezium-encoder.ts';
import { HEARTBEAT_MS, LEASE_TIMEOUT_MS } from './lease.ts';

export const CONNECTOR_VERSION = `${PGBISYNC_VERSION_PREFIX}0.1.0`;

/**
 * A lease session ends LEASE_TIMEOUT_MS after its last heartbeat, and heartbeats come every
 * HEARTBEAT_MS: a stall shorter than their difference cannot lose the lease. This much below it, a
 * capture stops sending after a stall (runCapture).
 */
const STALL_MARGIN_MS = 2_000;

export type CaptureSpec = { readonly kind: 'capture'; readonly node: string };
export type ComponentSpec =
  | CaptureSpec
  | { readonly kind: 'apply'; readonly source: string; readonly target: string };

export type ComponentReport =
  | { readonly kind: 'started'; readonly slot?: string; readonly topics?: readonly string[] }
  | { readonly kind: 'capture'; readonly event: CaptureProgressEvent }
  | { readonly kind: 'apply'; readonly event: ApplierProgressEvent };

/** What one attempt of a component gets besides its spec. */
export interface Attempt {
  readonly config: Config;
  readonly tables: readonly string[];
  readonly report: (r: ComponentReport) => void;
  readonly signal: AbortSignal;
}

/** The component as ownership knows it: its name and the node whose lease it takes. */
export function ownedSpec(spec: ComponentSpec): OwnedComponent {
  return spec.kind === 'capture' ? captureComponent(spec.node) : applyComponent(spec.source, spec.target);
}

export function componentName(spec: ComponentSpec): string {
  return ownedSpec(spec).name;
}

/** The components a config runs. A node captured by a Debezium connector has no pgbisync capture. */
export function componentSpecs(config: Config): ComponentSpec[] {
  return [
    ...config.nodes
      .filter((node) => node.debezium === undefined)
      .map((node): ComponentSpec => ({ kind: 'capture', node: node.name })),
    ...directions(config).map(
      (d): ComponentSpec => ({ kind: 'apply', source: d.source.name, target: d.target.name }),
    ),
  ];
}

/** One attempt of a component: runs until `attempt.signal` aborts, rejects when it fails. */
export function runComponent(spec: ComponentSpec, attempt: Attempt): Promise<void> {
  return spec.kind === 'capture'
    ? runCapture(spec.node, attempt)
    : runApplier(spec.source, spec.target, attempt);
}

function nodeNamed(config: Config, name: string) {
  const node = config.nodes.find((n) => n.name === name);
  if (node === undefined)
    throw new FatalError(`no node named ${name} in the config`, { code: ErrorCode.CONFIG_INVALID });
  return node;
}

async function runCapture(nodeName: string, { config, tables, report, signal }: Attempt): Promise<void> {
  const node = nodeNamed(config, nodeName);
  // A process kept from running long enough for its lease to be taken over (SIGSTOP, a paused VM) sends
  // nothing on waking, before its next heartbeat could tell it the lease is gone: the callbacks of what
  // completed meanwhile run before that heartbeat, and one would send the next request (the successor
  // may be streaming the slot already). It starts again instead, and stands by if the lease is gone.
  const stall = new StallWatch(LEASE_TIMEOUT_MS - HEARTBEAT_MS - STALL_MARGIN_MS);
  const producer = new KafkaProducer({
    ...kafkaOptions(config, `capture-${node.name}`),
    compression: config.kafka.compression,
    lingerMs: config.capture.lingerMs,
    mayRequest: () => {
      const ms = stall.stalledMs();
      if (ms === undefined) return undefined;
      return new RetryableError(
        `capture of ${node.name} sends nothing more: this process did not run for ${ms} ms, long enough for another instance to take the component over`,
        {
          code: ErrorCode.OWNERSHIP_LOST,
          hint: 'nothing: the capture starts again, or stands by if another instance owns it now',
        },
      );
    },
  });
  const capture = new Capture({
    node: node.name,
    url: node.url,
    tables,
    encoder: new DebeziumChangeEncoder({
      serverName: serverName(config, node.name),
      database: new URL(firstHostUrl(node.url)).pathname.slice(1),
      schemas: config.capture.schemasEnabled,
      connectorVersion: CONNECTOR_VERSION,
      types: config.capture.types,
    }),
    producer,
    topicFor: topicFor(config, node.name),
    snapshot: config.capture.snapshot,
    failoverSlot: node.failoverSlot,
    snapshotChunkRows: config.capture.snapshotChunkRows,
    snapshotRecords: snapshotRecords(config),
    maxBatchEvents: config.capture.maxBatchEvents,
    onProgress: (event) => report({ kind: 'capture', event }),
  });
  // A capture whose lease was lost sends nothing more, not even what it still held (it used to wait
  // for it to be sent): another instance may be streaming the slot already, and those records would
  // land amid its own (docs/correctness.md, a capture fenced off by a takeover).
  const fence = () => {
    if (leaseLost(signal.reason)) producer.abandon(signal.reason);
  };
  signal.addEventListener('abort', fence, { once: true });
  report({ kind: 'started', slot: capture.slot });
  try {
    await capture.run(signal);
  } finally {
    signal.removeEventListener('abort', fence);
    stall.stop();
    await producer.close().catch(() => undefined);
  }
}

/** An attempt stopped because this instance lost the component's lease (PGB5003). */
function leaseLost(reason: unknown): reason is PgbisyncError {
  return reason instanceof PgbisyncError && reason.code === ErrorCode.OWNERSHIP_LOST;
}

async function runApplier(
  sourceName: string,
  targetName: string,
  { config, tables, report, signal }: Attempt,
): Promise<void> {
  const source = nodeNamed(config, sourceName);
  const target = nodeNamed(config, targetName);
  const topics = eventTopics(config, source.name, tables);
  const dlqProducer = new KafkaProducer(kafkaOptions(config, `dlq-${source.name}-${target.name}`));
  const applier = new Applier({
    sourceNode: source.name,
    targetNode: target.name,
    targetUrl: target.url,
    sourceUrl: source.url,
    tables,
    topics,
    openConsumer: (startOffsets) =>
      new KafkaConsumer({
        ...kafkaOptions(config, `apply-${source.name}-${target.name}`),
        // A group of its own per consumer instance: positions live in the target database, and
        // a shared group would make a restarted applier wait for the broker to evict its
        // killed predecessor (the session timeout) before it gets the partition.
        groupId: `${config.kafka.clientId}-apply-${source.name}-${target.name}-${randomUUID().slice(0, 8)}`,
        topics,
        startOffsets,
        maxWaitMs: config.apply.maxWaitMs,
        minBytes: config.apply.fetchMinBytes,
      }),
    deadLetter: { topic: deadLetterTopic(config, source.name), sink: dlqProducer },
    policyFor: policyFor(config),
    truncate: config.apply.truncate,
    addMissingColumns: config.schema.addMissingColumns,
    maxClockSkewMs: config.conflicts.maxClockSkewMs,
    maxBatchTransactions: config.apply.maxBatchTransactions,
    maxBatchRows: config.apply.maxBatchRows,
    maxPieceBytes: config.apply.maxPieceBytes,
    ...(source.debezium !== undefined
      ? {
          debezium: {
            topicPrefix: source.debezium.topicPrefix,
            transactionTopic: transactionTopic(config, source.name),
          },
        }
      : config.mode === 'per-table'
        ? // Our own per-table topics: the same shape as a Debezium connector's, without
          // transaction metadata (each table's part of a transaction is applied on its own).
          { debezium: { topicPrefix: serverName(config, source.name), transactionTopic: undefined } }
        : {}),
    onProgress: (event) => report({ kind: 'apply', event }),
  });
  report({ kind: 'started', topics });
  try {
    await applier.run(signal);
  } finally {
    await dlqProducer.close().catch(() => undefined);
  }
}
