/**
 * The applier for one direction (source node -> target node): consumes the source's change events from
 * Kafka and writes them into the target, one target transaction per source transaction.
 *
 * Ordering and progress (docs/architecture.md, "Exactly-once effect (apply side)"):
 * - The position to resume from is read from the target (pgbisync.apply_progress, written inside each
 *   applied transaction), never from Kafka's group offsets: an applied transaction is applied once.
 * - A record written by a newer pgbisync (wire version above ../kafka/wire-headers.ts WIRE_VERSION)
 *   blocks the direction before anything of its fetched batch is decoded or applied.
 * - A record that is not a valid change event goes to the dead-letter topic (with the reason in its
 *   headers) before any later transaction commits; it is never dropped silently. Without a dead-letter
 *   producer the applier stops with the record's position.
 * - Batches: whatever the consumer fetched, cut into groups of at most maxBatchTransactions /
 *   maxBatchRows, pipelined as separate target transactions. The next group is decoded and queued on
 *   the connection while the previous one commits (at most two in flight), so the target works while
 *   this process decodes; a failed group fails every later one (the writer chains their progress).
 * - A source captured by a Debezium connector (`debezium` option) is read from the connector's
 *   per-table topics and transaction topic (./debezium-transactions.ts); its position is one offset per
 *   topic, stored with each applied transaction.
 */
import type { ConflictPolicy } from '../conflicts/policy.ts';
import type { InRecord, RecordConsumer, RecordProducer, StartOffset } from '../kafka/records.ts';
import { deadLetterHeaders } from '../kafka/wire-headers.ts';
import { quoteIdent } from '../pg/sql-names.ts';
import {
  BlockedError,
  describeError,
  ErrorCode,
  FatalError,
  PgbisyncError,
  RetryableError,
} from '../runtime/errors.ts';
import { type ApplyTransaction, changeRows, type TopicPosition, transactionRows } from './apply-model.ts';
import { DebeziumTransactionAssembler } from './debezium-transactions.ts';
import { decodeChange } from './event-changes.ts';
import { EventSchemas } from './event-schemas.ts';
import { checkWireVersion, RecordGuard, requireNoNewPartition } from './record-guard.ts';
import { describeRejected, findRejectedValue, sourceType } from './rejected-value.ts';
import { addColumn } from './schema-evolution.ts';
import { MissingColumnError } from './statement-builder.ts';
import { nextRound, type RepairCounts, RepairRounds, repairFromSource } from './toast-repair.ts';
import { recordPosition, type StaleReason, TransactionGrouper } from './transaction-grouper.ts';
import { TransactionWriter } from './transaction-writer.ts';

export interface ApplierOptions {
  readonly sourceNode: string;
  readonly targetNode: string;
  readonly targetUrl: string;
  /**
   * The source node's URL, when it is a configured node: names the source type of a rejected value; rows
   * an update lacking unchanged TOAST values could not write whole are repaired from it (./toast-repair.ts).
   */
  readonly sourceUrl?: string;
  /** The synced tables (`schema.table`): a record naming another is dead-lettered (./record-guard.ts). */
  readonly tables: readonly string[];
  /** Topics holding the source's events (transactional mode: the one node topic). */
  readonly topics: readonly string[];
  /** A consumer of `topics` from these positions (one per stored topic/partition; others: earliest). */
  readonly openConsumer: (startOffsets: readonly StartOffset[]) => RecordConsumer;
  /** Where malformed records go: each is acknowledged before any later transaction commits. */
  readonly deadLetter: { readonly topic: string; readonly sink: RecordProducer } | undefined;
  readonly policyFor: (table: string) => ConflictPolicy;
  /** How a source TRUNCATE is applied (config apply.truncate; default guarded). */
  readonly truncate?: 'guarded' | 'skip';
  /** A column an event has and the target lacks is added there (config schema.addMissingColumns). */
  readonly addMissingColumns?: boolean;
  /** How far ahead of the target's clock a commit time is waited for (config conflicts.maxClockSkewMs). */
  readonly maxClockSkewMs?: number;
  readonly maxBatchTransactions: number;
  readonly maxBatchRows: number;
  /** Characters of column values in a piece of a large source transaction (config apply.maxPieceBytes). */
  readonly maxPieceBytes?: number;
  /**
   * The source's events are on per-table topics `<topicPrefix>.<schema>.<table>`: a Debezium PostgreSQL
   * connector's, or pgbisync's own in `mode: per-table` (absent: pgbisync's one topic per node).
   */
  readonly debezium?: {
    readonly topicPrefix: string;
    /** Its transaction metadata topic (one of `topics`), or undefined when it provides none. */
    readonly transactionTopic: string | undefined;
  };
  readonly onProgress?: (event: ApplierProgressEvent) => void;
}

export type ApplierProgressEvent =
  | {
      readonly kind: 'applied';
      readonly transactions: number;
      readonly skipped: number;
      readonly rows: number;
      /** Row changes by table ('schema.table'). */
      readonly byTable: ReadonlyMap<string, number>;
      /** Conflicts resolved (and recorded in pgbisync.conflicts) by these transactions. */
      readonly conflicts: number;
      readonly last: ApplyTransaction;
    }
  | { readonly kind: 'dead-letter'; readonly record: InRecord; readonly error: unknown }
  /** Records dropped as stale parts of transactions (./transaction-grouper.ts). */
  | { readonly kind: 'stale'; readonly reason: StaleReason; readonly records: number }
  /** Records of `needs_repair` settled from the source (./toast-repair.ts). */
  | ({ readonly kind: 'repaired' } & RepairCounts)
  /** A repair round failed: the records stay `needs_repair`, tried again after the next commit. */
  | { readonly kind: 'repair-failed'; readonly error: unknown };

export class Applier {
  readonly #o: ApplierOptions;
  /** Repair records held for the source's later change, across rounds (./toast-repair.ts RepairOptions). */
  readonly #heldRepairs = new Map<string, string>();

  constructor(options: ApplierOptions) {
    this.#o = options;
  }

  /** Runs until `signal` aborts (resolves) or applying fails (rejects). */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    const writer = new TransactionWriter({
      url: o.targetUrl,
      targetNode: o.targetNode,
      sourceNode: o.sourceNode,
      policyFor: o.policyFor,
      ...(o.truncate !== undefined ? { truncate: o.truncate } : {}),
      ...(o.maxClockSkewMs !== undefined ? { maxClockSkewMs: o.maxClockSkewMs } : {}),
    });
    let consumer: RecordConsumer | undefined;
    /** The group queued before the newest one: settles once it committed and was reported. */
    let inFlight: Promise<void> | undefined;
    // A group that fails while no more records arrive must still stop the applier at once.
    const failed = new AbortController();
    let failure: { readonly error: unknown } | undefined;
    /** What the pieces of a transaction not ended yet applied (see ApplyTransaction.piece). */
    let carried = NOTHING_CARRIED;
    /** Repairs from the source (./toast-repair.ts): one round at a time, a failed one retried. */
    const repairs = new RepairRounds(() => this.#repair(writer));
    try {
      const progress = await writer.open();
      // Keys left to repair by an earlier run (a crash after their commit): the conflicts table keeps them.
      repairs.request();
      // Nothing applied yet: pgbisync's topic is read from its very first record, and a topic that no
      // longer holds it (retention ran before the first apply) blocks instead of starting after a gap.
      const stored =
        progress !== undefined
          ? [{ topic: progress.topic, partition: progress.partition, nextOffset: progress.nextOffset }]
          : o.debezium === undefined
            ? o.topics.map((topic) => ({ topic, partition: 0, nextOffset: 0n }))
            : [];
      if (o.debezium !== undefined) stored.push(...(await writer.topicPositions()));
      consumer = o.openConsumer(startOffsets(stored, o.topics));
      let malformed: { record: InRecord; error: unknown }[] = [];
      const onMalformed = (record: InRecord, error: unknown) => malformed.push({ record, error });
      // Schemaless records (capture.schemasEnabled: false) name their schema, kept on the source.
      const schemas = new EventSchemas({
        sourceNode: o.sourceNode,
        sourceUrl: o.sourceUrl,
        targetNode: o.targetNode,
        targetUrl: o.targetUrl,
      });
      const guard = new RecordGuard({ ...o, tables: await writer.withPartitions(o.tables) });
      const grouper =
        o.debezium === undefined
          ? new TransactionGrouper(
              o.sourceNode,
              (record) => guard.admit(decodeChange(record, schemas), record),
              onMalformed,
              o.maxBatchRows,
              o.maxPieceBytes,
              progress?.captureRun,
              (reason, records) => o.onProgress?.({ kind: 'stale', reason, records }),
            )
          : new DebeziumTransactionAssembler({
              sourceNode: o.sourceNode,
              topicPrefix: o.debezium.topicPrefix,
              transactionTopic: o.debezium.transactionTopic,
              dataTopics: o.topics.filter((t) => t !== o.debezium?.transactionTopic),
              onMalformed,
              schemas,
              guard,
            });
      for await (const records of consumer.batches(AbortSignal.any([signal, failed.signal]))) {
        checkWireVersion(records, o.sourceNode, o.targetNode);
        await schemas.load(records);
        const txns = grouper.add(guard.screen(records, onMalformed));
        await requireNoNewPartition(malformed, () => writer.withPartitions(o.tables));
        if (malformed.length > 0) {
          await this.#deadLetter(malformed);
          malformed = [];
        }
        for (const chunk of chunks(txns, o.maxBatchTransactions, o.maxBatchRows)) {
          // Queueing fails early on what the catalog already tells (a missing column): explained too.
          const { committed } = await writer.submit(chunk).catch(async (error: unknown) => {
            throw await this.#explainRejection(error, chunk);
          });
          const reported = committed.then(
            ({ applied, skipped, conflicts }) => {
              // Only a transaction that recorded a conflict can have recorded a key to repair.
              if (conflicts > 0) repairs.request();
              // Pieces of a transaction not ended yet are counted with the piece that ends it.
              const counts = rowsByTable(chunk, carried.byTable);
              const rows = carried.rows + chunk.reduce((n, t) => n + transactionRows(t), 0);
              const last = chunk.findLast((t) => t.piece === undefined || t.piece === 'last');
              if (last === undefined) {
                carried = { rows, byTable: counts, conflicts: carried.conflicts + conflicts };
                return;
              }
              o.onProgress?.({
                kind: 'applied',
                transactions: applied,
                skipped,
                rows,
                byTable: counts,
                conflicts: carried.conflicts + conflicts,
                last,
              });
              carried = NOTHING_CARRIED;
            },
            async (error: unknown) => {
              throw await this.#explainRejection(error, chunk);
            },
          );
          reported.catch((error: unknown) => {
            failure ??= { error };
            failed.abort();
          });
          if (inFlight !== undefined) await inFlight;
          inFlight = reported;
        }
      }
      await inFlight;
      if (failure !== undefined) throw failure.error;
    } catch (error) {
      throw this.#explainGone(error);
    } finally {
      // Never close the connection under queued transactions (they would fail instead of committing).
      await inFlight?.catch(() => undefined);
      await repairs.stop();
      await consumer?.close();
      await writer.close();
    }
  }

  /** A repair round on the writer's session: whether it ran. A failure is reported, not thrown. */
  async #repair(writer: TransactionWriter): Promise<boolean | 'soon'> {
    const o = this.#o;
    if (o.sourceUrl === undefined) return true;
    const options = { ...o, sourceUrl: o.sourceUrl, held: this.#heldRepairs };
    try {
      const counts = await writer.between((session, catalog) => repairFromSource(session, catalog, options));
      if (counts === undefined) return 'soon'; // a piece of a transaction is open: after its commit
      if (counts.repaired + counts.superseded > 0) o.onProgress?.({ kind: 'repaired', ...counts });
      return nextRound(counts);
    } catch (error) {
      o.onProgress?.({ kind: 'repair-failed', error });
      return false;
    }
  }

  /**
   * A transaction the target rejected on a value: names the table, the column, both types and the
   * value (PostgreSQL's message names none of them). Other failures are returned as they are.
   */
  async #explainRejection(error: unknown, chunk: readonly ApplyTransaction[]): Promise<unknown> {
    const o = this.#o;
    if (error instanceof MissingColumnError) {
      const type = await sourceType(o.sourceUrl, error.schema, error.table, error.column);
      const column = `${error.schema}.${error.table}.${error.column}`;
      if (o.addMissingColumns === true && type !== undefined) {
        await addColumn(o.targetUrl, error.schema, error.table, error.column, type);
        // Applied again from the same event by the restarted applier, which reads the new column.
        return new RetryableError(
          `applying ${o.sourceNode} -> ${o.targetNode}: added column ${column} ${type} (schema.addMissingColumns); applying again`,
          { code: ErrorCode.SCHEMA_MISMATCH, cause: error },
        );
      }
      return new BlockedError(
        `applying ${o.sourceNode} -> ${o.targetNode}: column ${column} (source type ${type ?? 'unknown'}) does not exist on the target`,
        {
          code: ErrorCode.SCHEMA_MISMATCH,
          hint: `on ${o.targetNode}: ALTER TABLE ${error.schema}.${error.table} ADD COLUMN ${quoteIdent(error.column)} ${type ?? '<type>'}; the stream resumes from the same event`,
          cause: error,
        },
      );
    }
    // PostgreSQL's error for the failed statement, which the writer's BlockedError wraps.
    const statementError = error instanceof BlockedError ? error.cause : undefined;
    const sqlstate = (statementError as { code?: unknown } | undefined)?.code;
    if (typeof sqlstate !== 'string' || !sqlstate.startsWith('22')) return error;
    const rejected = await findRejectedValue(o.targetUrl, o.sourceUrl, chunk).catch(() => undefined);
    if (rejected === undefined) return error;
    const fix =
      rejected.sourceType === undefined
        ? `ALTER TABLE ${rejected.table} ALTER COLUMN ${rejected.column} TYPE ...`
        : `ALTER TABLE ${rejected.table} ALTER COLUMN ${rejected.column} TYPE ${rejected.sourceType}`;
    // Replaces the writer's error, naming the column and value: PostgreSQL's error becomes the cause, and
    // the probe's own reason is shown only when it is not the same words.
    const sameReason = statementError instanceof Error && statementError.message === rejected.reason;
    return new BlockedError(
      `applying ${o.sourceNode} -> ${o.targetNode}: ${describeRejected(rejected, !sameReason)}`,
      {
        code: ErrorCode.SCHEMA_MISMATCH,
        hint: `make the column take the source's values on ${o.targetNode} (${fix}) or fix the row on ${o.sourceNode}; the stream resumes from the same event`,
        cause: statementError,
      },
    );
  }

  /** Records of this direction deleted before they were applied: names the direction and its fix. */
  #explainGone(error: unknown): unknown {
    if (!(error instanceof BlockedError) || error.code !== ErrorCode.KAFKA_EVENTS_GONE) return error;
    const o = this.#o;
    return new BlockedError(`applying ${o.sourceNode} -> ${o.targetNode}: ${error.message}`, {
      code: ErrorCode.KAFKA_EVENTS_GONE,
      hint: `run \`pgbisync resync ${o.sourceNode}\`: it re-copies ${o.sourceNode}'s rows and remembered deletes to ${o.targetNode} and moves this direction's position past the deleted records (a TRUNCATE among them is not re-copied: \`pgbisync verify\` finds it); raise the topic's retention.ms above the longest outage`,
      cause: error.cause,
    });
  }

  async #deadLetter(items: readonly { record: InRecord; error: unknown }[]): Promise<void> {
    const o = this.#o;
    const first = items[0]!;
    if (o.deadLetter === undefined) {
      throw new FatalError(
        `applying ${o.sourceNode} -> ${o.targetNode}: record ${recordPosition(first.record)} is not a valid change event`,
        {
          code: ErrorCode.EVENT_MALFORMED,
          hint: 'configure apply.deadLetterTopic to set such records aside, or remove the record from the topic',
          cause: first.error,
        },
      );
    }
    await o.deadLetter.sink.send(
      items.map(({ record, error }) => ({
        topic: o.deadLetter!.topic,
        key: record.key,
        value: record.value,
        // The record's own headers stay (a schemaless record's pgbisync.schema, the transaction's
        // pgbisync.last and commit LSN): what it takes to read or replay it later.
        headers: deadLetterHeaders(
          record,
          describeError(error),
          error instanceof PgbisyncError ? error.code : ErrorCode.EVENT_MALFORMED,
        ),
      })),
    );
    for (const item of items) o.onProgress?.({ kind: 'dead-letter', record: item.record, error: item.error });
  }
}

/** Rows by table ('schema.table') of `txns`, added to `to`'s counts. */
function rowsByTable(
  txns: readonly ApplyTransaction[],
  to: ReadonlyMap<string, number>,
): Map<string, number> {
  const out = new Map(to);
  for (const txn of txns) {
    for (const change of txn.changes) {
      const table = `${change.schema}.${change.table}`;
      out.set(table, (out.get(table) ?? 0) + changeRows(change));
    }
  }
  return out;
}

interface Carried {
  readonly rows: number;
  readonly byTable: ReadonlyMap<string, number>;
  readonly conflicts: number;
}

const NOTHING_CARRIED: Carried = { rows: 0, byTable: new Map<string, number>(), conflicts: 0 };

/** One start offset per stored topic/partition of `topics` (the furthest, if stored twice). */
function startOffsets(stored: readonly TopicPosition[], topics: readonly string[]): StartOffset[] {
  const out = new Map<string, StartOffset>();
  for (const p of stored) {
    if (!topics.includes(p.topic)) continue;
    const key = `${p.topic}\u0000${p.partition}`;
    const known = out.get(key);
    if (known === undefined || known.offset < p.nextOffset) {
      out.set(key, { topic: p.topic, partition: p.partition, offset: p.nextOffset });
    }
  }
  return [...out.values()];
}

/** Cuts transactions into pipelined groups bounded by count and rows (a big transaction stays whole). */
export function* chunks(
  txns: readonly ApplyTransaction[],
  maxTransactions: number,
  maxRows: number,
): Generator<ApplyTransaction[]> {
  let chunk: ApplyTransaction[] = [];
  let rows = 0;
  for (const txn of txns) {
    const txnRows = transactionRows(txn);
    if (chunk.length > 0 && (chunk.length >= maxTransactions || rows + txnRows > maxRows)) {
      yield chunk;
      chunk = [];
      rows = 0;
    }
    chunk.push(txn);
    rows += txnRows;
  }
  if (chunk.length > 0) yield chunk;
}
