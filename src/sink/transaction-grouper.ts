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
 * On a topic our capture marks, a transaction's changes carry their place in it (`transaction.total_order`,
 * 1 for the first): a group starts at 1 and goes on at the next place only. A record that fits nowhere
 * is stale (a capture fenced off by a takeover sends, once it runs again, the rest of a transaction its
 * successor sends whole) and is dropped, with the tombstone after it; a transaction's end that did not
 * start at 1 is never applied (applied, its commit LSN would make the applier skip the whole copy).
 * A transaction larger than `maxOpenRows` rows, or `maxOpenBytes` of column values (a migration's UPDATE
 * of millions of rows, rows with large values) is handed out in pieces of that size as they arrive
 * (ApplyTransaction.piece), which the writer applies into one open target transaction: memory holds a
 * piece, not the transaction. Snapshot chunks are bounded by the capture and never cut.
 * A transaction's first record from our capture names the capture run that sent it (`pgbisync.run`): a
 * start from an older run than the newest read is stale too (a capture fenced off by a takeover whose
 * records land after its successor's), dropped with the rest of its transaction, which then fits
 * nowhere. The newest run goes out with each transaction, to be stored with the position, and comes
 * back at a start.
 * Records that are not valid events are handed to `onMalformed` (dead-letter) and never applied; their
 * offsets still count, so the applier moves past them.
 */
import type { InRecord } from '../kafka/records.ts';
import {
  commitLsnOf,
  endsTransaction,
  hasTransactionMarker,
  runOf,
  sourceIdentityOf,
} from '../kafka/wire-headers.ts';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';
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
  /** Its place in its source transaction (Debezium transaction.total_order, 1 first), when the event has it. */
  readonly totalOrder?: bigint | undefined;
  /** Written by pgbisync's capture (`source.version` pgbisync-*, or a row batch): its topic is marked. */
  readonly ours?: boolean;
}

/**
 * Why records were dropped as stale: `order`, a change that fits nowhere by total order; `run`, a
 * transaction start from an older capture run; `part`, the buffered start of a transaction that never
 * ended here (sent again from its start, or its end came without it).
 */
export type StaleReason = 'order' | 'run' | 'part';

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
  readonly #maxOpenRows: number;
  readonly #maxOpenBytes: number;
  /** Characters of the open transaction's buffered column values. */
  #openBytes = 0;
  /** Pieces of the open transaction were handed out already: the next one handed out is not its first. */
  #pieces = false;
  /** A record with our transaction marker was seen: the topic's transactions are marked (ours). */
  #marked = false;
  /** Records with a value in the open group, malformed ones included. */
  #members = 0;
  /** The total order of the open group's first change, and the one its next change must have. */
  #firstOrder: bigint | undefined;
  #nextOrder: bigint | undefined;
  /** The open group's changes so far follow each other by total order (or carry none). */
  #inOrder = true;
  /**
   * The open group holds a record that did not decode (dead-lettered): its place in the transaction is
   * unknown, so the changes after it, and the group's start and order, are taken as they come.
   */
  #malformed = false;
  /** The last record with a value did not decode: the next change may have any place after it. */
  #afterMalformed = false;
  /** The last record with a value was dropped as stale: so is a tombstone after it. */
  #droppedLast = false;
  /** The newest capture run read (stored with the position; see the module comment). */
  #run: bigint | undefined;
  readonly #onStale: ((reason: StaleReason, records: number) => void) | undefined;

  constructor(
    sourceNode: string,
    decode: ChangeDecoder,
    onMalformed: (record: InRecord, error: unknown) => void,
    maxOpenRows = Number.POSITIVE_INFINITY,
    maxOpenBytes = Number.POSITIVE_INFINITY,
    /** The newest capture run the stored position was reached with (undefined: none named yet). */
    run?: bigint,
    /** Told of the records dropped as stale (counted: `pgbisync_stale_records_dropped_total`). */
    onStale?: (reason: StaleReason, records: number) => void,
  ) {
    this.#run = run;
    this.#onStale = onStale;
    this.#sourceNode = sourceNode;
    this.#decode = decode;
    this.#onMalformed = onMalformed;
    this.#maxOpenRows = maxOpenRows;
    this.#maxOpenBytes = maxOpenBytes;
  }

  /** Feeds one fetched batch; returns the transactions it completed. */
  add(records: readonly InRecord[]): ApplyTransaction[] {
    const done: ApplyTransaction[] = [];
    for (const record of records) {
      const last = endsTransaction(record.headers);
      const ours = hasTransactionMarker(record.headers);
      if (ours) this.#marked = true;
      if (record.value !== null) {
        let decoded: DecodedChange | undefined;
        try {
          decoded = this.#decode(record);
        } catch (error) {
          this.#onMalformed(record, error);
        }
        // Known for ours at its first record, not only at a transaction's end: a stale part read first
        // after a start must not be closed Debezium-style by the next transaction's first record.
        if (decoded?.ours === true) this.#marked = true;
        const olderRun = decoded !== undefined && this.#olderRun(record);
        this.#droppedLast = decoded !== undefined && (olderRun || this.#stale(decoded));
        if (this.#droppedLast) {
          this.#onStale?.(olderRun ? 'run' : 'order', 1);
          continue;
        }
        if (decoded !== undefined) {
          if (this.#last !== undefined && this.#restarts(decoded)) {
            // The buffered changes are a stale part: a capture that died mid-transaction published
            // it again from its start (or a fenced one's last send landed). Dropped, never applied.
            this.#abandon(this.#members);
          } else if (!ours && this.#last !== undefined && this.#last.txId !== decoded.txId) {
            const closed = this.#close(undefined);
            if (closed !== undefined) done.push(closed);
          }
          this.#follow(decoded);
          this.#members++;
          this.#last = decoded;
          this.#changes.push(decoded.change);
          this.#openBytes += valueBytes(decoded.change);
        } else {
          this.#members++;
          this.#malformed = true;
          this.#afterMalformed = true;
        }
      } else if (this.#droppedLast) {
        continue; // the tombstone of a stale delete
      }
      this.#firstOffset ??= record.offset;
      this.#lastRecord = record;
      if (last && !this.#whole()) {
        // The end of a transaction whose start is not here (a stale delete's tombstone alone, or
        // changes read before a record told the topic for ours): dropped like a stale part.
        this.#abandon(this.#members + (record.value === null ? 1 : 0));
      } else if (last) {
        const closed = this.#close(commitLsnOf(record.headers), sourceIdentityOf(record.headers));
        if (closed !== undefined) done.push(closed);
      } else if (
        (this.#changes.length >= this.#maxOpenRows || this.#openBytes >= this.#maxOpenBytes) &&
        this.#last?.snapshot === false
      ) {
        done.push(this.#piece(record, this.#last));
      }
    }
    return done;
  }

  /**
   * `next` cannot continue the open transaction: its change position goes back (within a transaction
   * change positions do not; one WAL record may carry several changes — a COPY's multi-insert, a
   * TRUNCATE of several tables — so an equal one continues it, and a stale part ending in such a record
   * merged with its re-send only writes rows again), or, on a topic whose transactions our capture
   * marks, its transaction id differs (a marked transaction ends with its marker, never with the next
   * one's first record).
   */
  #restarts(next: DecodedChange): boolean {
    const last = this.#last!;
    if (this.#marked && next.totalOrder === 1n && !next.snapshot) return true;
    if (last.txId !== next.txId) return this.#marked;
    if (next.snapshot || last.snapshot) return false;
    return next.lsn < last.lsn;
  }

  /**
   * `next` fits nowhere on a topic our capture marks: it carries a total order, is not a transaction's
   * first change, and does not follow the open group's last change.
   */
  #stale(next: DecodedChange): boolean {
    const order = next.totalOrder;
    if (!this.#marked || order === undefined || order === 1n || next.snapshot) return false;
    if (this.#afterMalformed) return false;
    return this.#last === undefined || this.#last.txId !== next.txId || this.#nextOrder !== order;
  }

  /**
   * `record` starts a transaction for a capture run older than the newest read: stale. A newer run
   * becomes the newest (its start drops the open group as any transaction start does, see #restarts).
   */
  #olderRun(record: InRecord): boolean {
    const run = runOf(record.headers);
    if (run === undefined) return false;
    if (this.#run !== undefined && run < this.#run) return true;
    this.#run = run;
    return false;
  }

  /**
   * Tracks the open group's total orders as `next` joins it (a restart has just emptied it). A snapshot
   * chunk's events count on across the chunks of a table (the copy's transaction): not a transaction's.
   */
  #follow(next: DecodedChange): void {
    const order = next.snapshot ? undefined : next.totalOrder;
    this.#afterMalformed = false;
    if (this.#last === undefined) this.#firstOrder = order;
    else if (order !== this.#nextOrder) this.#inOrder = false;
    this.#nextOrder = order === undefined ? undefined : order + 1n;
  }

  /**
   * The open group, about to be closed by a transaction's marked last record, is a whole transaction:
   * it has a record with a value (a tombstone alone is a stale delete's end), and its changes start at
   * total order 1 and follow each other (or carry no total order: snapshot chunks, row batches).
   */
  #whole(): boolean {
    if (this.#members === 0) return false;
    return this.#malformed || ((this.#firstOrder === undefined || this.#firstOrder === 1n) && this.#inOrder);
  }

  /** Forgets the open group's order (it ended, or was dropped). */
  #resetOrder(): void {
    this.#members = 0;
    this.#firstOrder = undefined;
    this.#nextOrder = undefined;
    this.#inOrder = true;
    this.#malformed = false;
    this.#afterMalformed = false;
  }

  /**
   * Drops the open transaction's buffered changes, `records` records (its pieces handed out are rolled
   * back by the writer).
   */
  #abandon(records: number): void {
    if (records > 0) this.#onStale?.('part', records);
    this.#changes = [];
    this.#openBytes = 0;
    this.#resetOrder();
    this.#last = undefined;
    this.#firstOffset = undefined;
    // The next piece is a first one again, or the transaction whole: the writer rolls back what the
    // abandoned pieces wrote in the open target transaction before it (TransactionWriter).
    this.#pieces = false;
  }

  /** Hands out the open transaction's rows so far as a piece that more pieces follow. */
  #piece(record: InRecord, last: DecodedChange): ApplyTransaction {
    const changes = this.#changes;
    this.#changes = [];
    this.#openBytes = 0;
    const piece = this.#pieces ? 'middle' : 'first';
    this.#pieces = true;
    return {
      sourceNode: this.#sourceNode,
      commitLsn: 0n, // known from the transaction's last record only
      lsnOrdered: false,
      commitTimeUs: last.commitTimeUs,
      snapshot: false,
      changes,
      topic: record.topic,
      partition: record.partition,
      lastOffset: record.offset,
      piece,
      ...(piece === 'first' && this.#firstOffset !== undefined ? { firstOffset: this.#firstOffset } : {}),
      ...(this.#run === undefined ? {} : { captureRun: this.#run }),
    };
  }

  #close(commitLsn: bigint | undefined, source?: SourceIdentity): ApplyTransaction | undefined {
    const record = this.#lastRecord;
    const last = this.#last;
    const changes = this.#changes;
    const firstOffset = this.#firstOffset;
    const pieces = this.#pieces;
    this.#changes = [];
    this.#openBytes = 0;
    this.#last = undefined;
    this.#firstOffset = undefined;
    this.#pieces = false;
    this.#resetOrder();
    if (record === undefined) return undefined;
    return {
      sourceNode: this.#sourceNode,
      commitLsn: commitLsn ?? last?.lsn ?? 0n,
      // Without our commit LSN the position cannot order transactions: never skip by LSN then.
      lsnOrdered: commitLsn !== undefined,
      commitTimeUs: last?.commitTimeUs ?? BigInt(Date.now()) * 1000n,
      snapshot: last?.snapshot ?? false,
      ...(source === undefined ? {} : { source }),
      changes,
      topic: record.topic,
      partition: record.partition,
      lastOffset: record.offset,
      ...(firstOffset === undefined ? {} : { firstOffset }),
      ...(pieces ? { piece: 'last' as const } : {}),
      ...(this.#run === undefined ? {} : { captureRun: this.#run }),
    };
  }
}

/** Characters of a change's column values (what its piece's memory grows with). */
function valueBytes(change: RowChange): number {
  let n = 0;
  const after = change.after;
  if (after !== undefined)
    for (const key in after) {
      const v = after[key];
      if (typeof v === 'string') n += v.length;
    }
  return n;
}
