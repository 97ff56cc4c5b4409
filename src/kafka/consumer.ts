/**
 * The consumer port (./records.ts `RecordConsumer`) on @platformatic/kafka: explicit start offsets, no
 * committed offsets, bounded fetches and a bounded queue between the fetch loop and the caller.
 *
 * Library behaviours this module works around (each one seen against a real broker):
 * - the consumer fetches up to 50 MB per request with no per-partition limit unless told otherwise
 *   (1.5 s to the first record and ~350 MB RSS on a 40 MB backlog), so both limits are set;
 * - with `fallbackMode: 'earliest'` an out-of-range start offset silently restarts from the beginning,
 *   and with any fallback other than 'earliest', partitions without an explicit offset start at the end:
 *   every partition gets an explicit start offset and an out-of-range one fails;
 * - a consumer always joins its group; after a crash a dynamic member's partitions stay assigned until its
 *   session times out (~60 s), so consumers use static membership (`groupInstanceId`).
 */
import { Consumer, ListOffsetTimestamps, type Message, type MessagesStream } from '@platformatic/kafka';
import { BlockedError, ErrorCode, type PgbisyncError, RetryableError } from '../runtime/errors.ts';
import { baseOptions, hasApiError, type KafkaConnectionOptions, utf8Deserializer } from './connection.ts';
import type { InRecord, RecordConsumer, StartOffset } from './records.ts';

export interface ConsumerOptions extends KafkaConnectionOptions {
  /** Used for partition assignment only (no offset is committed); also the static member id. */
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Start positions (next offset to read) per topic/partition; others start at the earliest offset. */
  readonly startOffsets: readonly StartOffset[];
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
 * BlockedError (the topic was recreated or retention removed unread events), never a silent jump.
 * `batches` stops when `signal` aborts, also while still joining the group.
 */
export class KafkaConsumer implements RecordConsumer {
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
    const opened = await untilAborted(this.#open(), signal, (late) => {
      // The read stopped while the stream was being made: it is closed unused (its errors noted, unread).
      void Promise.resolve()
        .then(() => late.stream.close())
        .catch(() => undefined);
    });
    if (opened === undefined) return;
    const { stream } = opened;
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
    if (opened.early.error !== undefined) onError(opened.early.error);
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
        const start = explicit.get(`${topic}:${partition}`);
        if (start !== undefined && start < first) throw eventsGone(topic, partition, start, first);
        offsets.push({ topic, partition, offset: start ?? first });
      }
    }
    // The callback form: the stream gets an 'error' listener the moment it exists. Its start runs on the
    // next tick and can fail before any promise continuation could listen (the consumer closed while it
    // joined: "Client is closed"); an 'error' event without a listener ends the process.
    const early: { error?: unknown } = {};
    try {
      const stream = await new Promise<MessagesStream<Buffer, Buffer, string, string>>((resolve, reject) =>
        this.#consumer.consume(
          {
            topics,
            mode: 'manual',
            fallbackMode: 'fail',
            offsets,
            autocommit: false,
            maxWaitTime: o.maxWaitMs,
          },
          (error, made) => {
            if (error !== null && error !== undefined) {
              reject(error);
              return;
            }
            made!.on('error', (e: unknown) => {
              early.error ??= e;
            });
            resolve(made!);
          },
        ),
      );
      return { stream, early };
    } catch (error) {
      throw new RetryableError('kafka consume failed to start', { code: ErrorCode.KAFKA, cause: error });
    }
  }
}

/**
 * Records from `start` on were to be read, the partition keeps them from `first` on: what lay between is
 * gone. A BlockedError: this reader's stream only (its caller names the direction and the fix).
 */
export function eventsGone(topic: string, partition: number, start: bigint, first: bigint): BlockedError {
  return new BlockedError(
    `kafka topic ${topic}[${partition}] keeps records from offset ${first} on, but the records from offset ${start} are not read yet: ${first - start} records were deleted before they were applied (the topic's retention, or it was recreated)`,
    {
      code: ErrorCode.KAFKA_EVENTS_GONE,
      hint: "re-copy the source node's tables with `pgbisync resync <source node>` (it moves this position past the deleted records); raise the topic's retention.ms above the longest outage",
    },
  );
}

function consumeError(error: unknown): PgbisyncError {
  if (hasApiError(error, 'OFFSET_OUT_OF_RANGE')) {
    return new BlockedError('a kafka start offset is outside the retained range of its partition', {
      code: ErrorCode.KAFKA_EVENTS_GONE,
      cause: error,
      hint: "the topic was recreated or retention deleted records not yet applied: re-copy the source node's tables with `pgbisync resync <source node>`",
    });
  }
  return new RetryableError('kafka consume failed', { code: ErrorCode.KAFKA, cause: error });
}

/**
 * Resolves with the value, or with undefined as soon as `signal` aborts; a value that comes after that
 * goes to `dispose`.
 */
async function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  dispose: (late: T) => void,
): Promise<T | undefined> {
  const disposeLate = () => promise.then(dispose, () => undefined);
  if (signal.aborted) {
    void disposeLate();
    return undefined;
  }
  const aborted = Promise.withResolvers<undefined>();
  const onAbort = () => aborted.resolve(undefined);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const value = await Promise.race([promise, aborted.promise]);
    if (value === undefined) void disposeLate();
    return value;
  } finally {
    signal.removeEventListener('abort', onAbort);
    promise.catch(() => undefined);
  }
}
