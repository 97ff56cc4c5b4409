/**
 * `pgbisync tail <node>`: the decoded change events on a node's topics, one line each (op, table, key,
 * changed columns, source LSN, commit time) — checking what reaches Kafka without a separate Kafka CLI.
 * Reads from the beginning or the end of the topics with a throwaway consumer (no offsets committed);
 * a record that is not a change event is reported with its position and tail goes on.
 */

import { randomUUID } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import type { ColumnValue } from '../events/change-event.ts';
import { UNCHANGED } from '../events/change-event.ts';
import { decodeRecord } from '../events/decode.ts';
import { decodeRowBatch } from '../events/row-batch.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import type { InRecord } from '../kafka/records.ts';
import { eventTopics } from '../kafka/topics.ts';
import { isRowBatch } from '../kafka/wire-headers.ts';
import { formatLsn } from '../pg/lsn.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { EventSchemas } from '../sink/event-schemas.ts';
import { recordPosition } from '../sink/transaction-grouper.ts';

export interface TailOptions {
  readonly node: string;
  /** Only this table's events ('schema.table', or 'table' in schema public). */
  readonly table?: string;
  readonly from: 'beginning' | 'end';
  /** Stop after this many events (tombstones count); default: until `signal` aborts. */
  readonly max?: number;
  readonly signal: AbortSignal;
  readonly onEvent: (event: TailEvent) => void;
  readonly onMalformed: (where: string, error: unknown) => void;
}

export interface TailEvent {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  /** c, u, d, r (snapshot read), t (truncate), or tombstone (the null value after a delete). */
  readonly op: 'c' | 'u' | 'd' | 'r' | 't' | 'tombstone';
  readonly table: string | null;
  readonly key: Readonly<Record<string, string | null>> | null;
  /**
   * Columns written, as PostgreSQL text (null for SQL NULL): every column of an inserted row; for an
   * update the columns that differ from the before image when the source sends one (REPLICA IDENTITY
   * FULL), else every column of the new row. Unchanged TOAST values are left out.
   */
  readonly changed: Readonly<Record<string, string | null>>;
  readonly lsn: string | null;
  /** Source commit time, ISO 8601 with microseconds. */
  readonly commitTime: string | null;
  readonly txId: string | null;
  /** A row batch of the initial copy (capture.snapshotRecords: batched): its rows, not listed one by one. */
  readonly rows?: number;
}

/** Follows the node's topics until `max` events were reported or `signal` aborts. */
export async function tail(
  config: Config,
  tables: readonly string[],
  o: TailOptions,
): Promise<{ events: number; malformed: number }> {
  if (!config.nodes.some((n) => n.name === o.node)) {
    throw new FatalError(`tail: no node named '${o.node}' in the config`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `name one of: ${config.nodes.map((n) => n.name).join(', ')}`,
    });
  }
  const table = o.table === undefined ? undefined : o.table.includes('.') ? o.table : `public.${o.table}`;
  if (table !== undefined && !tables.includes(table)) {
    throw new FatalError(`tail: table ${table} is not synced`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `name one of: ${tables.join(', ')}`,
    });
  }
  const topics = eventTopics(config, o.node, table === undefined ? tables : [table]);
  const startOffsets = await startPositions(config, topics, o.from);
  const stop = new AbortController();
  const abort = () => stop.abort();
  o.signal.addEventListener('abort', abort, { once: true });
  const consumer = new KafkaConsumer({
    ...kafkaOptions(config, 'tail'),
    groupId: `${config.kafka.clientId}-tail-${randomUUID().slice(0, 8)}`,
    topics,
    startOffsets,
    maxWaitMs: 200,
  });
  let events = 0;
  let malformed = 0;
  // Schemaless records (capture.schemasEnabled: false) name their schema, kept on the node.
  const schemas = new EventSchemas({
    sourceNode: o.node,
    sourceUrl: config.nodes.find((n) => n.name === o.node)?.url,
  });
  try {
    for await (const records of consumer.batches(stop.signal)) {
      // Schemas that cannot be read: reported here, and each record naming one below; tail goes on.
      await schemas.load(records).catch((error: unknown) => o.onMalformed(`schemas of ${o.node}`, error));
      for (const record of records) {
        let event: TailEvent;
        try {
          event = toTailEvent(record, schemas);
        } catch (error) {
          malformed++;
          o.onMalformed(recordPosition(record), error);
          continue;
        }
        if (table !== undefined && event.table !== null && event.table !== table) continue;
        o.onEvent(event);
        events++;
        if (o.max !== undefined && events >= o.max) {
          stop.abort();
          break;
        }
      }
    }
  } finally {
    o.signal.removeEventListener('abort', abort);
    await consumer.close();
  }
  return { events, malformed };
}

/** Checks that the topics exist; from the end: their end offsets, from the beginning: none (earliest). */
async function startPositions(config: Config, topics: readonly string[], from: 'beginning' | 'end') {
  const admin = new KafkaAdmin(kafkaOptions(config, 'tail'));
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      throw new FatalError(`tail: topic ${missing.join(', ')} does not exist`, {
        code: ErrorCode.CONFIG_INVALID,
        hint: 'run pgbisync setup (it creates the topics), or check kafka.topicPrefix and kafka.brokers',
      });
    }
    const out: { topic: string; partition: number; offset: bigint }[] = [];
    if (from === 'beginning') return out;
    for (const topic of topics) {
      for (const [partition, offset] of await admin.endOffsets(topic)) out.push({ topic, partition, offset });
    }
    return out;
  } finally {
    await admin.close();
  }
}

export function toTailEvent(record: InRecord, schemas?: EventSchemas): TailEvent {
  const where = { topic: record.topic, partition: record.partition, offset: String(record.offset) };
  if (isRowBatch(record.headers) && record.value !== null) {
    const batch = decodeRowBatch(record.value, recordPosition(record));
    return {
      ...where,
      op: 'r',
      table: `${batch.schema}.${batch.table}`,
      key: null,
      changed: {},
      lsn: null,
      commitTime: isoMicros(batch.commitTimeUs),
      txId: null,
      rows: batch.rows,
    };
  }
  const decoded = decodeRecord(record.key, record.value, schemas?.schemaOf(record));
  if (decoded.kind === 'tombstone') {
    return {
      ...where,
      op: 'tombstone',
      table: null,
      key: decoded.key === null ? null : Object.fromEntries(decoded.key),
      changed: {},
      lsn: null,
      commitTime: null,
      txId: null,
    };
  }
  const { source } = decoded;
  return {
    ...where,
    op: decoded.op,
    table: `${decoded.schema}.${decoded.table}`,
    key: decoded.key === null ? null : Object.fromEntries(decoded.key),
    changed: changedColumns(decoded.before, decoded.after),
    lsn: source.lsn === null ? null : formatLsn(source.lsn),
    commitTime: isoMicros(source.tsUs),
    txId: source.txId === null ? null : String(source.txId),
  };
}

function changedColumns(
  before: ReadonlyMap<string, ColumnValue> | null,
  after: ReadonlyMap<string, ColumnValue> | null,
): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  if (after === null) return out;
  for (const [column, value] of after) {
    if (value === UNCHANGED || typeof value === 'symbol') continue;
    if (before?.has(column) && before.get(column) === value) continue;
    out[column] = value;
  }
  return out;
}

function isoMicros(us: bigint): string {
  const ms = Number(us / 1000n);
  const micros = String(us % 1_000_000n).padStart(6, '0');
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${micros}Z`);
}

/** One line: commit time, LSN, op, table, key, changed columns (long values cut). */
export function formatTailEvent(e: TailEvent): string {
  const show = (v: string | null) =>
    v === null ? 'NULL' : JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  const key =
    e.key === null
      ? '-'
      : Object.entries(e.key)
          .map(([k, v]) => `${k}=${show(v)}`)
          .join(',');
  const changed = Object.entries(e.changed).map(([k, v]) => `${k}=${show(v)}`);
  return [
    e.commitTime ?? '-'.padEnd(27),
    (e.lsn ?? '-').padEnd(12),
    e.op === 'tombstone' ? 'tombstone' : e.op,
    e.table ?? '',
    e.rows === undefined ? `key ${key}` : `${e.rows} rows (a row batch)`,
    changed.length === 0 ? '' : changed.join(' '),
    `@${e.offset}`,
  ]
    .filter((part) => part !== '')
    .join('  ');
}
