/**
 * The pgoutput logical replication messages, as decoded by {@link ./decoder.ts}.
 *
 * Wire format: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 * LSNs are kept as bigint (a 64-bit WAL position); see ../lsn.ts for parsing and formatting.
 * Timestamps are microseconds since the Unix epoch as bigint (the wire carries microseconds
 * since 2000-01-01; the decoder converts), so no precision is lost.
 */

/** One column of a table as described by a Relation message. */
export interface RelationColumn {
  readonly name: string;
  /** pg_type OID of the column's data type. */
  readonly typeOid: number;
  /** atttypmod (e.g. numeric precision/scale, varchar length); -1 when none. */
  readonly typeMod: number;
  /** True when the column is part of the replica identity (the primary key by default). */
  readonly isKey: boolean;
}

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationMessage {
  readonly tag: 'relation';
  readonly relationId: number;
  readonly schema: string;
  readonly table: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
}

/**
 * One column value of a tuple. pgoutput sends values in text format (we never ask for binary),
 * so `text` is the PostgreSQL output function's text. `unchanged-toast` means the old value was
 * TOASTed and not changed by the update: the value is not in the WAL record.
 */
export type TupleValue =
  | { readonly kind: 'null' }
  | { readonly kind: 'unchanged-toast' }
  | { readonly kind: 'text'; readonly text: string };

export type Tuple = readonly TupleValue[];

export interface BeginMessage {
  readonly tag: 'begin';
  /** The LSN of the commit record of this transaction (its final LSN). */
  readonly finalLsn: bigint;
  /** Commit timestamp, microseconds since Unix epoch. */
  readonly commitTimeUs: bigint;
  readonly xid: number;
}

export interface CommitMessage {
  readonly tag: 'commit';
  readonly flags: number;
  /** LSN of the commit record. */
  readonly commitLsn: bigint;
  /** End LSN of the transaction: the position to confirm once it is durable downstream. */
  readonly endLsn: bigint;
  readonly commitTimeUs: bigint;
}

export interface OriginMessage {
  readonly tag: 'origin';
  /** The commit LSN on the origin server. */
  readonly originLsn: bigint;
  readonly name: string;
}

export interface TypeMessage {
  readonly tag: 'type';
  readonly typeOid: number;
  readonly schema: string;
  readonly name: string;
}

export interface InsertMessage {
  readonly tag: 'insert';
  readonly relationId: number;
  readonly newTuple: Tuple;
}

export interface UpdateMessage {
  readonly tag: 'update';
  readonly relationId: number;
  /** Old key columns ('K'), present when the key changed (or replica identity is index). */
  readonly oldKey?: Tuple;
  /** Whole old row ('O'), present with REPLICA IDENTITY FULL. */
  readonly oldTuple?: Tuple;
  readonly newTuple: Tuple;
}

export interface DeleteMessage {
  readonly tag: 'delete';
  readonly relationId: number;
  /** Old key columns ('K') or, with REPLICA IDENTITY FULL, the whole old row ('O'). */
  readonly oldKey?: Tuple;
  readonly oldTuple?: Tuple;
}

export interface TruncateMessage {
  readonly tag: 'truncate';
  readonly cascade: boolean;
  readonly restartIdentity: boolean;
  readonly relationIds: readonly number[];
}

/** A logical decoding message (pg_logical_emit_message): pgbisync writes none and capture skips them. */
export interface LogicalMessage {
  readonly tag: 'message';
  readonly transactional: boolean;
  readonly lsn: bigint;
  readonly prefix: string;
  readonly content: Buffer;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | TypeMessage
  | RelationMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;
