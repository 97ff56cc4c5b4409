/**
 * pgbisync's Kafka ports, implemented with @platformatic/kafka (pure TypeScript, maintained; chosen by
 * measurement, see bench/kafka-clients.ts). Callers see only these small interfaces.
 *
 * Library behaviours this module works around (each one seen against a real broker):
 * - a produce request carries one record batch per partition; a batch above the topic's
 *   `max.message.bytes` (1 MiB by default) is refused with MESSAGE_TOO_LARGE, so sends are cut into
 *   requests of at most `maxRequestBytes`;
 * - a record whose key, value or header is not a Buffer (e.g. a string header key without a serializer)
 *   makes `send` hang forever, without error or timeout: records are checked before they are queued and
 *   every request has an acknowledgement deadline;
 * - the consumer fetches up to 50 MB per request with no per-partition limit unless told otherwise
 *   (1.5 s to the first record and ~350 MB RSS on a 40 MB backlog), so both limits are set;
 * - with `fallbackMode: 'earliest'` an out-of-range start offset silently restarts from the beginning,
 *   and with any fallback other than 'earliest', partitions without an explicit offset start at the end:
 *   every partition gets an explicit start offset and an out-of-range one fails;
 * - a consumer always joins its group; after a crash a dynamic member's partitions stay assigned until its
 *   session times out (~60 s), so consumers use static membership (`groupInstanceId`).
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  Admin,
  type BaseOptions,
  Consumer,
  findErrorBy,
  ListOffsetTimestamps,
  type Message,
  type MessageToProduce,
  Producer,
  type SASLMechanismValue,
} from '@platformatic/kafka';
import { ErrorCode, FatalError, type PgbisyncError, RetryableError } from '../runtime/errors.ts';

export interface KafkaConnectionOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly sasl?: {
    mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
    username: string;
    password: string;
  };
  readonly tls?: boolean | { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
}

export interface OutRecord {
  readonly topic: string;
  readonly partition?: number;
  readonly key: Buffer | null;
  /** null is a tombstone. */
  readonly value: Buffer | null;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface InRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  /** Views into the fetched response (never reused by the client, so safe to keep). */
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: ReadonlyMap<string, string>;
  readonly timestampMs: number;
}

const SASL_MECHANISMS: Record<NonNullable<KafkaConnectionOptions['sasl']>['mechanism'], SASLMechanismValue> =
  {
    plain: 'PLAIN',
    'scram-sha-256': 'SCRAM-SHA-256',
    'scram-sha-512': 'SCRAM-SHA-512',
  };

function baseOptions(o: KafkaConnectionOptions): BaseOptions {
  const tls: TlsOptions | undefined =
    o.tls === undefined || o.tls === false ? undefined : o.tls === true ? {} : o.tls;
  return {
    clientId: o.clientId,
    bootstrapBrokers: [...o.brokers],
    connectTimeout: 10_000,
    retries: 5,
    ...(o.sasl === undefined
      ? {}
      : {
          sasl: {
            mechanism: SASL_MECHANISMS[o.sasl.mechanism],
            username: o.sasl.username,
            password: o.sasl.password,
          },
        }),
    ...(tls === undefined ? {} : { tls }),
  };
}

const utf8Serializer = (s?: string) => (s === undefined ? undefined : Buffer.from(s));
const utf8Deserializer = (b?: Buffer) => b?.toString('utf8');

export type KafkaCompression = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

export interface KafkaProducerOptions extends KafkaConnectionOptions {
  readonly compression?: KafkaCompression;
  /**
   * Upper bound of one produce request, counted as uncompressed key + value + headers + 32 bytes per
   * record. Must stay below the topics' `max.message.bytes` (broker default 1 MiB); a single larger record
   * is sent alone and fails with a FatalError if the broker refuses it.
   */
  readonly maxRequestBytes?: number;
  /** A request not acknowledged within this time fails the producer (the client can hang, see above). */
  readonly ackTimeoutMs?: number;
  /**
   * Before each request, wait this long for more records unless a full request is already queued
   * (Kafka's linger.ms; default 0). Fewer, larger requests: each one costs both sides a round of
   * socket writes and wake-ups whatever its size.
   */
  readonly lingerMs?: number;
}

/**
 * Below the broker's 1 MiB default with room to spare. Not higher: the client's encoding allocates many
 * small buffers per record, and on the bench (bench/kafka-clients.ts, 200-byte records) ~450 kB requests
 * gave a higher median throughput than ~900 kB ones (GC time grows with the request).
 */
const DEFAULT_MAX_REQUEST_BYTES = 450_000;
const DEFAULT_ACK_TIMEOUT_MS = 120_000;
const RECORD_OVERHEAD_BYTES = 32;

interface QueuedSend {
  readonly records: readonly OutRecord[];
  /** Index of the first record not yet handed to a request. */
  next: number;
  /** Each record's size as counted for maxRequestBytes (computed once, in send). */
  readonly sizes: readonly number[];
  readonly done: PromiseWithResolvers<void>;
}

/**
 * Idempotent producer, acks=all. `send` resolves when the broker acknowledged every record of the call.
 *
 * Ordering: calls may be made without awaiting earlier ones. Their records are queued in call order and
 * sent by one loop with at most one request in flight; records queued while a request is in flight are
 * coalesced into the next request (up to `maxRequestBytes`). So records land in each partition in call
 * order and are acknowledged in that order.
 *
 * Failure: when a request fails (after the client's own retries) or misses its deadline, that call and
 * every later one reject with the same error, and so does every later `send`: sending later records after
 * an unacknowledged earlier one would break the order. The owner closes the producer and starts again from
 * its last acknowledged position (at-least-once: records of the failed request may have been written).
 */
export class KafkaProducer {
  readonly #producer: Producer<Buffer, Buffer, string, string>;
  readonly #compression: KafkaCompression;
  readonly #maxRequestBytes: number;
  readonly #ackTimeoutMs: number;
  readonly #lingerMs: number;
  #queue: QueuedSend[] = [];
  /** Bytes of the queued records not yet handed to a request. */
  #queuedBytes = 0;
  #pumping = false;
  #idle: PromiseWithResolvers<void> | undefined;
  #failure: PgbisyncError | undefined;
  #closed = false;

  constructor(options: KafkaProducerOptions) {
    this.#compression = options.compression ?? 'none';
    this.#maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    this.#lingerMs = options.lingerMs ?? 0;
    this.#producer = new Producer({
      ...baseOptions(options),
      idempotent: true,
      acks: -1,
      compression: this.#compression,
      serializers: { headerKey: utf8Serializer, headerValue: utf8Serializer },
    });
  }

  send(records: readonly OutRecord[]): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) {
      return Promise.reject(new RetryableError('kafka producer is closed', { code: ErrorCode.KAFKA }));
    }
    const invalid = records.findIndex((r) => !isValidRecord(r));
    if (invalid >= 0) {
      return Promise.reject(
        new FatalError(`record ${invalid} of a kafka send has a key or value that is not a Buffer or null`, {
          code: ErrorCode.KAFKA,
        }),
      );
    }
    const done = Promise.withResolvers<void>();
    const sizes = records.map(recordBytes);
    for (const size of sizes) this.#queuedBytes += size;
    this.#queue.push({ records, next: 0, sizes, done });
    if (!this.#pumping) {
      this.#pumping = true;
      this.#idle = Promise.withResolvers<void>();
      void this.#pump();
    }
    return done.promise;
  }

  /** Waits for the queued sends, then closes the connections. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pumping) await this.#idle?.promise;
    await this.#producer.close(this.#failure !== undefined);
  }

  async #pump(): Promise<void> {
    // No await between the emptiness check and `#pumping = false`: a send() in between would be stranded.
    while (this.#queue.length > 0) {
      if (this.#lingerMs > 0 && this.#queuedBytes < this.#maxRequestBytes && !this.#closed) {
        await sleep(this.#lingerMs);
      }
      const { messages, completed } = this.#nextRequest();
      try {
        if (messages.length > 0) await this.#sendRequest(messages);
      } catch (error) {
        this.#fail(produceError(error, messages.length), completed);
        break;
      }
      for (const send of completed) send.done.resolve();
    }
    this.#pumping = false;
    this.#idle?.resolve();
  }

  /** Takes records from the head of the queue up to the request size; `completed` are calls fully taken. */
  #nextRequest(): { messages: MessageToProduce<Buffer, Buffer, string, string>[]; completed: QueuedSend[] } {
    const messages: MessageToProduce<Buffer, Buffer, string, string>[] = [];
    const completed: QueuedSend[] = [];
    let bytes = 0;
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      while (head.next < head.records.length) {
        const record = head.records[head.next]!;
        const size = head.sizes[head.next]!;
        if (messages.length > 0 && bytes + size > this.#maxRequestBytes) return { messages, completed };
        messages.push(toMessage(record));
        bytes += size;
        this.#queuedBytes -= size;
        head.next++;
      }
      completed.push(head);
      this.#queue.shift();
    }
    return { messages, completed };
  }

  async #sendRequest(messages: MessageToProduce<Buffer, Buffer, string, string>[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no acknowledgement within ${this.#ackTimeoutMs} ms`)),
        this.#ackTimeoutMs,
      );
    });
    try {
      await Promise.race([this.#producer.send({ messages }), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #fail(error: PgbisyncError, inFlight: readonly QueuedSend[]): void {
    this.#failure = error;
    const queued = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    for (const send of [...inFlight, ...queued]) send.done.reject(error);
  }
}

function isValidRecord(r: OutRecord): boolean {
  return (r.key === null || Buffer.isBuffer(r.key)) && (r.value === null || Buffer.isBuffer(r.value));
}

function recordBytes(r: OutRecord): number {
  let bytes = RECORD_OVERHEAD_BYTES + (r.key?.length ?? 0) + (r.value?.length ?? 0);
  if (r.headers !== undefined) {
    for (const [k, v] of Object.entries(r.headers)) bytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 8;
  }
  return bytes;
}

function toMessage(r: OutRecord): MessageToProduce<Buffer, Buffer, string, string> {
  // An absent key/value is written as null (a tombstone for the value).
  return {
    topic: r.topic,
    ...(r.partition === undefined ? {} : { partition: r.partition }),
    ...(r.key === null ? {} : { key: r.key }),
    ...(r.value === null ? {} : { value: r.value }),
    ...(r.headers === undefined ? {} : { headers: r.headers }),
  };
}

function produceError(error: unknown, records: number): PgbisyncError {
  if (hasApiError(error, 'MESSAGE_TOO_LARGE') || hasApiError(error, 'RECORD_LIST_TOO_LARGE')) {
    return new FatalError(`kafka refused a produce request of ${records} records as too large`, {
      code: ErrorCode.KAFKA,
      cause: error,
      hint: "an event (or the producer's maxRequestBytes) is larger than the topic's max.message.bytes: raise it on the topic (and the broker's message.max.bytes) or enable compression",
    });
  }
  return new RetryableError(`kafka produce of ${records} records failed`, {
    code: ErrorCode.KAFKA,
    cause: error,
  });
}

export interface ConsumerOptions extends KafkaConnectionOptions {
  /** Used for partition assignment only (no offset is committed); also the static member id. */
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Start positions (next offset to read) per topic/partition; others start at the earliest offset. */
  readonly startOffsets: readonly { topic: string; partition: number; offset: bigint }[];
  readonly maxWaitMs: number;
  /**
   * The broker answers a fetch once this many bytes (as stored: compressed) are there, or after
   * `maxWaitMs` (default 1: at once). Larger fetches under load, one every `maxWaitMs` at most when idle.
   */
  readonly minBytes?: number;
  /** Fetch size per partition (default 1 MiB, like the Java consumer); bounds memory and first-record time. */
  readonly maxBytesPerPartition?: number;
  /** The fetch loop pauses while this many records wait to be taken by the caller (default 20,000). */
  readonly maxQueuedRecords?: number;
  /**
   * ... or while their keys and values add up to this many bytes (default 1 MiB). A record is a view
   * into its whole decompressed record batch, so queued records keep those batches alive: the byte
   * bound is what keeps memory flat (20,000 queued records of ~3 KB pinned ~175 MB, measured).
   */
  readonly maxQueuedBytes?: number;
}

const DEFAULT_MAX_BYTES_PER_PARTITION = 1 << 20;
/** Per fetch response, all partitions (was 10 MiB, then 4 MiB with 2 MiB queued: same bench throughput, less RSS). */
const DEFAULT_MAX_BYTES = 2 << 20;
const DEFAULT_MAX_QUEUED_RECORDS = 20_000;
const DEFAULT_MAX_QUEUED_BYTES = 1 << 20;
const NO_HEADERS: ReadonlyMap<string, string> = new Map();

/**
 * Reads records from the given topics starting at explicit offsets (the applier keeps its own offsets in
 * the target database, so no group offset is ever committed). Yields arrays of whatever arrived, in offset
 * order per partition, each record once. A start offset outside the partition's retained range is a
 * FatalError (the topic was recreated or retention removed unread events), never a silent jump.
 * `batches` stops when `signal` aborts, also while still joining the group.
 */
export class KafkaConsumer {
  readonly #consumer: Consumer<Buffer, Buffer, string, string>;
  readonly #options: ConsumerOptions;

  constructor(options: ConsumerOptions) {
    this.#options = options;
    this.#consumer = new Consumer({
      ...baseOptions(options),
      groupId: options.groupId,
      groupInstanceId: options.groupId,
      autocommit: false,
      maxWaitTime: options.maxWaitMs,
      minBytes: options.minBytes ?? 1,
      maxBytes: DEFAULT_MAX_BYTES,
      maxBytesPerPartition: options.maxBytesPerPartition ?? DEFAULT_MAX_BYTES_PER_PARTITION,
      deserializers: { headerKey: utf8Deserializer, headerValue: utf8Deserializer },
    });
  }

  async *batches(signal: AbortSignal): AsyncGenerator<InRecord[]> {
    const o = this.#options;
    const maxQueued = o.maxQueuedRecords ?? DEFAULT_MAX_QUEUED_RECORDS;
    const maxQueuedBytes = o.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    const stream = await untilAborted(this.#open(), signal);
    if (stream === undefined) return;
    let queue: InRecord[] = [];
    let queuedBytes = 0;
    let wake: (() => void) | undefined;
    let failure: unknown;
    // Last offset handed out per topic and partition: each record once, even if a refetch after a
    // rebalance returns it again. Kept as the record's own bigint (no allocation per record).
    const delivered = new Map<string, bigint[]>();
    const onData = (m: Message<Buffer, Buffer, string, string>) => {
      let positions = delivered.get(m.topic);
      if (positions === undefined) {
        positions = [];
        delivered.set(m.topic, positions);
      }
      const last = positions[m.partition];
      if (last !== undefined && m.offset <= last) return;
      positions[m.partition] = m.offset;
      queue.push({
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key ?? null,
        value: m.value ?? null,
        // The client makes a Map per record; retained until the caller takes the batch, the empty ones
        // cost garbage collection (with the allocation-free check above: ~15% more records/s, measured).
        headers: m.headers.size === 0 ? NO_HEADERS : m.headers,
        timestampMs: Number(m.timestamp),
      });
      queuedBytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
      if (queue.length >= maxQueued || queuedBytes >= maxQueuedBytes) stream.pause();
      if (wake !== undefined) {
        const resolve = wake;
        wake = undefined;
        resolve();
      }
    };
    const onError = (error: unknown) => {
      failure ??= error;
      wake?.();
    };
    const onEnd = () => onError(new Error('the kafka message stream ended'));
    const onAbort = () => wake?.();
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('close', onEnd);
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        if (queue.length > 0) {
          const out = queue;
          queue = [];
          queuedBytes = 0;
          if (stream.isPaused()) stream.resume();
          yield out;
          continue;
        }
        if (failure !== undefined) throw consumeError(failure);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      stream.off('close', onEnd);
      stream.off('data', onData);
      await stream.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.#consumer.close(true).catch(() => undefined);
  }

  /** Explicit start offset for every partition (given, or the earliest retained), then the stream. */
  async #open() {
    const o = this.#options;
    const topics = [...o.topics];
    let earliest: Map<string, bigint[]>;
    try {
      earliest = await this.#consumer.listOffsets({ topics, timestamp: ListOffsetTimestamps.EARLIEST });
    } catch (error) {
      throw new RetryableError('kafka list offsets failed', { code: ErrorCode.KAFKA, cause: error });
    }
    const explicit = new Map(o.startOffsets.map((s) => [`${s.topic}:${s.partition}`, s.offset]));
    const offsets: { topic: string; partition: number; offset: bigint }[] = [];
    for (const [topic, partitions] of earliest) {
      for (const [partition, first] of partitions.entries()) {
        offsets.push({ topic, partition, offset: explicit.get(`${topic}:${partition}`) ?? first });
      }
    }
    try {
      return await this.#consumer.consume({
        topics,
        mode: 'manual',
        fallbackMode: 'fail',
        offsets,
        autocommit: false,
        maxWaitTime: o.maxWaitMs,
      });
    } catch (error) {
      throw new RetryableError('kafka consume failed to start', { code: ErrorCode.KAFKA, cause: error });
    }
  }
}

/** Whether the client's error (or one it aggregates) carries this Kafka protocol error name. */
function hasApiError(error: unknown, apiId: string): boolean {
  return error instanceof Error && findErrorBy(error, 'apiId', apiId) !== null;
}

function consumeError(error: unknown): PgbisyncError {
  if (hasApiError(error, 'OFFSET_OUT_OF_RANGE')) {
    return new FatalError('a kafka start offset is outside the retained range of its partition', {
      code: ErrorCode.KAFKA,
      cause: error,
      hint: 'the topic was recreated or retention deleted events not yet applied: resynchronize the target',
    });
  }
  return new RetryableError('kafka consume failed', { code: ErrorCode.KAFKA, cause: error });
}

/** Resolves with the value, or with undefined as soon as `signal` aborts (the value is then dropped). */
async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return undefined;
  }
  const aborted = Promise.withResolvers<undefined>();
  const onAbort = () => aborted.resolve(undefined);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([promise, aborted.promise]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    promise.catch(() => undefined);
  }
}

export interface TopicSpec {
  readonly name: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly configs: Readonly<Record<string, string>>;
}

const TOPIC_READY_TIMEOUT_MS = 30_000;

export class KafkaAdmin {
  readonly #admin: Admin;

  constructor(options: KafkaConnectionOptions) {
    this.#admin = new Admin(baseOptions(options));
  }

  async listTopics(): Promise<string[]> {
    return this.#admin.listTopics();
  }

  /**
   * Creates the topics that do not exist yet (existing ones are left as they are) and returns once every
   * partition of them has a leader: right after CreateTopics a producer can still get "Unknown topic",
   * which the client does not retry.
   */
  async createTopics(specs: readonly TopicSpec[]): Promise<string[]> {
    const existing = new Set(await this.listTopics());
    const created: string[] = [];
    for (const spec of specs) {
      if (existing.has(spec.name)) continue;
      await this.#admin.createTopics({
        topics: [spec.name],
        partitions: spec.partitions,
        replicas: spec.replicationFactor,
        configs: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
      });
      created.push(spec.name);
    }
    if (created.length > 0) await this.#waitForLeaders(created);
    return created;
  }

  async #waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + TOPIC_READY_TIMEOUT_MS;
    for (;;) {
      try {
        const metadata = await this.#admin.metadata({ topics, forceUpdate: true });
        const ready = topics.every((name) => {
          const partitions = metadata.topics.get(name)?.partitions ?? [];
          return partitions.length > 0 && partitions.every((p) => p.leader >= 0);
        });
        if (ready) return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new RetryableError('created kafka topics did not become available', {
            code: ErrorCode.KAFKA,
            cause: error,
          });
        }
      }
      if (Date.now() > deadline) {
        throw new RetryableError('created kafka topics have partitions without a leader', {
          code: ErrorCode.KAFKA,
        });
      }
      await sleep(100);
    }
  }

  async deleteTopics(names: readonly string[]): Promise<void> {
    if (names.length > 0) await this.#admin.deleteTopics({ topics: [...names] });
  }

  /** Latest offset (next to be written) of every partition of the topic. */
  async endOffsets(topic: string): Promise<Map<number, bigint>> {
    const metadata = await this.#admin.metadata({ topics: [topic], forceUpdate: true });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({
      partitionIndex,
      timestamp: ListOffsetTimestamps.LATEST,
    }));
    const listed = await this.#admin.listOffsets({ topics: [{ name: topic, partitions }] });
    const out = new Map<number, bigint>();
    for (const t of listed) for (const p of t.partitions) out.set(p.partitionIndex, p.offset);
    return out;
  }

  async close(): Promise<void> {
    await this.#admin.close();
  }
}
