/**
 * pgbisync's error classes are named for what the caller must do:
 * - {@link RetryableError}: a transient failure (connection lost, broker restarting); back off and retry.
 * - {@link FatalError}: an operator must act (bad config, missing prerequisite); stop and report `hint`.
 * - {@link BlockedError}: one stream cannot go on until an operator fixes its target (schema mismatch, a
 *   value the target rejects); only that stream stops, the rest of the sync runs on, and the stream
 *   retries from the same event until the fix is in.
 * - {@link MalformedInputError}: input bytes or a message that cannot be decoded; the offending item is named
 *   and handled by policy (dead-letter, stop), never silently dropped.
 *
 * Every error carries a stable code from {@link ErrorCode} (documented in docs/errors.md) and an optional
 * operator hint. Always pass `{ cause }` when wrapping, and let the message say only what the wrapper
 * adds (what was being done, on which node, table or topic): whatever shows an error shows its causes
 * too ({@link errorChain}), so a pasted cause would be read twice.
 */

export const ErrorCode = {
  /** Configuration file or flag is invalid. */
  CONFIG_INVALID: 'PGB1001',
  /** A required local tool (java, mvn, initdb) is missing. */
  TOOL_MISSING: 'PGB1002',
  /** A TCP port needed by the dev stack is already in use. */
  PORT_IN_USE: 'PGB1003',
  /** A server of the dev stack failed to start. */
  SERVER_START_FAILED: 'PGB1004',
  /** Maven Central could not be reached or an artifact was not served. */
  ARTIFACT_FETCH_FAILED: 'PGB1005',
  /** A PostgreSQL prerequisite is not met (wal_level, track_commit_timestamp, slots...). */
  PG_PREREQUISITE: 'PGB2001',
  /** A PostgreSQL connection or query failed. */
  PG_CONNECTION: 'PGB2002',
  /** Authentication failed (SQLSTATE class 28): permanent until credentials change. */
  PG_AUTH: 'PGB2003',
  /** A table lacks a primary key and REPLICA IDENTITY FULL. */
  PG_NO_KEY: 'PGB2004',
  /**
   * A node's replication slot is gone (dropped, lost in a failover) or invalidated after its capture
   * streamed from it: the changes in the gap cannot be captured; `pgbisync resync <node>` re-copies.
   */
  SLOT_LOST: 'PGB2005',
  /**
   * PostgreSQL's logical decoding of a node's slot fails at the same change on every attempt: the
   * capture is blocked; `pgbisync resync <node> --new-slot` replaces the slot and re-copies.
   */
  SLOT_UNDECODABLE: 'PGB2006',
  /** The replication stream sent bytes that cannot be decoded. */
  PGOUTPUT_MALFORMED: 'PGB2101',
  /** A column type has no mapping. */
  TYPE_UNSUPPORTED: 'PGB2201',
  /** Kafka could not be reached or refused a request. */
  KAFKA: 'PGB3001',
  /**
   * Records a direction has not applied yet are gone from its topic (retention deleted them, or the topic
   * was recreated): `pgbisync resync <source node>` re-copies and moves the position past them.
   */
  KAFKA_EVENTS_GONE: 'PGB3002',
  /** An event is larger than its topic accepts (max.message.bytes): its capture is blocked. */
  KAFKA_RECORD_TOO_LARGE: 'PGB3003',
  /** A message on a topic is not a valid change event. */
  EVENT_MALFORMED: 'PGB3101',
  /** A record was written by a newer pgbisync: its wire version is one this applier does not read. */
  WIRE_VERSION_UNSUPPORTED: 'PGB3102',
  /** A change event names a table that is not synced, or one of pgbisync's own. */
  EVENT_FOREIGN_TABLE: 'PGB3103',
  /** A record carries a `pgbisync.*` header that a capture never writes (or with a value it never writes). */
  EVENT_FORGED_HEADER: 'PGB3104',
  /** The target table or column does not match the event. */
  SCHEMA_MISMATCH: 'PGB4001',
  /** The target rejected a value or a constraint failed (type, length, NOT NULL, unique). */
  APPLY_REJECTED: 'PGB4002',
  /** A local transaction on the same rows made the target abort the applier's (deadlock, serialization). */
  APPLY_CONCURRENT: 'PGB4003',
  /** A source commit time further ahead of the target's clock than conflicts.maxClockSkewMs. */
  CLOCK_SKEW: 'PGB4004',
  /**
   * A source transaction reuses a WAL position already applied, committed later than the transaction
   * applied there: the source's WAL went back on the same timeline (a disk snapshot restored).
   */
  SOURCE_WENT_BACK: 'PGB4005',
  /** A capture or applier ended without being asked to (its stream ended, its worker thread exited). */
  COMPONENT_ENDED: 'PGB5001',
  /** `pgbisync resync` saw no progress for its timeout (the capture not running or blocked, an applier blocked). */
  RESYNC_STALLED: 'PGB5002',
  /** This instance lost a component's lease (its heartbeat failed): another instance takes it over. */
  OWNERSHIP_LOST: 'PGB5003',
  /** This instance gave a component up to a standby that prefers its node (instance.prefer). */
  OWNERSHIP_HANDED_OVER: 'PGB5004',
  /** `pgbisync reload`: no `pgbisync run` answered, or it refused the reloaded config (it runs on unchanged). */
  RELOAD_FAILED: 'PGB5005',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface PgbisyncErrorOptions {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly cause?: unknown;
}

export abstract class PgbisyncError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(message: string, options: PgbisyncErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    this.hint = options.hint;
  }
}

/** Transient: back off and retry. */
export class RetryableError extends PgbisyncError {
  override readonly name = 'RetryableError';
}

/** An applied transaction that lost a race with a local write (PGB4003): apply it again at once. */
export function isConcurrentApplyFailure(error: unknown): error is RetryableError {
  return error instanceof RetryableError && error.code === ErrorCode.APPLY_CONCURRENT;
}

/** An operator must act; `hint` says how. */
export class FatalError extends PgbisyncError {
  override readonly name = 'FatalError';
}

/**
 * One stream is blocked on its target until an operator acts (`hint`); the supervisor keeps the rest of
 * the sync running and retries the blocked component, which resumes from the same event.
 */
export class BlockedError extends PgbisyncError {
  override readonly name = 'BlockedError';
}

/** Input that cannot be decoded; names the offending field or bytes. */
export class MalformedInputError extends PgbisyncError {
  override readonly name = 'MalformedInputError';
}

/** Levels of a chain that are shown (the error and four causes): a cause cycle must not hang a report. */
const MAX_SHOWN_LEVELS = 5;

/** One level of an error's cause chain, as an operator reads it. */
export interface ErrorLink {
  readonly message: string;
  readonly hint: string | undefined;
}

/**
 * The error and its causes, outermost first. A wrapper's message says only what it adds, so a message
 * alone tells part of the story: the fatal report, /status and /healthz, dead-letter headers and
 * `tail` show this chain; in the logs pino's `err` serializer joins the same messages.
 */
export function errorChain(error: unknown): ErrorLink[] {
  const links: ErrorLink[] = [];
  let current: unknown = error;
  while (current !== undefined && links.length < MAX_SHOWN_LEVELS) {
    if (!(current instanceof Error)) {
      links.push({ message: String(current), hint: undefined });
      break;
    }
    const hint = (current as { hint?: unknown }).hint;
    links.push({
      message: current.message,
      hint: typeof hint === 'string' && hint.length > 0 ? hint : undefined,
    });
    current = current.cause;
  }
  return links;
}

/** The chain's messages on one line, joined by ': ' as pino's `err` serializer joins them in the logs. */
export function describeError(error: unknown): string {
  return errorChain(error)
    .map((link) => link.message)
    .filter((message) => message.length > 0)
    .join(': ');
}
