/**
 * Capture for one node: slot + publication -> (initial snapshot) -> pgoutput stream -> Debezium events ->
 * Kafka, with the slot's flush LSN advanced only behind Kafka's acknowledgements (./capture-sender.ts,
 * AckTracker).
 *
 * Batching is adaptive: every array of items the replication connection hands over (whatever arrived
 * since the last read) is encoded and sent as one or a few producer calls; sends are pipelined and
 * land in call order.
 */
import type pg from 'pg';
import type { EventSchema } from '../events/envelope.ts';
import { storeSourceSchemas } from '../events/schema-store.ts';
import type { RecordProducer } from '../kafka/records.ts';
import { newPgClient } from '../pg/client.ts';
import { formatLsn, parseLsn } from '../pg/lsn.ts';
import { ReplicationConnection } from '../pg/replication/replication-connection.ts';
import { objectNames, splitTableName } from '../pg/sql-names.ts';
import { readPrimaryKeys } from '../pg/table-catalog.ts';
import { CaptureSender, type SentBatch } from './capture-sender.ts';
import type { ChangeEncoder } from './change-encoder.ts';
import { createSlotWithSnapshot, readSlot } from './slot-setup.ts';
import { runSnapshot, type SnapshotProgress } from './snapshot.ts';
import { TransactionAssembler } from './transaction-assembler.ts';

/**
 * Record bytes (keys and values) sent but not yet acknowledged, above which capture stops reading the
 * replication stream until Kafka catches up. Without a bound, a backlog in the slot (a burst of writes,
 * a restart after downtime) is decoded into memory as fast as the server sends it: hundreds of MB.
 * Checked after every item, not only between the connection's batches: one batch may hold thousands of
 * changes (~3 KB of record each with schemas), which overshot the bound by ~60 MB (heap snapshot).
 * 2 MiB (was 16, then 4) still queues about four 450 kB produce requests. With the consumer's smaller
 * bounds (kafka/consumer.ts) the bench's one-way peak RSS fell ~60 MiB (16 -> 4), then from ~330 to
 * 313-319 MiB (4 -> 2, two runs each); throughput stayed within run-to-run noise.
 */
const MAX_UNACKED_BYTES = 2 * 1024 * 1024;

/**
 * pgbisync's event topics have one partition (kafka/topics.ts): commit order needs it in transactional
 * mode. Naming the partition on every record also spares the client a murmur2 hash of every key.
 */
const PARTITION = 0;

/** Sends every record to {@link PARTITION}. */
function toPartition(producer: RecordProducer): RecordProducer {
  return { send: (records) => producer.send(records.map((r) => ({ ...r, partition: PARTITION }))) };
}

export interface CaptureOptions {
  readonly node: string;
  readonly url: string;
  readonly tables: readonly string[];
  readonly encoder: ChangeEncoder;
  readonly producer: RecordProducer;
  readonly topicFor: (schema: string, table: string) => string;
  readonly snapshot: 'initial' | 'never';
  readonly snapshotChunkRows: number;
  readonly maxBatchEvents: number;
  readonly onProgress?: (event: CaptureProgressEvent) => void;
}

export type CaptureProgressEvent =
  | { readonly kind: 'snapshot'; readonly progress: SnapshotProgress }
  | { readonly kind: 'confirmed'; readonly lsn: bigint }
  | ({ readonly kind: 'sent' } & SentBatch)
  | { readonly kind: 'loop-dropped'; readonly origin: string };

export class Capture {
  readonly #options: CaptureOptions;
  readonly slot: string;
  readonly publication: string;
  /** Ids of the event schemas known to be stored on the source (schemaless records only). */
  readonly #storedSchemas = new Set<string>();

  constructor(options: CaptureOptions) {
    this.#options = options;
    this.slot = objectNames.slot(options.node);
    this.publication = objectNames.publication(options.node);
  }

  /** Runs until `signal` aborts (resolves) or the stream fails (rejects). */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const admin = newPgClient({ connectionString: o.url, application_name: `pgbisync-capture-${o.node}` });
    await admin.connect();
    const conn = await ReplicationConnection.connect(o.url, `pgbisync-capture-${o.node}`);
    try {
      await this.#prepareSlot(admin, conn, signal);
      const major = Number(
        (await admin.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]?.v ??
          0,
      );
      const primaryKeys = await primaryKeysByTable(admin, o.tables);
      await admin.end();
      await this.#stream(conn, major >= 160000, primaryKeys, signal);
    } finally {
      await admin.end().catch(() => undefined);
      await conn.close();
    }
  }

  /** Ensures the slot exists and its initial snapshot was delivered to Kafka. */
  async #prepareSlot(admin: pg.Client, conn: ReplicationConnection, signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const state = await admin.query<{ done: boolean }>(
      'SELECT snapshot_done_at IS NOT NULL AS done FROM pgbisync.capture_state WHERE node = $1',
      [o.node],
    );
    const slot = await readSlot(admin, this.slot);
    const snapshotDone = o.snapshot === 'never' || state.rows[0]?.done === true;
    if (slot !== undefined && snapshotDone) return;
    if (slot === undefined) {
      const created = await createSlotWithSnapshot(conn, this.slot);
      await admin.query(
        `INSERT INTO pgbisync.capture_state (node, slot, consistent_lsn, snapshot_done_at) VALUES ($1, $2, $3, NULL)
         ON CONFLICT (node) DO UPDATE SET slot = EXCLUDED.slot, consistent_lsn = EXCLUDED.consistent_lsn, snapshot_done_at = NULL`,
        [o.node, this.slot, formatLsn(created.consistentPoint)],
      );
      if (o.snapshot === 'initial')
        await this.#snapshot(created.snapshotName, created.consistentPoint, signal);
    } else {
      // A snapshot that never completed (a crash while it was read). The slot stays: dropping it would
      // lose what changed since it was created (a row deleted meanwhile would then be deleted nowhere).
      // The tables are read again in a snapshot taken now, and the stream then replays every change
      // since the slot's start after it. Replayed changes are older than the snapshot's rows, which
      // carry their own commit times, so last-writer-wins keeps the newer rows (and a replayed delete
      // still removes a row the interrupted snapshot had published).
      const reader = newPgClient({
        connectionString: o.url,
        application_name: `pgbisync-capture-${o.node}`,
      });
      await reader.connect();
      try {
        await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const r = await reader.query<{ name: string; lsn: string }>(
          'SELECT pg_export_snapshot() AS name, pg_current_wal_lsn()::text AS lsn',
        );
        const exported = r.rows[0]!;
        await this.#snapshot(exported.name, parseLsn(exported.lsn), signal);
      } finally {
        await reader.end().catch(() => undefined);
      }
    }
    // An upsert: a crash between the slot's creation and the state row's insert leaves no row, and an
    // UPDATE of none would leave the snapshot undone forever (every restart would read it again).
    await admin.query(
      `INSERT INTO pgbisync.capture_state (node, slot, consistent_lsn, snapshot_done_at)
       SELECT $1::text, $2::text, confirmed_flush_lsn, clock_timestamp() FROM pg_replication_slots WHERE slot_name = $2::text
       ON CONFLICT (node) DO UPDATE SET snapshot_done_at = EXCLUDED.snapshot_done_at`,
      [o.node, this.slot],
    );
  }

  async #snapshot(snapshotName: string, consistentPoint: bigint, signal: AbortSignal): Promise<void> {
    const o = this.#options;
    await runSnapshot({
      node: o.node,
      storeSchema: (schema) => this.#storeSchemas([schema]),
      url: o.url,
      snapshotName,
      consistentPoint,
      tables: o.tables,
      encoder: o.encoder,
      producer: toPartition(o.producer),
      topicFor: o.topicFor,
      chunkRows: o.snapshotChunkRows,
      signal,
      onProgress: (progress) => o.onProgress?.({ kind: 'snapshot', progress }),
    });
  }

  /** Stores the schemas not stored yet; resolves once they are committed on the source. */
  async #storeSchemas(schemas: readonly EventSchema[]): Promise<void> {
    const missing = schemas.filter((s) => !this.#storedSchemas.has(s.id));
    if (missing.length === 0) return;
    await storeSourceSchemas(this.#options.url, this.#options.node, missing);
    for (const s of missing) this.#storedSchemas.add(s.id);
  }

  async #stream(
    conn: ReplicationConnection,
    serverFiltersOrigin: boolean,
    primaryKeys: ReadonlyMap<string, readonly string[]>,
    signal: AbortSignal,
  ): Promise<void> {
    const o = this.#options;
    const sender = new CaptureSender({
      producer: o.producer,
      onConfirm: (lsn) => {
        conn.confirm(lsn);
        o.onProgress?.({ kind: 'confirmed', lsn });
      },
      maxBatchEvents: o.maxBatchEvents,
      maxUnackedBytes: MAX_UNACKED_BYTES,
      onSent: (sent) => o.onProgress?.({ kind: 'sent', ...sent }),
    });
    /** Schemas of relations just compiled, to store before any of their records is sent. */
    const newSchemas: EventSchema[] = [];
    const assembler = new TransactionAssembler(
      {
        encoder: o.encoder,
        topicFor: o.topicFor,
        partition: PARTITION,
        primaryKeyOf: (schema, table) => primaryKeys.get(`${schema}.${table}`),
        onLoopDropped: (origin) => o.onProgress?.({ kind: 'loop-dropped', origin }),
      },
      {
        record: (record) => sender.record(record),
        event: (table) => sender.event(table),
        commit: (endLsn) => sender.commit(endLsn),
        schema: (schema) => newSchemas.push(schema),
        keepalive: (walEnd) => sender.keepalive(walEnd),
      },
    );
    conn.start({
      slot: this.slot,
      publications: [this.publication],
      startLsn: 0n,
      originNone: serverFiltersOrigin,
    });
    for await (const items of conn.batches(signal)) {
      for (const item of items) {
        assembler.handle(item);
        if (newSchemas.length > 0) await this.#storeSchemas(newSchemas.splice(0));
        if (sender.overBound) {
          sender.flush();
          await sender.backpressure(signal);
        }
      }
      if (sender.failure !== undefined) throw sender.failure;
      sender.flush();
      await sender.backpressure(signal);
    }
    // Graceful stop: wait for what was sent so the final status update confirms it.
    await sender.drain();
    if (sender.failure !== undefined && !signal.aborted) throw sender.failure;
  }
}

/**
 * Primary-key columns of the synced tables that have one ('schema.table' -> columns). pgoutput flags the
 * replica identity's columns as the key, which under REPLICA IDENTITY FULL is every column; the record
 * key must still be the primary key (as Debezium keys it, and as the snapshot does).
 */
async function primaryKeysByTable(
  db: pg.Client,
  tables: readonly string[],
): Promise<Map<string, readonly string[]>> {
  const keys = await readPrimaryKeys(db, tables.map(splitTableName));
  const byTable = new Map<string, readonly string[]>();
  for (const [i, table] of tables.entries()) {
    const key = keys[i] ?? [];
    if (key.length > 0) byTable.set(table, key);
  }
  return byTable;
}
