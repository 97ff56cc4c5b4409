/**
 * Kafka in memory, for tests without a broker: a topic log whose producer, consumer and admin honour the
 * contracts of the ports (src/kafka/records.ts), and wrappers that make chosen calls fail or wait.
 *
 * - {@link MemoryKafka}: topics of partitions of records. A send writes its records at once, in call
 *   order, and resolves on a later turn of the event loop, calls in call order; after a failure (an
 *   unknown topic or partition) every later send of that producer rejects. A consumer yields what is
 *   there from its start offsets, then waits for more; a start offset beyond a partition's end is a
 *   FatalError, as on a broker. Records are never removed (no retention).
 * - {@link FaultyProducer}: the Nth send fails (its records written or not: both happen on a broker) or
 *   its acknowledgement is held until released, so that later calls are acknowledged first. Holding
 *   breaks the port's ordering promise on purpose: it shows that the caller's safety does not depend on
 *   it.
 * - {@link FaultyConsumer}: the Nth fetch fails.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type {
  InRecord,
  OutRecord,
  RecordConsumer,
  RecordProducer,
  StartOffset,
  TopicAdmin,
  TopicSpec,
} from '../kafka/records.ts';
import { ErrorCode, FatalError, RetryableError } from '../runtime/errors.ts';

const NO_HEADERS: ReadonlyMap<string, string> = new Map();

export interface MemoryConsumerOptions {
  readonly topics: readonly string[];
  readonly startOffsets?: readonly StartOffset[];
  /** At most this many records per yielded batch (default: all that are there). */
  readonly maxBatchRecords?: number;
}

export class MemoryKafka {
  readonly #topics = new Map<string, InRecord[][]>();
  /** Resolved (and replaced) whenever records are written: wakes waiting consumers. */
  #written = Promise.withResolvers<void>();

  /** Creates a topic (one partition unless told); an existing one is left as it is. */
  createTopic(name: string, partitions = 1): void {
    if (!this.#topics.has(name))
      this.#topics.set(
        name,
        Array.from({ length: partitions }, () => []),
      );
  }

  /** Every record of a partition, in offset order. */
  records(topic: string, partition = 0): readonly InRecord[] {
    return this.#topics.get(topic)?.[partition] ?? [];
  }

  producer(): RecordProducer {
    return new MemoryProducer(this);
  }

  consumer(options: MemoryConsumerOptions): RecordConsumer {
    return new MemoryConsumer(this, options);
  }

  admin(): TopicAdmin {
    return {
      listTopics: async () => [...this.#topics.keys()],
      createTopics: async (specs: readonly TopicSpec[]) => {
        const created = specs.filter((s) => !this.#topics.has(s.name));
        for (const spec of created) this.createTopic(spec.name, spec.partitions);
        return created.map((s) => s.name);
      },
      deleteTopics: async (names: readonly string[]) => {
        for (const name of names) this.#topics.delete(name);
      },
      endOffsets: async (topic: string) =>
        new Map((this.#topics.get(topic) ?? []).map((p, i) => [i, BigInt(p.length)])),
      close: async () => undefined,
    };
  }

  // For the producer and consumer below.

  /** The partition a record goes to; undefined when its topic or partition does not exist. */
  partitionOf(record: OutRecord): number | undefined {
    const partitions = this.#topics.get(record.topic);
    if (partitions === undefined) return undefined;
    // Like Kafka's default partitioner, a key always lands in the same partition (not the same hash).
    const index =
      record.partition ?? (record.key ?? Buffer.alloc(0)).reduce((h, b) => h + b, 0) % partitions.length;
    return index >= 0 && index < partitions.length ? index : undefined;
  }

  /** Appends records whose partitions exist (see partitionOf), in order, and wakes the consumers. */
  write(records: readonly OutRecord[]): void {
    for (const r of records) {
      const partition = this.partitionOf(r)!;
      const log = this.#topics.get(r.topic)![partition]!;
      const headers = r.headers === undefined ? NO_HEADERS : new Map(Object.entries(r.headers));
      log.push({
        topic: r.topic,
        partition,
        offset: BigInt(log.length),
        key: r.key,
        value: r.value,
        headers: headers.size === 0 ? NO_HEADERS : headers,
        timestampMs: Date.now(),
      });
    }
    this.#written.resolve();
    this.#written = Promise.withResolvers<void>();
  }

  /** Settles at the next write. */
  nextWrite(): Promise<void> {
    return this.#written.promise;
  }

  partitions(topic: string): readonly (readonly InRecord[])[] | undefined {
    return this.#topics.get(topic);
  }
}

class MemoryProducer implements RecordProducer {
  readonly #kafka: MemoryKafka;
  #failure: Error | undefined;

  constructor(kafka: MemoryKafka) {
    this.#kafka = kafka;
  }

  async send(records: readonly OutRecord[]): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const lost = records.find((r) => this.#kafka.partitionOf(r) === undefined);
    if (lost !== undefined) {
      this.#failure = new RetryableError(`kafka topic ${lost.topic}[${lost.partition ?? 0}] does not exist`, {
        code: ErrorCode.KAFKA,
      });
      throw this.#failure;
    }
    this.#kafka.write(records);
    // Acknowledged on a later turn: callers must not take a call's return for its acknowledgement.
    // Turns run in the order they were asked for, so calls resolve in call order.
    await nextTurn();
  }
}

class MemoryConsumer implements RecordConsumer {
  readonly #kafka: MemoryKafka;
  readonly #o: MemoryConsumerOptions;

  constructor(kafka: MemoryKafka, options: MemoryConsumerOptions) {
    this.#kafka = kafka;
    this.#o = options;
  }

  async *batches(signal: AbortSignal): AsyncGenerator<InRecord[]> {
    /** Next offset to read per topic and partition; absent: the earliest (0, nothing is ever removed). */
    const next = new Map<string, number>();
    const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;
    for (const topic of this.#o.topics) {
      if (this.#kafka.partitions(topic) === undefined) {
        throw new RetryableError(`kafka topic ${topic} does not exist`, { code: ErrorCode.KAFKA });
      }
    }
    for (const s of this.#o.startOffsets ?? []) {
      const log = this.#kafka.partitions(s.topic)?.[s.partition];
      if (log === undefined || s.offset < 0n || s.offset > BigInt(log.length)) {
        throw new FatalError('a kafka start offset is outside the retained range of its partition', {
          code: ErrorCode.KAFKA,
        });
      }
      next.set(key(s.topic, s.partition), Number(s.offset));
    }
    const max = this.#o.maxBatchRecords ?? Number.POSITIVE_INFINITY;
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    while (!signal.aborted) {
      const written = this.#kafka.nextWrite();
      const batch: InRecord[] = [];
      for (const topic of this.#o.topics) {
        for (const [p, log] of (this.#kafka.partitions(topic) ?? []).entries()) {
          const from = next.get(key(topic, p)) ?? 0;
          const taken = log.slice(from, from + (max - batch.length));
          batch.push(...taken);
          next.set(key(topic, p), from + taken.length);
        }
      }
      if (batch.length > 0) yield batch;
      else await Promise.race([written, aborted]);
    }
  }

  async close(): Promise<void> {}
}

export interface ProducerFaults {
  /** The Nth call (from 1) fails; `written`: its records were written nevertheless. */
  readonly fail?: { readonly call: number; readonly written?: boolean; readonly error?: Error };
  /** These calls' acknowledgements wait for `release(call)`. */
  readonly hold?: readonly number[];
}

export class FaultyProducer implements RecordProducer {
  readonly #inner: RecordProducer;
  readonly #faults: ProducerFaults;
  readonly #held = new Map<number, PromiseWithResolvers<void>>();
  #calls = 0;
  #failure: Error | undefined;

  constructor(inner: RecordProducer, faults: ProducerFaults) {
    this.#inner = inner;
    this.#faults = faults;
    for (const call of faults.hold ?? []) this.#held.set(call, Promise.withResolvers<void>());
  }

  /** Calls made so far. */
  get calls(): number {
    return this.#calls;
  }

  async send(records: readonly OutRecord[]): Promise<void> {
    const call = ++this.#calls;
    // The port's failure rule holds here too: nothing after a failed call is sent.
    if (this.#failure !== undefined) throw this.#failure;
    const fail = this.#faults.fail;
    if (fail?.call === call) {
      this.#failure =
        fail.error ??
        new RetryableError(`kafka produce failed (call ${call}, injected)`, { code: ErrorCode.KAFKA });
      if (fail.written === true) await this.#inner.send(records);
      throw this.#failure;
    }
    const acked = this.#inner.send(records);
    const held = this.#held.get(call);
    if (held !== undefined) {
      acked.catch(() => undefined); // awaited below, once released
      await held.promise;
    }
    await acked;
  }

  /** Lets a held call's acknowledgement through. */
  release(call: number): void {
    const held = this.#held.get(call);
    if (held === undefined) throw new Error(`call ${call} is not held`);
    held.resolve();
  }
}

export class FaultyConsumer implements RecordConsumer {
  readonly #inner: RecordConsumer;
  readonly #failFetch: number;
  readonly #error: Error;

  /** The `failFetch`th batch (from 1) is not yielded: `batches` throws `error` instead. */
  constructor(inner: RecordConsumer, failFetch: number, error?: Error) {
    this.#inner = inner;
    this.#failFetch = failFetch;
    this.#error =
      error ??
      new RetryableError(`kafka fetch failed (fetch ${failFetch}, injected)`, { code: ErrorCode.KAFKA });
  }

  async *batches(signal: AbortSignal): AsyncGenerator<InRecord[]> {
    let fetch = 0;
    for await (const batch of this.#inner.batches(signal)) {
      if (++fetch === this.#failFetch) throw this.#error;
      yield batch;
    }
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
