/**
 * Turns the decoded replication stream into Kafka records, one source transaction at a time.
 *
 * - Relation/Type messages compile a per-relation encoder (cached until the relation is re-sent).
 * - A transaction carrying a replication origin named `pgbisync_*` was applied by our own applier: it is
 *   dropped whole (loop prevention) and counted; its commit still advances the ack position.
 *   The Origin message follows Begin and may repeat; it marks the whole transaction.
 * - The last record of every transaction carries the headers `pgbisync.last=1`,
 *   `pgbisync.commit_lsn=<commit LSN>`, the source identity and the wire version (../kafka/wire-headers.ts), so an applier
 *   knows the transaction is complete without waiting for the next one. To know which record is last, one record is held back until the next record or
 *   the Commit.
 * - A delete is followed by a tombstone (same key, null value), as Debezium does.
 *
 * Pure: no I/O. The capture loop feeds items and forwards the output.
 */

import type { EventSchema } from '../events/envelope.ts';
import type { OutRecord } from '../kafka/records.ts';
import { endOfTransaction, firstOfRun } from '../kafka/wire-headers.ts';
import type { BeginMessage, RelationMessage, Tuple, TypeMessage } from '../pg/pgoutput/messages.ts';
import type { ReplicationItem } from '../pg/replication/replication-connection.ts';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';
import { ErrorCode, FatalError, MalformedInputError } from '../runtime/errors.ts';
import {
  type ChangeEncoder,
  type EncodedRecord,
  type RelationEncoder,
  recordHeaders,
  type SourcePosition,
  type TransactionPosition,
} from './change-encoder.ts';

export interface AssemblerOutput {
  record(record: OutRecord): void;
  /** A change event of `table` ('schema.table') was emitted (tombstones not counted): for metrics. */
  event?(table: string): void;
  /** Every record of the transaction ending at `endLsn` has been passed to record(). */
  commit(endLsn: bigint): void;
  /** Nothing of the publication is pending before `walEnd`. */
  keepalive(walEnd: bigint): void;
  /**
   * A relation's records will be schemaless, naming `schema` in their `pgbisync.schema` header: called
   * when its Relation message is handled, before any of its records is passed to record().
   */
  schema?(schema: EventSchema): void;
}

export interface AssemblerOptions {
  readonly encoder: ChangeEncoder;
  /** Topic of a table's events (transactional mode: the node topic for all tables). */
  readonly topicFor: (schema: string, table: string) => string;
  /** Called once per dropped transaction (it carried a pgbisync replication origin). */
  readonly onLoopDropped?: (origin: string) => void;
  readonly originPrefix?: string;
  /** Partition of every record; absent: the producer's partitioner decides (by key). */
  readonly partition?: number;
  /**
   * The table's primary-key columns, when it has one: the record key under REPLICA IDENTITY FULL, where
   * pgoutput flags every column as part of the identity.
   */
  readonly primaryKeyOf?: (schema: string, table: string) => readonly string[] | undefined;
  /** The identity of the WAL streamed (IDENTIFY_SYSTEM): sent with every transaction's commit LSN. */
  readonly source?: SourceIdentity;
  /** This capture's run (./capture-run.ts): sent on the first record of every transaction. */
  readonly run?: bigint;
  /**
   * Whether this capture syncs the table; absent: every table of the publication. The publication can
   * hold more: `setup` adds a table before the running daemon reloads its config, and the appliers,
   * on the old config too, would dead-letter the table's changes. They are left out here (the copy of
   * the table made at the reload brings what they wrote).
   */
  readonly synced?: (schema: string, table: string) => boolean;
  /** Called at the Relation message of a table left out (see `synced`). */
  readonly onUnsynced?: (table: string) => void;
}

interface OpenTransaction {
  readonly begin: BeginMessage;
  dropped: boolean;
  /** The replication origin of a transaction that another replication wrote (source.origin). */
  origin?: { readonly name: string; readonly lsn: bigint };
  totalOrder: number;
  readonly perTable: Map<string, number>;
}

interface CachedRelation {
  readonly relation: RelationMessage;
  readonly encoder: RelationEncoder;
  readonly topic: string;
  readonly tableKey: string;
  /** Headers of its records with a value: the `pgbisync.schema` of schemaless records. */
  readonly headers: Readonly<Record<string, string>> | undefined;
}

export class TransactionAssembler {
  readonly #options: AssemblerOptions;
  readonly #out: AssemblerOutput;
  readonly #relations = new Map<number, CachedRelation>();
  /** Relations of the publication this capture does not sync (AssemblerOptions.synced). */
  readonly #unsynced = new Set<number>();
  readonly #types = new Map<number, TypeMessage>();
  #txn: OpenTransaction | undefined;
  #held: OutRecord | undefined;

  constructor(options: AssemblerOptions, out: AssemblerOutput) {
    this.#options = options;
    this.#out = out;
  }

  handle(item: ReplicationItem): void {
    if (item.kind === 'keepalive') {
      // Mid-transaction the position is not safe to confirm: the rest of the transaction follows it.
      if (this.#txn === undefined) this.#out.keepalive(item.walEnd);
      return;
    }
    const msg = item.message;
    switch (msg.tag) {
      case 'begin':
        this.#txn = { begin: msg, dropped: false, totalOrder: 0, perTable: new Map() };
        return;
      case 'origin':
        if (msg.name.startsWith(this.#options.originPrefix ?? 'pgbisync_')) {
          const txn = this.#requireTxn('Origin');
          if (!txn.dropped) {
            txn.dropped = true;
            this.#options.onLoopDropped?.(msg.name);
          }
        } else {
          this.#requireTxn('Origin').origin = { name: msg.name, lsn: msg.originLsn };
        }
        return;
      case 'relation': {
        if (this.#options.synced?.(msg.schema, msg.table) === false) {
          this.#unsynced.add(msg.relationId);
          this.#relations.delete(msg.relationId);
          this.#options.onUnsynced?.(`${msg.schema}.${msg.table}`);
          return;
        }
        this.#unsynced.delete(msg.relationId);
        const rel = this.#compile(msg);
        this.#relations.set(msg.relationId, rel);
        if (rel.encoder.schema !== undefined) {
          // Records naming a schema nobody stored could never be read: refuse rather than send them.
          if (this.#out.schema === undefined) {
            throw new FatalError(
              `capturing ${rel.tableKey}: its records are schemaless, but this capture has no store for their schema`,
              {
                code: ErrorCode.CONFIG_INVALID,
                hint: 'set capture.schemasEnabled: true, or run the capture through pgbisync run (which stores the schemas on the source)',
              },
            );
          }
          this.#out.schema(rel.encoder.schema);
        }
        return;
      }
      case 'type':
        this.#types.set(msg.typeOid, msg);
        return;
      case 'insert': {
        const txn = this.#requireTxn('Insert');
        if (txn.dropped || this.#unsynced.has(msg.relationId)) return;
        const rel = this.#relation(msg.relationId);
        this.#emit(
          rel,
          rel.encoder.change('c', undefined, msg.newTuple, this.#source(item.lsn), this.#order(txn, rel)),
        );
        return;
      }
      case 'update': {
        const txn = this.#requireTxn('Update');
        if (txn.dropped || this.#unsynced.has(msg.relationId)) return;
        const rel = this.#relation(msg.relationId);
        const before = msg.oldTuple ?? msg.oldKey;
        const after = msg.oldTuple === undefined ? msg.newTuple : withOldValues(msg.newTuple, msg.oldTuple);
        this.#emit(
          rel,
          rel.encoder.change('u', before, after, this.#source(item.lsn), this.#order(txn, rel)),
        );
        return;
      }
      case 'delete': {
        const txn = this.#requireTxn('Delete');
        if (txn.dropped || this.#unsynced.has(msg.relationId)) return;
        const rel = this.#relation(msg.relationId);
        const before = msg.oldTuple ?? msg.oldKey;
        if (before === undefined) {
          throw new MalformedInputError(`pgoutput Delete on ${rel.tableKey} carries no old key or tuple`, {
            code: ErrorCode.PGOUTPUT_MALFORMED,
          });
        }
        this.#emit(
          rel,
          rel.encoder.change('d', before, undefined, this.#source(item.lsn), this.#order(txn, rel)),
        );
        this.#push(this.#record(rel, rel.encoder.tombstone(before)));
        return;
      }
      case 'truncate': {
        const txn = this.#requireTxn('Truncate');
        if (txn.dropped) return;
        for (const id of msg.relationIds) {
          if (this.#unsynced.has(id)) continue;
          const rel = this.#relation(id);
          this.#emit(rel, rel.encoder.truncate(this.#source(item.lsn), this.#order(txn, rel)));
        }
        return;
      }
      case 'commit': {
        this.#requireTxn('Commit');
        this.#txn = undefined;
        if (this.#held !== undefined) {
          const last = this.#held;
          this.#held = undefined;
          this.#out.record({
            ...last,
            headers: endOfTransaction(last.headers, msg.commitLsn, false, undefined, this.#options.source),
          });
        }
        this.#out.commit(msg.endLsn);
        return;
      }
      case 'message':
        return; // logical messages carry no row changes
      default:
        msg satisfies never;
    }
  }

  #compile(message: RelationMessage): CachedRelation {
    const pk =
      message.replicaIdentity === 'full'
        ? this.#options.primaryKeyOf?.(message.schema, message.table)
        : undefined;
    const relation: RelationMessage =
      pk === undefined
        ? message
        : { ...message, columns: message.columns.map((c) => ({ ...c, isKey: pk.includes(c.name) })) };
    const encoder = this.#options.encoder.forRelation(relation, this.#types);
    return {
      relation,
      encoder,
      topic: this.#options.topicFor(relation.schema, relation.table),
      tableKey: `${relation.schema}.${relation.table}`,
      headers: recordHeaders(encoder),
    };
  }

  #relation(id: number): CachedRelation {
    const rel = this.#relations.get(id);
    if (rel === undefined) {
      throw new MalformedInputError(
        `pgoutput change for relation ${id} arrived before its Relation message`,
        {
          code: ErrorCode.PGOUTPUT_MALFORMED,
        },
      );
    }
    return rel;
  }

  #requireTxn(what: string): OpenTransaction {
    if (this.#txn === undefined) {
      throw new MalformedInputError(`pgoutput ${what} outside a transaction (no Begin)`, {
        code: ErrorCode.PGOUTPUT_MALFORMED,
      });
    }
    return this.#txn;
  }

  #source(lsn: bigint): SourcePosition {
    const txn = this.#txn;
    const begin = txn?.begin;
    const position: SourcePosition = {
      lsn,
      commitLsn: begin?.finalLsn ?? lsn,
      txId: begin?.xid ?? 0,
      commitTimeUs: begin?.commitTimeUs ?? 0n,
      snapshot: 'false',
    };
    const origin = txn?.origin;
    return origin === undefined ? position : { ...position, origin: origin.name, originLsn: origin.lsn };
  }

  #order(txn: OpenTransaction, rel: CachedRelation): TransactionPosition {
    txn.totalOrder++;
    const perTable = (txn.perTable.get(rel.tableKey) ?? 0) + 1;
    txn.perTable.set(rel.tableKey, perTable);
    return {
      id: `${txn.begin.xid}:${txn.begin.finalLsn}`,
      totalOrder: txn.totalOrder,
      dataCollectionOrder: perTable,
    };
  }

  #emit(rel: CachedRelation, encoded: EncodedRecord): void {
    this.#out.event?.(rel.tableKey);
    const record = this.#record(rel, encoded);
    const run = this.#options.run;
    // The transaction's first change (total order 1) names the run that sends it.
    if (run !== undefined && this.#txn?.totalOrder === 1)
      this.#push({ ...record, headers: firstOfRun(record.headers, run) });
    else this.#push(record);
  }

  #record(rel: CachedRelation, encoded: EncodedRecord): OutRecord {
    const { topic, headers } = rel;
    const partition = this.#options.partition;
    const { key, value } = encoded;
    if (headers === undefined || value === null) {
      return partition === undefined ? { topic, key, value } : { topic, partition, key, value };
    }
    return partition === undefined
      ? { topic, key, value, headers }
      : { topic, partition, key, value, headers };
  }

  /** Holds the newest record back so the Commit can mark it as the transaction's last. */
  #push(record: OutRecord): void {
    if (this.#held !== undefined) this.#out.record(this.#held);
    this.#held = record;
  }
}

/**
 * The new tuple of an update with its unchanged TOAST values taken from the old tuple, which REPLICA
 * IDENTITY FULL logs whole (PostgreSQL flattens its TOASTed values into the WAL record). The event then
 * carries the complete row, so an applier that lacks the row can insert it instead of recording it as
 * needing repair (docs/architecture.md, conflict rules).
 */
export function withOldValues(newTuple: Tuple, oldTuple: Tuple): Tuple {
  if (!newTuple.some((v) => v.kind === 'unchanged-toast')) return newTuple;
  return newTuple.map((v, i) => {
    const old = oldTuple[i];
    return v.kind === 'unchanged-toast' && old !== undefined && old.kind !== 'unchanged-toast' ? old : v;
  });
}
