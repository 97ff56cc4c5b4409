/**
 * Rebuilds source transactions from the topics of a real Debezium PostgreSQL connector: one topic per
 * table (`<topic.prefix>.<schema>.<table>`) and, with `provide.transaction.metadata=true`, the
 * transaction topic (`<topic.prefix>.transaction`) whose END record of each transaction counts its
 * events per table (https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-transaction-metadata).
 *
 * With the transaction topic, a transaction is complete when its END record and every event it counts
 * (in the synced tables' topics) have arrived; transactions are released in the transaction topic's
 * order, which is the source's commit order, with their events sorted by `transaction.total_order`
 * (the order of the changes in the source transaction, across tables). One source transaction = one
 * target transaction, as for pgbisync's own topics.
 *
 * Without it, nothing says where a transaction ends or how tables interleave: consecutive events of one
 * topic with the same source txId in a fetched batch form a group, so a source transaction over several
 * tables is applied as one target transaction per table (per-table order only). Snapshot events (no
 * transaction block) are grouped that way in either case.
 *
 * Debezium's PostgreSQL transaction ids are `<txId>:<lsn>`, and the LSN part differs between the BEGIN
 * record, the events and the END record of one transaction (seen with 3.6.1): transactions are matched
 * by the txId part.
 *
 * A primary-key change comes as a delete of the old key (header `__debezium.newkey`), its tombstone and
 * a create of the new key (header `__debezium.oldkey`). The pair is applied as the update it was: a
 * create alone would lack the TOASTed values the update left unchanged (Debezium's placeholder).
 *
 * Positions: each released transaction carries the position after its last record in every topic it
 * has records in (the END record for the transaction topic); the applier stores them with it and
 * resumes each topic from there. Events a restarted connector publishes again (at-least-once) are
 * applied again: upserts of the same row versions.
 */
import { decodeRecord } from '../events/decode.ts';
import type { InRecord } from '../kafka/records.ts';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import type { ApplyTransaction, RowChange, TopicPosition } from './apply-model.ts';
import { toDecodedChange } from './event-changes.ts';
import type { EventSchemas } from './event-schemas.ts';
import type { RecordGuard } from './record-guard.ts';
import { type DecodedChange, recordPosition } from './transaction-grouper.ts';

export interface DebeziumTopicsOptions {
  readonly sourceNode: string;
  /** The connector's topic.prefix: data topics are `<topicPrefix>.<schema>.<table>`. */
  readonly topicPrefix: string;
  /** The transaction metadata topic, or undefined when the connector does not provide one. */
  readonly transactionTopic: string | undefined;
  /** The data topics consumed (one per synced table): END counts for other tables are ignored. */
  readonly dataTopics: readonly string[];
  readonly onMalformed: (record: InRecord, error: unknown) => void;
  /** Schemas of schemaless records (pgbisync's own per-table topics), loaded for each batch. */
  readonly schemas?: EventSchemas;
  /** Refuses changes of tables that are not synced (dead-lettered). */
  readonly guard?: RecordGuard;
}

interface Item {
  readonly decoded: DecodedChange;
  readonly totalOrder: bigint;
  readonly record: InRecord;
}

interface End {
  readonly txKey: string;
  /** Events still expected per data topic (only topics this applier consumes). */
  readonly expected: Map<string, number>;
  readonly record: InRecord;
  readonly commitTimeUs: bigint;
}

/** Groups records of a Debezium connector's topics into source transactions (see the module doc). */
export class DebeziumTransactionAssembler {
  readonly #o: DebeziumTopicsOptions;
  readonly #dataTopics: ReadonlySet<string>;
  /** END records not yet released, in commit order. */
  #ends: End[] = [];
  /** Events of transactions whose END is not released yet, by txId. */
  readonly #pending = new Map<string, Item[]>();
  /** Tombstones whose offsets no stored position covers yet (see #placeTombstones). */
  #tombstones: InRecord[] = [];
  /** Commit time of the last transaction released (for position-only transactions). */
  #lastCommitTimeUs = 0n;

  constructor(options: DebeziumTopicsOptions) {
    this.#o = options;
    this.#dataTopics = new Set(options.dataTopics);
  }

  /** Feeds one fetched batch; returns the transactions it completed, in commit order. */
  add(records: readonly InRecord[]): ApplyTransaction[] {
    const loose: Item[] = [];
    for (const record of records) {
      // Tombstones follow deletes for log compaction: nothing to apply, and not counted by END; but the
      // stored position must move past them (or an idle source would look one record behind forever).
      if (record.value === null) {
        if (record.topic !== this.#o.transactionTopic) this.#tombstones.push(record);
        continue;
      }
      try {
        if (record.topic === this.#o.transactionTopic) this.#addMetadata(record);
        else this.#addEvent(record, loose);
      } catch (error) {
        this.#o.onMalformed(record, error);
      }
    }
    const txns = [...this.#looseGroups(loose), ...this.#release()];
    const last = txns.at(-1);
    if (last !== undefined) this.#lastCommitTimeUs = last.commitTimeUs;
    return this.#placeTombstones(txns);
  }

  /**
   * Moves the stored position past tombstones: a tombstone right after a transaction's last record in
   * its topic joins that transaction's position; one with nothing pending before it in its topic gets a
   * transaction of its own that only stores the position. One behind a transaction still waiting for
   * its END waits with it (storing its position first would skip that transaction after a restart).
   */
  #placeTombstones(txns: ApplyTransaction[]): ApplyTransaction[] {
    if (this.#tombstones.length === 0) return txns;
    const out = txns.map((t) => ({ ...t, topicPositions: [...(t.topicPositions ?? [])] }));
    const waiting: InRecord[] = [];
    for (const tomb of this.#tombstones) {
      const before = out.findLast((t) =>
        t.topicPositions.some(
          (p) => p.topic === tomb.topic && p.partition === tomb.partition && p.nextOffset === tomb.offset,
        ),
      );
      if (before !== undefined) {
        before.topicPositions = before.topicPositions.map((p) =>
          p.topic === tomb.topic && p.partition === tomb.partition
            ? { ...p, nextOffset: tomb.offset + 1n }
            : p,
        );
        continue;
      }
      const blocked = [...this.#pending.values()].some((items) =>
        items.some(
          (i) =>
            i.record.topic === tomb.topic &&
            i.record.partition === tomb.partition &&
            i.record.offset < tomb.offset,
        ),
      );
      if (blocked) {
        waiting.push(tomb);
        continue;
      }
      out.push({
        sourceNode: this.#o.sourceNode,
        commitLsn: 0n,
        lsnOrdered: false,
        commitTimeUs: this.#lastCommitTimeUs,
        snapshot: false,
        changes: [],
        topic: tomb.topic,
        partition: tomb.partition,
        lastOffset: tomb.offset,
        topicPositions: [{ topic: tomb.topic, partition: tomb.partition, nextOffset: tomb.offset + 1n }],
      });
    }
    this.#tombstones = waiting;
    return out;
  }

  #addEvent(record: InRecord, loose: Item[]): void {
    const event = decodeRecord(record.key, record.value, this.#o.schemas?.schemaOf(record));
    if (event.kind === 'tombstone') return;
    const change = toDecodedChange(event, record);
    const decoded = this.#o.guard === undefined ? change : this.#o.guard.admit(change, record);
    const block = event.transaction;
    if (this.#o.transactionTopic === undefined || block === null) {
      loose.push({ decoded, totalOrder: 0n, record });
      return;
    }
    const txKey = transactionKey(block.id);
    const items = this.#pending.get(txKey);
    const item = { decoded, totalOrder: block.totalOrder, record };
    if (items === undefined) this.#pending.set(txKey, [item]);
    else items.push(item);
  }

  #addMetadata(record: InRecord): void {
    const payload = metadataPayload(record);
    if (payload.status === 'BEGIN') return;
    const expected = new Map<string, number>();
    for (const c of payload.dataCollections) {
      const topic = `${this.#o.topicPrefix}.${c.collection}`;
      if (this.#dataTopics.has(topic) && c.count > 0) expected.set(topic, c.count);
    }
    this.#ends.push({ txKey: transactionKey(payload.id), expected, record, commitTimeUs: payload.tsUs });
  }

  /** Releases the complete transactions at the head of the END queue. */
  #release(): ApplyTransaction[] {
    const out: ApplyTransaction[] = [];
    while (this.#ends.length > 0) {
      const end = this.#ends[0]!;
      const items = this.#pending.get(end.txKey) ?? [];
      const arrived = new Map<string, number>();
      for (const item of items) arrived.set(item.record.topic, (arrived.get(item.record.topic) ?? 0) + 1);
      for (const [topic, count] of end.expected) if ((arrived.get(topic) ?? 0) < count) return out;
      this.#ends.shift();
      this.#pending.delete(end.txKey);
      items.sort((a, b) => (a.totalOrder < b.totalOrder ? -1 : a.totalOrder > b.totalOrder ? 1 : 0));
      out.push(this.#transaction(items, end.record, end.commitTimeUs));
    }
    return out;
  }

  /** Events without transaction metadata: consecutive events of one topic and txId form a group. */
  *#looseGroups(items: readonly Item[]): Generator<ApplyTransaction> {
    const byTopic = new Map<string, Item[][]>();
    for (const item of items) {
      const key = `${item.record.topic}\u0000${item.record.partition}`;
      let groups = byTopic.get(key);
      if (groups === undefined) {
        groups = [];
        byTopic.set(key, groups);
      }
      const last = groups.at(-1);
      if (last !== undefined && last.at(-1)!.decoded.txId === item.decoded.txId) last.push(item);
      else groups.push([item]);
    }
    for (const groups of byTopic.values()) {
      for (const group of groups) {
        const last = group.at(-1)!;
        yield this.#transaction(group, last.record, last.decoded.commitTimeUs);
      }
    }
  }

  #transaction(items: readonly Item[], lastRecord: InRecord, commitTimeUs: bigint): ApplyTransaction {
    const positions = new Map<string, TopicPosition>();
    for (const { record } of items) {
      const key = `${record.topic}\u0000${record.partition}`;
      const next = record.offset + 1n;
      const known = positions.get(key);
      if (known === undefined || known.nextOffset < next) {
        positions.set(key, { topic: record.topic, partition: record.partition, nextOffset: next });
      }
    }
    const first = items[0]?.decoded;
    let lsn = 0n;
    for (const { decoded } of items) if (decoded.lsn > lsn) lsn = decoded.lsn;
    return {
      sourceNode: this.#o.sourceNode,
      commitLsn: lsn,
      // Debezium's events do not carry the commit LSN: the stored positions alone prevent re-applying.
      lsnOrdered: false,
      commitTimeUs: first?.commitTimeUs ?? commitTimeUs,
      snapshot: first?.snapshot ?? false,
      changes: mergeKeyChanges(items),
      topic: lastRecord.topic,
      partition: lastRecord.partition,
      lastOffset: lastRecord.offset,
      topicPositions: [...positions.values()],
    };
  }
}

/** The items' changes, with each key change's delete + create pair made one update (see the module doc). */
function mergeKeyChanges(items: readonly Item[]): RowChange[] {
  const out: RowChange[] = [];
  for (let i = 0; i < items.length; i++) {
    const change = items[i]!.decoded.change;
    const next = items[i + 1];
    if (
      change.op === 'd' &&
      items[i]!.record.headers.has(NEW_KEY_HEADER) &&
      next?.record.headers.has(OLD_KEY_HEADER) &&
      next.decoded.change.op === 'c' &&
      next.decoded.change.schema === change.schema &&
      next.decoded.change.table === change.table &&
      change.beforeKey !== undefined &&
      next.decoded.change.after !== undefined
    ) {
      out.push({ ...next.decoded.change, op: 'u', beforeKey: change.beforeKey });
      i++;
      continue;
    }
    out.push(change);
  }
  return out;
}

const NEW_KEY_HEADER = '__debezium.newkey';
const OLD_KEY_HEADER = '__debezium.oldkey';

/** `<txId>:<lsn>` -> `<txId>` (see the module doc); other forms are used whole. */
function transactionKey(id: string): string {
  const colon = id.indexOf(':');
  return colon > 0 ? id.slice(0, colon) : id;
}

interface MetadataPayload {
  readonly status: 'BEGIN' | 'END';
  readonly id: string;
  readonly tsUs: bigint;
  readonly dataCollections: readonly { collection: string; count: number }[];
}

/** A transaction topic record: `{"schema":...,"payload":{status,id,event_count,data_collections,ts_ms}}`. */
function metadataPayload(record: InRecord): MetadataPayload {
  const where = recordPosition(record);
  const bad = (field: string, what: string) =>
    new MalformedInputError(`transaction metadata record ${where}: value.payload.${field}: ${what}`, {
      code: ErrorCode.EVENT_MALFORMED,
      hint: "the transaction topic must hold the Debezium connector's BEGIN/END records (JsonConverter)",
    });
  let json: unknown;
  try {
    json = JSON.parse(record.value!.toString('utf8'));
  } catch (cause) {
    throw new MalformedInputError(`transaction metadata record ${where}: value: not valid JSON`, {
      code: ErrorCode.EVENT_MALFORMED,
      cause,
    });
  }
  const outer = json as { schema?: unknown; payload?: unknown } | null;
  const payload = (
    outer !== null && typeof outer === 'object' && 'payload' in outer ? outer.payload : outer
  ) as Record<string, unknown> | null;
  if (payload === null || typeof payload !== 'object') throw bad('', 'must be an object');
  const { status, id, ts_ms: tsMs, data_collections: collections } = payload;
  if (status !== 'BEGIN' && status !== 'END')
    throw bad('status', `expected BEGIN or END, got ${String(status)}`);
  if (typeof id !== 'string') throw bad('id', 'expected a string');
  const out: { collection: string; count: number }[] = [];
  if (status === 'END') {
    if (!Array.isArray(collections)) throw bad('data_collections', 'expected an array in an END record');
    for (const [i, c] of collections.entries()) {
      const entry = c as { data_collection?: unknown; event_count?: unknown } | null;
      if (typeof entry?.data_collection !== 'string' || typeof entry.event_count !== 'number') {
        throw bad(`data_collections[${i}]`, 'expected {data_collection: string, event_count: number}');
      }
      out.push({ collection: entry.data_collection, count: entry.event_count });
    }
  }
  return {
    status,
    id,
    tsUs: typeof tsMs === 'number' ? BigInt(tsMs) * 1000n : 0n,
    dataCollections: out,
  };
}
