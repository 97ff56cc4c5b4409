/**
 * Groups consumed Kafka records into source transactions.
 *
 * Our capture marks each transaction's last record (header `pgbisync.last`), so a transaction is complete
 * as soon as that record arrives, and never before: a fetched batch may end in the middle of one (the
 * first batch after a restart too), and applying that part alone would split the source transaction.
 * Records that never carry our headers (a topic of the real Debezium connector not declared as such; a
 * declared one goes through DebeziumTransactionAssembler) are grouped by consecutive source transaction
 * id: a group closes when the next transaction's first record arrives.
 * Tombstones (null value) carry no change but may close a transaction.
 * Records that are not valid events are handed to `onMalformed` (dead-letter) and never applied; their
 * offsets still count, so the applier moves past them.
 */
import type { InRecord } from '../kafka/records.ts';
import { commitLsnOf, endsTransaction, hasTransactionMarker } from '../kafka/wire-headers.ts';
import type { ApplyTransaction, RowChange } from './apply-model.ts';

/** `topic[partition]@offset`: names a record in messages. */
export function recordPosition(record: Pick<InRecord, 'topic' | 'partition' | 'offset'>): string {
  return `${record.topic}[${record.partition}]@${record.offset}`;
}

/** A decoded change event, as far as the applier needs it. */
export interface DecodedChange {
  readonly change: RowChange;
  readonly lsn: bigint;
  /** Source transaction id (Debezium source.txId), for grouping when our headers are absent. */
  readonly txId: string;
  readonly commitTimeUs: bigint;
  readonly snapshot: boolean;
}

/** Decodes a record's value; throws MalformedInputError for anything that is not a change event. */
export type ChangeDecoder = (record: InRecord) => DecodedChange;

export class TransactionGrouper {
  readonly #sourceNode: string;
  readonly #decode: ChangeDecoder;
  readonly #onMalformed: (record: InRecord, error: unknown) => void;
  #changes: RowChange[] = [];
  #last: DecodedChange | undefined;
  #lastRecord: InRecord | undefined;
  /** Offset of the open transaction's first record. */
  #firstOffset: bigint | undefined;
  /**
   * The stream showed our capture's marker: its transactions always end with one, so an open part that
   * another transaction's record follows was left by a capture that stopped mid-transaction (killed, or
   * fenced off by a takeover and waking to send what it had buffered, after its successor's newer
   * transactions). Its successor sends that transaction whole; the part is dropped, never applied alone.
   */
  #markerSeen = false;

  constructor(
    sourceNode: string,
    decode: ChangeDecoder,
    onMalformed: (record: InRecord, error: unknown) => void,
  ) {
    this.#sourceNode = sourceNode;
    this.#decode = decode;
    this.#onMalformed = onMalformed;
  }

  /** Feeds one fetched batch; returns the transactions it completed. */
  add(records: readonly InRecord[]): ApplyTransaction[] {
    const done: ApplyTransaction[] = [];
    for (const record of records) {
      const last = endsTransaction(record.headers);
      const ours = hasTransactionMarker(record.headers);
      if (record.value !== null) {
        let decoded: DecodedChange | undefined;
        try {
          decoded = this.#decode(record);
        } catch (error) {
          this.#onMalformed(record, error);
        }
        if (decoded !== undefined) {
          const open = this.#last;
          if (open !== undefined && !open.snapshot && !decoded.snapshot && isResend(open, decoded)) {
            this.#dropOpen(); // the same transaction sent again from its start: the part before is stale
          } else if (open !== undefined && open.txId !== decoded.txId) {
            if (ours || this.#markerSeen) this.#dropOpen();
            else {
              const closed = this.#close(undefined);
              if (closed !== undefined) done.push(closed);
            }
          }
          this.#last = decoded;
          this.#changes.push(decoded.change);
        }
      }
      this.#firstOffset ??= record.offset;
      this.#lastRecord = record;
      if (last) {
        this.#markerSeen = true;
        const closed = this.#close(commitLsnOf(record.headers));
        if (closed !== undefined) done.push(closed);
      }
    }
    return done;
  }

  /** Forgets the open part of a transaction (see #markerSeen). */
  #dropOpen(): void {
    this.#changes = [];
    this.#last = undefined;
    this.#firstOffset = undefined;
  }

  #close(commitLsn: bigint | undefined): ApplyTransaction | undefined {
    const record = this.#lastRecord;
    const last = this.#last;
    const changes = this.#changes;
    const firstOffset = this.#firstOffset;
    this.#changes = [];
    this.#last = undefined;
    this.#firstOffset = undefined;
    if (record === undefined) return undefined;
    return {
      sourceNode: this.#sourceNode,
      commitLsn: commitLsn ?? last?.lsn ?? 0n,
      // Without our commit LSN the position cannot order transactions: never skip by LSN then.
      lsnOrdered: commitLsn !== undefined,
      commitTimeUs: last?.commitTimeUs ?? BigInt(Date.now()) * 1000n,
      snapshot: last?.snapshot ?? false,
      changes,
      topic: record.topic,
      partition: record.partition,
      lastOffset: record.offset,
      ...(firstOffset === undefined ? {} : { firstOffset }),
    };
  }
}

/**
 * A change of the open transaction before its latest one: a capture sending it again from its start.
 * (Not at it: one WAL record may carry several changes, a COPY's multi-insert or a TRUNCATE of several
 * tables; a part that ends in such a record and is merged with its re-send only writes rows again.)
 */
function isResend(open: DecodedChange, next: DecodedChange): boolean {
  return next.txId === open.txId && next.lsn < open.lsn;
}
