/**
 * Between the transaction assembler and the producer: collects the assembler's records into producer
 * calls, tracks every transaction's acknowledgement in commit order (AckTracker), and bounds the bytes
 * sent but not yet acknowledged.
 *
 * Ordering (the no-loss rule, ../offsets/ack-tracker.ts): a transaction is acknowledged when its own
 * send and every earlier send are. Each send's promise is chained behind all earlier ones, so a
 * position is never confirmed past a send that is not acknowledged, whatever order the producer's
 * acknowledgements arrive in, and never past a send that failed.
 *
 * No I/O of its own: capture (./capture.ts) feeds it from the replication stream and moves the slot on
 * `onConfirm`. Not reentrant: one caller.
 */
import type { OutRecord, RecordProducer } from '../kafka/records.ts';
import { AckTracker } from '../offsets/ack-tracker.ts';

export interface CaptureSenderOptions {
  readonly producer: RecordProducer;
  /** Each new, strictly increasing position the slot's flush LSN may move to. */
  readonly onConfirm: (lsn: bigint) => void;
  /** A producer call is made once this many records are collected (and at every flush). */
  readonly maxBatchEvents: number;
  /** Above this many record bytes (keys and values) sent and not acknowledged, `overBound` is true. */
  readonly maxUnackedBytes: number;
  /** After every flush: what it sent. */
  readonly onSent?: (sent: SentBatch) => void;
}

export interface SentBatch {
  /** Change events (tombstones not counted), in all and by table ('schema.table'). */
  readonly events: number;
  readonly byTable: ReadonlyMap<string, number>;
  /** Kafka records, tombstones included. */
  readonly records: number;
}

/** A producer call not acknowledged yet, with its record bytes. */
interface Unacked {
  readonly sent: Promise<unknown>;
  readonly bytes: number;
  done: boolean;
}

export class CaptureSender {
  readonly #o: CaptureSenderOptions;
  readonly #tracker: AckTracker;
  #batch: OutRecord[] = [];
  #batchBytes = 0;
  #byTable = new Map<string, number>();
  #events = 0;
  /** End LSNs of the transactions whose every record is in the batch (or sent before it). */
  #commits: bigint[] = [];
  /** Settles when every send so far is acknowledged; rejects once one failed. */
  #chain: Promise<unknown> = Promise.resolve();
  /** Sends not yet acknowledged, oldest first. */
  readonly #unacked: Unacked[] = [];
  #unackedBytes = 0;

  constructor(options: CaptureSenderOptions) {
    this.#o = options;
    this.#tracker = new AckTracker(0n, options.onConfirm);
  }

  /** The first failed acknowledgement: nothing after it is ever confirmed (capture restarts). */
  get failure(): unknown {
    return this.#tracker.failure;
  }

  /** Whether the bytes not acknowledged (sent or still collected) exceed `maxUnackedBytes`. */
  get overBound(): boolean {
    return this.#unackedBytes + this.#batchBytes > this.#o.maxUnackedBytes;
  }

  // The assembler's output (./transaction-assembler.ts AssemblerOutput).

  record(record: OutRecord): void {
    this.#batch.push(record);
    this.#batchBytes += (record.key?.length ?? 0) + (record.value?.length ?? 0);
    if (this.#batch.length >= this.#o.maxBatchEvents) this.flush();
  }

  event(table: string): void {
    this.#events++;
    this.#byTable.set(table, (this.#byTable.get(table) ?? 0) + 1);
  }

  commit(endLsn: bigint): void {
    this.#commits.push(endLsn);
  }

  keepalive(walEnd: bigint): void {
    this.flush();
    this.#tracker.idle(walEnd);
  }

  /** Sends what was collected (one producer call) and tracks the transactions it completes. */
  flush(): void {
    if (this.#batch.length === 0 && this.#commits.length === 0) return;
    const records = this.#batch;
    const sent = records.length === 0 ? Promise.resolve() : this.#o.producer.send(records);
    // A transaction is acknowledged when its own send and every earlier one are.
    const chain = Promise.all([this.#chain, sent]);
    this.#chain = chain;
    chain.catch(() => undefined);
    // Every transaction of this flush is acknowledged by the same promise: tracking the last one is
    // the same as tracking each (confirmation only ever moves forward), and keeps the tracker short.
    const lastCommit = this.#commits.at(-1);
    if (lastCommit !== undefined) this.#tracker.track(lastCommit, chain);
    if (records.length > 0) {
      const entry: Unacked = { sent: chain, bytes: this.#batchBytes, done: false };
      const settle = () => {
        entry.done = true;
      };
      chain.then(settle, settle);
      this.#unacked.push(entry);
      this.#unackedBytes += this.#batchBytes;
    }
    this.#o.onSent?.({ events: this.#events, byTable: this.#byTable, records: records.length });
    this.#batch = [];
    this.#batchBytes = 0;
    this.#byTable = new Map();
    this.#events = 0;
    this.#commits = [];
  }

  /**
   * Waits until at most `maxUnackedBytes` are sent and not acknowledged (or `signal` aborts); the caller
   * reads nothing more from the slot meanwhile. Throws the failure once a send failed.
   */
  async backpressure(signal: AbortSignal): Promise<void> {
    while (this.#unacked[0]?.done === true) this.#unackedBytes -= this.#unacked.shift()!.bytes;
    while (this.#unackedBytes > this.#o.maxUnackedBytes && !signal.aborted) {
      const oldest = this.#unacked.shift()!;
      await oldest.sent.catch(() => undefined);
      this.#unackedBytes -= oldest.bytes;
      if (this.#tracker.failure !== undefined) throw this.#tracker.failure;
    }
  }

  /** Sends what was collected and waits until every send settled (a graceful stop's last step). */
  async drain(): Promise<void> {
    this.flush();
    await this.#chain.catch(() => undefined);
  }
}
