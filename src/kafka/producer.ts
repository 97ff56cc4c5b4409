/**
 * The producer port (./records.ts `RecordProducer`) on @platformatic/kafka: idempotent, acks=all, sends
 * queued in call order with one request in flight.
 *
 * Library behaviours this module works around (each one seen against a real broker):
 * - a produce request carries one record batch per partition; a batch above the topic's
 *   `max.message.bytes` (1 MiB by default) is refused with MESSAGE_TOO_LARGE, so sends are cut into
 *   requests of at most `maxRequestBytes`;
 * - a record whose key, value or header is not a Buffer (e.g. a string header key without a serializer)
 *   makes `send` hang forever, without error or timeout: records are checked before they are queued and
 *   every request has an acknowledgement deadline.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type MessageToProduce, Producer } from '@platformatic/kafka';
import {
  BlockedError,
  ErrorCode,
  FatalError,
  type PgbisyncError,
  RetryableError,
} from '../runtime/errors.ts';
import { baseOptions, hasApiError, type KafkaConnectionOptions, utf8Serializer } from './connection.ts';
import type { OutRecord, RecordProducer } from './records.ts';

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
  /**
   * Asked before each request: an error refuses it, and the producer then fails with that error (every
   * send not acknowledged rejects, as after a failed request). For an owner that must not write once it
   * may have lost what allowed it to (src/daemon/components.ts: a capture whose process was stalled).
   */
  readonly mayRequest?: () => PgbisyncError | undefined;
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
export class KafkaProducer implements RecordProducer {
  readonly #producer: Producer<Buffer, Buffer, string, string>;
  readonly #compression: KafkaCompression;
  readonly #maxRequestBytes: number;
  readonly #ackTimeoutMs: number;
  readonly #lingerMs: number;
  readonly #mayRequest: (() => PgbisyncError | undefined) | undefined;
  #queue: QueuedSend[] = [];
  /** Bytes of the queued records not yet handed to a request. */
  #queuedBytes = 0;
  #pumping = false;
  /** The calls the request in flight completes. */
  #inFlight: readonly QueuedSend[] = [];
  #idle: PromiseWithResolvers<void> | undefined;
  #failure: PgbisyncError | undefined;
  #closed = false;

  constructor(options: KafkaProducerOptions) {
    this.#compression = options.compression ?? 'none';
    this.#maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    this.#lingerMs = options.lingerMs ?? 0;
    this.#mayRequest = options.mayRequest;
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

  /**
   * Sends nothing more: every send not acknowledged yet rejects with `reason` at once, and so does every
   * later one. The records of the request in flight may still land (it is not waited for, and {@link
   * close} cuts it); nothing queued behind it is sent. For an owner that must not write any longer (a
   * capture that lost its lease: another instance may be streaming its slot already).
   */
  abandon(reason: PgbisyncError): void {
    if (this.#failure === undefined) this.#fail(reason, this.#inFlight);
  }

  /**
   * Waits for the queued sends, then closes the connections; after {@link abandon}, closes them at
   * once (the request in flight is not waited for: its answer no longer matters to its owner).
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pumping && this.#failure === undefined) await this.#idle?.promise;
    await this.#producer.close(this.#failure !== undefined);
  }

  async #pump(): Promise<void> {
    // No await between the emptiness check and `#pumping = false`: a send() in between would be stranded.
    while (this.#queue.length > 0) {
      // Asked before the linger's timer too: a process waking from a stall runs the I/O that completed
      // meanwhile before its timers (the owner's check reads the stall only until they ran).
      let refused = this.#mayRequest?.();
      if (
        refused === undefined &&
        this.#lingerMs > 0 &&
        this.#queuedBytes < this.#maxRequestBytes &&
        !this.#closed
      ) {
        await sleep(this.#lingerMs);
        refused = this.#mayRequest?.();
      }
      const { messages, completed } = this.#nextRequest();
      if (refused !== undefined) {
        this.#fail(refused, completed);
        break;
      }
      this.#inFlight = completed; // a call cut in two stays queued: rejected as such
      try {
        if (messages.length > 0) await this.#sendRequest(messages);
      } catch (error) {
        this.#fail(produceError(error, messages), completed);
        break;
      } finally {
        this.#inFlight = [];
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

/** `schema.table` from a change event's source block (Debezium JSON, with or without the schema envelope). */
function tableOf(value: Buffer | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    const event = JSON.parse(value.toString('utf8')) as { payload?: { source?: Source }; source?: Source };
    const source = event.payload?.source ?? event.source;
    return source?.schema !== undefined && source.table !== undefined
      ? `${source.schema}.${source.table}`
      : undefined;
  } catch {
    return undefined; // not JSON: named by topic and key only
  }
}

interface Source {
  readonly schema?: string;
  readonly table?: string;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
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

function produceError(
  error: unknown,
  messages: readonly MessageToProduce<Buffer, Buffer, string, string>[],
): PgbisyncError {
  const records = messages.length;
  if (hasApiError(error, 'MESSAGE_TOO_LARGE') || hasApiError(error, 'RECORD_LIST_TOO_LARGE')) {
    // The request's largest record is the culprit (a request holds one record above maxRequestBytes).
    const largest = messages.reduce((a, b) => ((b.value?.length ?? 0) > (a.value?.length ?? 0) ? b : a));
    const table = tableOf(largest.value);
    const key = largest.key === undefined ? 'none' : truncate(largest.key.toString('utf8'), 200);
    return new BlockedError(
      `kafka refused an event of ${largest.value?.length ?? 0} bytes${table === undefined ? '' : ` of table ${table}`} (key ${key}) on topic ${largest.topic} as too large${records > 1 ? ` (in a request of ${records} records)` : ''}`,
      {
        code: ErrorCode.KAFKA_RECORD_TOO_LARGE,
        cause: error,
        hint: `raise the topic's limit (kafka-configs.sh --alter --entity-type topics --entity-name ${largest.topic} --add-config max.message.bytes=<bytes>; config kafka.maxMessageBytes for topics setup creates) or enable kafka.compression; the capture resumes from the same transaction`,
      },
    );
  }
  return new RetryableError(`kafka produce of ${records} records failed`, {
    code: ErrorCode.KAFKA,
    cause: error,
  });
}
