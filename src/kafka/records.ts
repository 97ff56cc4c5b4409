/**
 * What capture, apply and the operator commands see of Kafka: the record types and the ports they are
 * written against. The clients that implement the ports against a broker are ./producer.ts,
 * ./consumer.ts and ./admin.ts; src/testing/memory-kafka.ts implements them in memory (and can fail on
 * purpose) for tests without a broker.
 *
 * Delivery between capture and apply is at-least-once: a restarted capture sends again what it cannot
 * prove was acknowledged, so an applier must tolerate a record (a whole transaction) arriving twice. It
 * does, by position: see src/sink/applier.ts. What the records' headers mean is ./wire-headers.ts.
 */

/** A record to produce. */
export interface OutRecord {
  readonly topic: string;
  /** Absent: the producer picks the partition from the key. */
  readonly partition?: number;
  readonly key: Buffer | null;
  /** null is a tombstone. */
  readonly value: Buffer | null;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A consumed record. */
export interface InRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  /** Views into the fetched response (never reused by the client, so safe to keep). */
  readonly key: Buffer | null;
  /** null is a tombstone; an empty value stays an empty Buffer. */
  readonly value: Buffer | null;
  readonly headers: ReadonlyMap<string, string>;
  /** The record's timestamp (CreateTime: when the producer made it). */
  readonly timestampMs: number;
}

/** Where a consumer starts in one partition: the offset of the next record to read. */
export interface StartOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
}

/**
 * Sends records; capture sends its change events with it, an applier its dead letters.
 *
 * - Durability: `send` resolves once the broker acknowledged every record of the call with acks=all,
 *   i.e. each is written to every in-sync replica. Only then may the caller count them as delivered
 *   (capture moves its slot's flush LSN on that, src/offsets/ack-tracker.ts).
 * - Ordering: calls may be made without awaiting the earlier ones. Records land in each partition in
 *   call order, and the calls resolve in call order.
 * - Failure: once a call rejects, that call and every later one reject (sending later records after an
 *   unacknowledged earlier one would break the order). Records of a rejected call may still have been
 *   written: the owner drops this producer and sends again from its last acknowledged position, so a
 *   record can arrive twice (at-least-once); within one producer nothing is written twice (idempotent).
 * - Calls may repeat: the same records sent twice are written twice (no deduplication by content).
 * - Concurrency: one owner; calls are queued, never run in parallel with each other.
 */
export interface RecordProducer {
  send(records: readonly OutRecord[]): Promise<void>;
}

/**
 * Reads records from explicit start offsets; an applier's source of change events.
 *
 * - Position: the caller keeps its own position (an applier in its target database) and passes it as the
 *   start offsets; nothing is committed to Kafka. Partitions without a start offset start at their
 *   earliest retained record. A start offset outside a partition's retained range is a FatalError (the
 *   topic was recreated, or retention removed records not read yet), never a silent jump.
 * - Ordering: `batches` yields arrays of whatever arrived, each in offset order per partition; each
 *   record is yielded once per consumer. A new consumer from the same start offsets yields the same
 *   records again (reads repeat; the topic is not changed by reading).
 * - Durability: only records every in-sync replica holds (below the high watermark) are yielded, so a
 *   record read is never taken back.
 * - Lifecycle: `batches` ends when `signal` aborts (also while still connecting); a broker failure makes
 *   it throw (RetryableError, or FatalError as above). `close` is called once, after `batches` ended.
 *   One caller at a time.
 */
export interface RecordConsumer {
  batches(signal: AbortSignal): AsyncGenerator<InRecord[]>;
  close(): Promise<void>;
}

/** A topic as pgbisync creates it (src/kafka/topics.ts): never left to broker defaults. */
export interface TopicSpec {
  readonly name: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly configs: Readonly<Record<string, string>>;
}

/**
 * Topic administration for setup, status, doctor, tail and teardown.
 *
 * - `createTopics` may repeat: topics that exist are left as they are (settings not compared), and it
 *   resolves once every partition of the created ones has a leader (a producer can use them at once).
 * - `endOffsets` is the offset the next record of each partition will get (0 for an empty partition),
 *   for every partition of the topic.
 * - `deleteTopics` of an empty list does nothing. Calls are independent of each other; `close` once.
 */
export interface TopicAdmin {
  listTopics(): Promise<string[]>;
  /** Returns the names of the topics it created. */
  createTopics(specs: readonly TopicSpec[]): Promise<string[]>;
  deleteTopics(names: readonly string[]): Promise<void>;
  endOffsets(topic: string): Promise<Map<number, bigint>>;
  close(): Promise<void>;
}
