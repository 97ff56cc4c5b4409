/**
 * The wire contract between capture and apply, besides the event envelope itself (src/events/): the
 * headers of pgbisync's records, what each means, who writes and who reads it. Every `pgbisync.*` header
 * name is here and nowhere else.
 *
 * - `pgbisync.wire`: the wire version a record needs (at most {@link WIRE_VERSION}). Capture writes it
 *   with `pgbisync.last`, and on every record of a relation whose records need more than 1; the applier
 *   reads it on every record that has it and stops at a version newer than its own.
 * - `pgbisync.last`, `pgbisync.commit_lsn`: capture writes them on the last record of each transaction
 *   and of each snapshot chunk; the applier (src/sink/transaction-grouper.ts) closes the transaction on
 *   them and stores its commit LSN.
 * - `pgbisync.source`, `pgbisync.timeline_history`: capture writes them with `pgbisync.last` (the latter
 *   from timeline 2 on): the identity of the WAL the commit LSN is of; the applier stores it with the
 *   commit LSN and judges re-published transactions by both (src/offsets/source-watermark.ts).
 * - `pgbisync.schema`: capture writes it on every record with a value when records are schemaless; the
 *   applier and `pgbisync tail` read it (src/sink/event-schemas.ts).
 * - `pgbisync.snapshot`: capture writes it with `pgbisync.last` on snapshot chunks; informational, read
 *   by nobody in pgbisync (see {@link SNAPSHOT_HEADER}).
 * - `pgbisync.rows`: capture writes it with `pgbisync.last` on a row batch of the initial copy (a record
 *   that is a whole transaction of many rows, ../events/row-batch.ts); the applier decodes such a value
 *   as a batch, not as an event (see {@link ROWS_HEADER}).
 * - `pgbisync.run`: capture writes it on the first record of each streamed transaction: which run of
 *   the node's capture sent it (see {@link RUN_HEADER}); the applier drops a transaction's start from
 *   an older run than one it has read (src/sink/transaction-grouper.ts) and stores the newest.
 * - `pgbisync.dlq.*`: the applier writes them on the records it sets aside; read by operators.
 *
 * Records of a Debezium connector carry none of these; the applier then groups by the envelope's
 * transaction id (src/sink/transaction-grouper.ts, debezium-transactions.ts). So does it for pgbisync's
 * own per-table topics (`mode: per-table`), where a transaction's last record is on one table's topic
 * only.
 */
import { formatLsn, parseLsn } from '../pg/lsn.ts';
import {
  formatHistory,
  formatIdentity,
  parseIdentity,
  type SourceIdentity,
} from '../pg/replication/source-identity.ts';
import type { InRecord } from './records.ts';

/**
 * The version of this contract (headers and envelope together) that this pgbisync writes and the
 * highest it reads. Raise it when a change would make an older applier misread newer records (a header
 * whose meaning changes, a new one it must not ignore, another envelope); an applier stops, blocked, at
 * a record of a version it does not know instead of applying it by older rules.
 *
 * History: 1, the headers listed above; records without `pgbisync.wire` (written before it existed)
 * are version 1 too. 2, strings whose encoding a field schema names in the parameter
 * `pgbisync.encoding` (bytea as base64 or hex, hstore as JSON: `capture.types`, src/events/types-modes.ts),
 * which a version-1 applier would write as text (base64 text into a bytea column, silently). 3, the
 * source identity headers on a transaction's last record ({@link SOURCE_HEADER}): a version-2 applier
 * would set such a record aside as forged (a header a capture never wrote) and lose the transaction's
 * end; it stops at the version instead. Records without them stay readable as before. 4, row batches
 * ({@link ROWS_HEADER}): an older applier would set them aside as malformed, losing the copied rows.
 * 5, the capture run on a transaction's first record ({@link RUN_HEADER}): an older applier would set
 * such a record aside as forged, losing the transaction's first change.
 *
 * Capture writes the lowest version a record needs, not this one: records that use nothing of version
 * 2 say 1, so an older applier keeps reading them; the records of a table with such a field carry
 * {@link ENCODED_STRINGS_WIRE_VERSION} on every record with a value (an older applier checks each
 * record that carries it and must not apply any of them); a transaction's end keeps its last record's
 * version ({@link endOfTransaction}).
 */
export const WIRE_VERSION = 5;

/** The version every record needs: what capture writes unless a record needs more. */
export const BASE_WIRE_VERSION = 1;

/** The version of records with a field whose encoding its schema names (`pgbisync.encoding`). */
export const ENCODED_STRINGS_WIRE_VERSION = 2;

/** The version of a transaction's last record that carries the source identity headers. */
export const SOURCE_IDENTITY_WIRE_VERSION = 3;

/** The version of a row batch ({@link ROWS_HEADER}). */
export const ROWS_WIRE_VERSION = 4;

/** The version of a record that carries the capture run ({@link RUN_HEADER}). */
export const RUN_WIRE_VERSION = 5;

/**
 * The wire version a record was written with, as decimal text. Capture writes it next to
 * {@link LAST_HEADER} on the last record of each transaction and snapshot chunk, not on every record (a
 * header costs every record bytes and the consumer a retained Map). In transactional mode an applier has
 * read that record before it applies anything of the transaction; in per-table mode, before anything
 * after it on that table's topic. The applier checks every record that carries it, so a future version
 * whose other records an older applier must not even decode puts it on those records too. Absent:
 * version 1.
 */
export const WIRE_HEADER = 'pgbisync.wire';

/**
 * On the last record of a source transaction (and of a snapshot chunk), value {@link LAST_VALUE}: the
 * applier closes the transaction on it as soon as it arrives, never before (a fetched batch may end in
 * the middle of a transaction). Only pgbisync's capture writes it, so its presence also tells
 * pgbisync's records from a Debezium connector's.
 */
export const LAST_HEADER = 'pgbisync.last';
export const LAST_VALUE = '1';

/**
 * With {@link LAST_HEADER}: the source transaction's commit LSN as PostgreSQL writes it (`16/B374D848`);
 * for a snapshot chunk, the slot's consistent point. The applier stores it with the applied transaction
 * and recognises by it a transaction a restarted capture published again (at-least-once).
 */
export const COMMIT_LSN_HEADER = 'pgbisync.commit_lsn';

/**
 * With {@link LAST_HEADER} and {@link COMMIT_LSN_HEADER}: which WAL the commit LSN is of, as
 * `<system identifier>:<timeline>` (IDENTIFY_SYSTEM of the capture's replication connection:
 * `7581234567890123456:2`). A failover or a point-in-time restore starts a new timeline whose LSNs
 * overlap those of the old one past their fork point; the applier tells them apart by it. Absent on
 * records of older captures: the applier then orders by the commit LSN alone.
 */
export const SOURCE_HEADER = 'pgbisync.source';

/**
 * With {@link SOURCE_HEADER} when its timeline is not the first: the timeline's ancestors and where
 * each ended (TIMELINE_HISTORY), `<timeline>@<LSN>` oldest first, comma-separated
 * (`1@0/3000060,2@0/5000000`). The applier computes the fork point between two timelines from it.
 */
export const TIMELINE_HISTORY_HEADER = 'pgbisync.timeline_history';

/**
 * On every record with a value when `capture.schemasEnabled` is false: the id of the envelope schema
 * the value was encoded with (src/events/envelope.ts `EventSchema`), kept in the source's
 * pgbisync.event_schemas. Read by the applier and by `pgbisync tail` (src/sink/event-schemas.ts).
 */
export const SCHEMA_HEADER = 'pgbisync.schema';

/**
 * With {@link LAST_HEADER} on the last record of each snapshot chunk, value `1`. Informational: pgbisync
 * does not read it. The applier learns that a change is a snapshot row from the envelope's
 * `source.snapshot`, which every record carries (the header is on a chunk's last record only, so it could
 * not classify the others). It is kept for people and tools that read headers without decoding values
 * (`kcat -f '%h'`): it tells a snapshot chunk's end from a streamed transaction's end.
 */
export const SNAPSHOT_HEADER = 'pgbisync.snapshot';

/**
 * With {@link LAST_HEADER} (and {@link SNAPSHOT_HEADER}), value {@link ROWS_VALUE}: the record's value
 * is a row batch of the initial copy (../events/row-batch.ts), a whole transaction in one record, not a
 * change event. Written by capture with `capture.snapshotRecords: batched`; read by the applier.
 */
export const ROWS_HEADER = 'pgbisync.rows';

/**
 * On the first record of each streamed transaction (total order 1), with {@link WIRE_HEADER} at least
 * {@link RUN_WIRE_VERSION}: the run of the node's capture that sent it, as decimal text. Each start of a
 * capture takes a number above every earlier run's of its node (src/source/capture-run.ts). A capture
 * fenced off by a takeover may still have records land after its successor's (a network that held
 * them); the applier tells them by their run: a transaction start from an older run than one it read
 * is dropped with the rest of its transaction (src/sink/transaction-grouper.ts), and the newest run is
 * stored with the applier's position, so a restarted applier knows it too.
 */
export const RUN_HEADER = 'pgbisync.run';
export const ROWS_VALUE = '1';

/** Whether a record's value is a row batch ({@link ROWS_HEADER}). */
export function isRowBatch(headers: ReadonlyMap<string, string>): boolean {
  return headers.get(ROWS_HEADER) === ROWS_VALUE;
}

/**
 * Added by the applier to a record it sets aside on the dead-letter topic (not a valid change event,
 * PGB3101), next to the record's own headers: where the record was and why it was refused. Read by
 * operators; pgbisync does not consume the dead-letter topic.
 */
export const DEAD_LETTER_HEADERS = {
  /** The record's topic, partition and offset. */
  topic: 'pgbisync.dlq.topic',
  partition: 'pgbisync.dlq.partition',
  offset: 'pgbisync.dlq.offset',
  /** The decoding error's message. */
  error: 'pgbisync.dlq.error',
  /** Its error code (docs/errors.md). */
  code: 'pgbisync.dlq.code',
} as const;

/**
 * The headers that end a transaction (or, with `snapshot`, a snapshot chunk) at `commitLsn`, with wire
 * version `wireVersion` (the highest any of its records needs), and `source`, the identity of the WAL
 * `commitLsn` is of (then at least {@link SOURCE_IDENTITY_WIRE_VERSION}).
 */
export function transactionEndHeaders(
  commitLsn: bigint,
  snapshot = false,
  wireVersion = BASE_WIRE_VERSION,
  source?: SourceIdentity,
): Record<string, string> {
  const version = source === undefined ? wireVersion : Math.max(wireVersion, SOURCE_IDENTITY_WIRE_VERSION);
  const headers: Record<string, string> = {
    [LAST_HEADER]: LAST_VALUE,
    [COMMIT_LSN_HEADER]: formatLsn(commitLsn),
    [WIRE_HEADER]: String(version),
  };
  if (snapshot) headers[SNAPSHOT_HEADER] = '1';
  if (source !== undefined) {
    headers[SOURCE_HEADER] = formatIdentity(source);
    if (source.history.length > 0) headers[TIMELINE_HISTORY_HEADER] = formatHistory(source.history);
  }
  return headers;
}

/**
 * A transaction's (or snapshot chunk's) last record's headers: its own, with the end headers, the wire
 * version the highest of `wireVersion` and the record's own.
 */
export function endOfTransaction(
  headers: Readonly<Record<string, string>> | undefined,
  commitLsn: bigint,
  snapshot = false,
  wireVersion = BASE_WIRE_VERSION,
  source?: SourceIdentity,
): Record<string, string> {
  const own = Number(headers?.[WIRE_HEADER] ?? BASE_WIRE_VERSION);
  return {
    ...headers,
    ...transactionEndHeaders(commitLsn, snapshot, Math.max(own, wireVersion), source),
  };
}

/** The headers every record with a value of a relation carries for its wire version (none for version 1). */
export function relationWireHeaders(wireVersion: number): Record<string, string> {
  return wireVersion > BASE_WIRE_VERSION ? { [WIRE_HEADER]: String(wireVersion) } : {};
}

/**
 * The wire version of a record: its {@link WIRE_HEADER}, 1 without one, NaN when the header is not a
 * positive decimal integer (then no applier of any version can tell what it is reading).
 */
export function wireVersionOf(headers: ReadonlyMap<string, string>): number {
  const text = headers.get(WIRE_HEADER);
  if (text === undefined) return 1;
  return /^[1-9][0-9]{0,8}$/.test(text) ? Number(text) : Number.NaN;
}

/** Whether the record is the last of a transaction (or snapshot chunk) written by pgbisync's capture. */
export function endsTransaction(headers: ReadonlyMap<string, string>): boolean {
  return headers.get(LAST_HEADER) === LAST_VALUE;
}

/** Whether the record carries pgbisync's transaction marker (of any value): written by our capture. */
export function hasTransactionMarker(headers: ReadonlyMap<string, string>): boolean {
  return headers.has(LAST_HEADER);
}

/** The commit LSN of the transaction the record ends, when it carries one (throws on a malformed one). */
export function commitLsnOf(headers: ReadonlyMap<string, string>): bigint | undefined {
  const text = headers.get(COMMIT_LSN_HEADER);
  return text === undefined ? undefined : parseLsn(text);
}

/**
 * The source identity of the transaction the record ends, when it carries one (throws on a malformed
 * one; {@link forgedHeader} sets such records aside first).
 */
export function sourceIdentityOf(headers: ReadonlyMap<string, string>): SourceIdentity | undefined {
  const identity = headers.get(SOURCE_HEADER);
  if (identity === undefined) return undefined;
  return parseIdentity(identity, headers.get(TIMELINE_HISTORY_HEADER) ?? '');
}

/** A capture run as {@link RUN_HEADER} writes it: a positive decimal integer that fits a bigint. */
const RUN_TEXT = /^[1-9][0-9]{0,17}$/;

/** The capture run a record names (the first of a transaction), when it carries one. */
export function runOf(headers: ReadonlyMap<string, string>): bigint | undefined {
  const text = headers.get(RUN_HEADER);
  return text === undefined ? undefined : BigInt(text);
}

/**
 * A transaction's first record's headers: its own, with the capture run and the wire version that
 * needs (or the record's own, when higher).
 */
export function firstOfRun(
  headers: Readonly<Record<string, string>> | undefined,
  run: bigint,
): Record<string, string> {
  const own = Number(headers?.[WIRE_HEADER] ?? BASE_WIRE_VERSION);
  return { ...headers, [RUN_HEADER]: String(run), [WIRE_HEADER]: String(Math.max(own, RUN_WIRE_VERSION)) };
}

/** A dead letter's headers: the record's own, then where it was and why it was refused. */
export function deadLetterHeaders(record: InRecord, error: string, code: string): Record<string, string> {
  return {
    ...Object.fromEntries(record.headers),
    [DEAD_LETTER_HEADERS.topic]: record.topic,
    [DEAD_LETTER_HEADERS.partition]: String(record.partition),
    [DEAD_LETTER_HEADERS.offset]: String(record.offset),
    [DEAD_LETTER_HEADERS.error]: error,
    [DEAD_LETTER_HEADERS.code]: code,
  };
}

/** The headers a capture writes on a change record; any other `pgbisync.*` header on one is forged. */
const CAPTURE_HEADERS: ReadonlySet<string> = new Set([
  WIRE_HEADER,
  LAST_HEADER,
  COMMIT_LSN_HEADER,
  SCHEMA_HEADER,
  SNAPSHOT_HEADER,
  SOURCE_HEADER,
  TIMELINE_HISTORY_HEADER,
  ROWS_HEADER,
  RUN_HEADER,
]);

/**
 * Why a record's `pgbisync.*` headers cannot be a capture's, or undefined when they can: a name the
 * capture never writes (a dead letter's `pgbisync.dlq.*` included), `pgbisync.last` other than `1`, a
 * `pgbisync.commit_lsn` that is not an LSN, a source identity or timeline history that does not read, a
 * commit LSN, snapshot mark or source identity without `pgbisync.last` (a history without an identity). The
 * applier sets such a record aside (docs/security.md): read, `pgbisync.last` would close a transaction
 * and a malformed commit LSN would stop the direction. `pgbisync.wire` is judged by the version check.
 */
export function forgedHeader(headers: ReadonlyMap<string, string>): string | undefined {
  for (const name of headers.keys()) {
    if (name.toLowerCase().startsWith('pgbisync.') && !CAPTURE_HEADERS.has(name)) {
      return `header ${name} is not one a capture writes`;
    }
  }
  const last = headers.get(LAST_HEADER);
  const lsn = headers.get(COMMIT_LSN_HEADER);
  if (last === undefined) {
    if (lsn !== undefined) return `header ${COMMIT_LSN_HEADER} without ${LAST_HEADER}`;
    if (headers.has(SNAPSHOT_HEADER)) return `header ${SNAPSHOT_HEADER} without ${LAST_HEADER}`;
    if (headers.has(SOURCE_HEADER)) return `header ${SOURCE_HEADER} without ${LAST_HEADER}`;
    if (headers.has(ROWS_HEADER)) return `header ${ROWS_HEADER} without ${LAST_HEADER}`;
  }
  const run = headers.get(RUN_HEADER);
  if (run !== undefined && !RUN_TEXT.test(run))
    return `header ${RUN_HEADER} is '${run}', not a capture run (a positive decimal integer)`;
  const rows = headers.get(ROWS_HEADER);
  if (rows !== undefined && rows !== ROWS_VALUE)
    return `header ${ROWS_HEADER} is '${rows}', not '${ROWS_VALUE}'`;
  if (headers.has(TIMELINE_HISTORY_HEADER) && !headers.has(SOURCE_HEADER))
    return `header ${TIMELINE_HISTORY_HEADER} without ${SOURCE_HEADER}`;
  if (headers.has(SOURCE_HEADER)) {
    try {
      sourceIdentityOf(headers);
    } catch (error) {
      return `headers ${SOURCE_HEADER} / ${TIMELINE_HISTORY_HEADER}: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (last === undefined) return undefined;
  if (last !== LAST_VALUE) return `header ${LAST_HEADER} is '${last}', not '${LAST_VALUE}'`;
  // Without a commit LSN the transaction closes unordered by LSN (the grouper's rule for such records).
  if (lsn !== undefined) {
    try {
      parseLsn(lsn);
    } catch {
      return `header ${COMMIT_LSN_HEADER} is '${lsn}', not an LSN such as 16/B374D848`;
    }
  }
  const snapshot = headers.get(SNAPSHOT_HEADER);
  if (snapshot !== undefined && snapshot !== '1')
    return `header ${SNAPSHOT_HEADER} is '${snapshot}', not '1'`;
  return undefined;
}
