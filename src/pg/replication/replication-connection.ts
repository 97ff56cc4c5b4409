/**
 * A logical replication connection: START_REPLICATION on a pgoutput slot, XLogData decoding, keepalive
 * answers and standby status updates whose flush LSN only the caller advances.
 *
 * Protocol: https://www.postgresql.org/docs/current/protocol-replication.html (CopyBoth sub-protocol:
 * 'w' XLogData, 'k' primary keepalive, 'r' standby status update).
 *
 * Built on `pg`'s connection internals (copyData events, sendCopyFromChunk): this is the one module that
 * touches them. The bytes of a copyData chunk may sit in a buffer pg reuses, so every message is decoded
 * synchronously inside the handler and no view into the chunk is kept.
 *
 * Invariant (no loss): the flush LSN sent to the server is only what {@link ReplicationConnection.confirm}
 * was given; receiving or decoding a message never advances it.
 */
import type pg from 'pg';
import { ErrorCode, MalformedInputError, RetryableError } from '../../runtime/errors.ts';
import { newPgClient } from '../client.ts';
import { formatLsn } from '../lsn.ts';
import { unixMsToPgTimestamp } from '../pg-time.ts';
import { decodePgoutput } from '../pgoutput/decoder.ts';
import type { PgoutputMessage } from '../pgoutput/messages.ts';
import { quoteIdent, quoteLiteral } from '../sql-names.ts';

const STATUS_INTERVAL_MS = 5_000;
/**
 * Decoded items held before the socket is paused. Each holds its row's strings: 5,000 steady-bench
 * changes of ~1 KB rows are ~6 MB of heap, and a batch that size already amortizes the per-batch work.
 */
const QUEUE_HIGH_WATER = 5_000;
/** ... or once their messages add up to this many bytes (wide rows: 5,000 rows of 2 KB held ~10 MB each time). */
const QUEUE_HIGH_WATER_BYTES = 2 * 1024 * 1024;
/**
 * How long close() waits for the server to end the stream after our CopyDone. A walsender busy decoding a
 * large transaction may only notice it once that transaction is sent; then close() gives up and drops the
 * socket (the final status update was written before).
 */
const CLOSE_TIMEOUT_MS = 2_000;

export interface ReplicationItemData {
  readonly kind: 'data';
  /**
   * The XLogData dataStart the server sent with this message: for a change, the position of its WAL
   * record. Not meaningful for the other messages (a Relation message carries 0).
   */
  readonly lsn: bigint;
  readonly message: PgoutputMessage;
}

/** The server has sent everything up to `walEnd`; nothing of the publication is pending before it. */
export interface ReplicationItemKeepalive {
  readonly kind: 'keepalive';
  readonly walEnd: bigint;
}

export type ReplicationItem = ReplicationItemData | ReplicationItemKeepalive;

export interface StartReplicationOptions {
  readonly slot: string;
  readonly publications: readonly string[];
  /** Where to start; 0 means the slot's confirmed_flush_lsn. */
  readonly startLsn: bigint;
  /** Ask the server (PG 16+) to send only changes that have no replication origin. */
  readonly originNone?: boolean;
}

/** The pieces of pg's connection a replication stream uses (also ./slot-xmin.ts). */
export interface PgConnectionInternals {
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  /** Sends CopyDone. */
  endCopyFrom(): void;
  stream: { pause(): void; resume(): void };
}

export class ReplicationConnection {
  readonly #client: pg.Client;
  readonly #connection: PgConnectionInternals;
  #queue: ReplicationItem[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  #ended = false;
  /** close() sent CopyDone: nothing more may be sent, and what still arrives is dropped. */
  #closing = false;
  /** Settles when the START_REPLICATION command ends (completed or failed). */
  #streamEnded: Promise<void> = Promise.resolve();
  #paused = false;
  #receivedLsn = 0n;
  #flushLsn = 0n;
  #closed: Promise<void> | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #lastStatusSentAt = 0;
  /** True once START_REPLICATION was sent: only then may CopyData status updates go to the server. */
  #streaming = false;
  /** What this connection does, for its errors: its application name, then the slot it streams. */
  #doing: string;

  private constructor(client: pg.Client, applicationName: string) {
    this.#client = client;
    this.#doing = `replication connection ${applicationName}`;
    this.#connection = (client as unknown as { connection: PgConnectionInternals }).connection;
    // From the first moment: pg emits 'error' on a lost connection, and an 'error' without a listener
    // would crash the process (e.g. while slot setup commands run, before start()).
    this.#client.on('error', (error) => this.#fail(error));
  }

  /** Opens a replication connection (`replication=database`) to the node at `url`. */
  static async connect(url: string, applicationName: string): Promise<ReplicationConnection> {
    const client = newPgClient({
      connectionString: url,
      application_name: applicationName,
      // biome-ignore lint/suspicious/noExplicitAny: pg's typings lack the replication flag
      ...({ replication: 'database' } as any),
    });
    await client.connect();
    return new ReplicationConnection(client, applicationName);
  }

  /** Runs a replication command (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, ...) before streaming. */
  async command<T extends pg.QueryResultRow>(sql: string): Promise<pg.QueryResult<T>> {
    return this.#client.query<T>(sql);
  }

  /** Starts streaming from `options.startLsn`. Items are read with {@link batches}. */
  start(options: StartReplicationOptions): void {
    if (this.#streaming) throw new Error('replication connection: start() was already called');
    // publication_names is a list of identifiers (SplitIdentifierString): unquoted names are folded to
    // lower case, so each is double-quoted, then the list is passed as a string literal.
    const pubs = quoteLiteral(options.publications.map(quoteIdent).join(','));
    // proto_version 1, the one the decoder reads: no streaming of in-progress transactions. Logical
    // messages (pg_logical_emit_message) are decoded too; capture skips them.
    const parts = [`proto_version '1'`, `publication_names ${pubs}`, `messages 'true'`];
    if (options.originNone === true) parts.push(`origin 'none'`);
    const sql = `START_REPLICATION SLOT ${quoteIdent(options.slot)} LOGICAL ${formatLsn(options.startLsn)} (${parts.join(', ')})`;
    this.#flushLsn = options.startLsn;
    this.#doing = `streaming from replication slot ${options.slot}`;
    this.#connection.on('copyData', (msg) => this.#onCopyData(msg.chunk));
    this.#streaming = true;
    this.#streamEnded = this.#client.query(sql).then(
      () => this.#end(),
      (error: unknown) => this.#fail(error instanceof Error ? error : new Error(String(error))),
    );
    this.#statusTimer = setInterval(() => this.#sendStatus(), STATUS_INTERVAL_MS);
    this.#statusTimer.unref();
  }

  /**
   * Declares everything up to `lsn` durable downstream: the server may recycle that WAL. Call only with
   * the end LSN of a transaction whose events Kafka acknowledged (or a keepalive position with nothing
   * pending). Never moves backwards.
   */
  confirm(lsn: bigint): void {
    if (lsn <= this.#flushLsn) return;
    this.#flushLsn = lsn;
    if (Date.now() - this.#lastStatusSentAt > 1_000) this.#sendStatus();
  }

  get flushLsn(): bigint {
    return this.#flushLsn;
  }

  /**
   * Yields decoded items in WAL order, as arrays of whatever arrived since the previous read (adaptive
   * batching), until the stream ends, fails (then throws) or `signal` aborts.
   */
  async *batches(signal: AbortSignal): AsyncGenerator<readonly ReplicationItem[]> {
    const onAbort = () => this.#wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        if (this.#queue.length > 0) {
          const batch = this.#queue;
          this.#queue = [];
          this.#queuedBytes = 0;
          if (this.#paused) {
            this.#paused = false;
            this.#connection.stream.resume();
          }
          yield batch;
          continue;
        }
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#ended || this.#closing) return;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Ends streaming the way the protocol intends: a last status update with the confirmed flush LSN, then
   * CopyDone, so the server finishes START_REPLICATION and releases the slot; then the connection is
   * closed. Items not yet read are dropped (they were never confirmed), and a running {@link batches}
   * ends. Safe to call more than once, also concurrently.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    if (this.#statusTimer !== undefined) clearInterval(this.#statusTimer);
    if (this.#streaming && !this.#ended && this.#failure === undefined) {
      this.#sendStatus();
      this.#closing = true;
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#wake?.();
      if (this.#paused) {
        // The server's CopyDone is behind whatever it already sent: read (and drop) that.
        this.#paused = false;
        this.#connection.stream.resume();
      }
      try {
        this.#connection.endCopyFrom();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.#streamEnded,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
          }),
        ]);
        clearTimeout(timer);
      } catch {
        // The socket is gone already: nothing to end gracefully.
      }
    }
    this.#closing = true;
    this.#ended = true;
    this.#wake?.();
    // With START_REPLICATION still running (timeout), pg destroys the socket; otherwise it says goodbye.
    await this.#client.end().catch(() => undefined);
  }

  #onCopyData(chunk: Buffer): void {
    if (this.#closing) return;
    try {
      const type = chunk[0];
      if (type === 0x77 /* 'w' XLogData */) {
        if (chunk.length < 25) throw malformed('XLogData header', chunk.length);
        const walStart = chunk.readBigUInt64BE(1);
        const walEnd = chunk.readBigUInt64BE(9);
        if (walEnd > this.#receivedLsn) this.#receivedLsn = walEnd;
        const message = decodePgoutput(chunk.subarray(25));
        this.#queuedBytes += chunk.length;
        this.#push({ kind: 'data', lsn: walStart, message });
      } else if (type === 0x6b /* 'k' keepalive */) {
        if (chunk.length < 18) throw malformed('keepalive', chunk.length);
        const walEnd = chunk.readBigUInt64BE(1);
        if (walEnd > this.#receivedLsn) this.#receivedLsn = walEnd;
        this.#push({ kind: 'keepalive', walEnd });
        if (chunk[17] === 1) this.#sendStatus();
      } else {
        throw new MalformedInputError(
          `replication stream: unknown CopyData message type 0x${(type ?? 0).toString(16)}`,
          {
            code: ErrorCode.PGOUTPUT_MALFORMED,
          },
        );
      }
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
      this.#client.end().catch(() => undefined);
    }
  }

  #push(item: ReplicationItem): void {
    this.#queue.push(item);
    if (
      !this.#paused &&
      (this.#queue.length >= QUEUE_HIGH_WATER || this.#queuedBytes >= QUEUE_HIGH_WATER_BYTES)
    ) {
      this.#paused = true;
      this.#connection.stream.pause();
    }
    this.#wake?.();
  }

  /** Standby status update: write = received, flush = apply = confirmed by the caller. */
  #sendStatus(): void {
    if (!this.#streaming || this.#closing || this.#ended || this.#failure !== undefined) return;
    const buf = Buffer.alloc(34);
    buf[0] = 0x72; // 'r'
    buf.writeBigUInt64BE(this.#receivedLsn > this.#flushLsn ? this.#receivedLsn : this.#flushLsn, 1);
    buf.writeBigUInt64BE(this.#flushLsn, 9);
    buf.writeBigUInt64BE(this.#flushLsn, 17);
    buf.writeBigInt64BE(unixMsToPgTimestamp(Date.now()), 25);
    buf[33] = 0; // we never ask the server to reply
    try {
      this.#connection.sendCopyFromChunk(buf);
      this.#lastStatusSentAt = Date.now();
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #fail(error: Error): void {
    // After close() began, the end of the connection is expected, not a failure.
    if (this.#failure !== undefined || this.#ended || this.#closing) return;
    this.#failure =
      error instanceof MalformedInputError
        ? error
        : new RetryableError(`${this.#doing} failed`, {
            code: ErrorCode.PG_CONNECTION,
            cause: error,
          });
    this.#wake?.();
  }

  #end(): void {
    this.#ended = true;
    this.#wake?.();
  }
}

function malformed(what: string, length: number): MalformedInputError {
  return new MalformedInputError(`replication stream: ${what} truncated (${length} bytes)`, {
    code: ErrorCode.PGOUTPUT_MALFORMED,
  });
}
