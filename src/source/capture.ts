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
import { readTypeRegistry } from '../events/pg-types.ts';
import { storeSourceSchemas } from '../events/schema-store.ts';
import type { RecordProducer } from '../kafka/records.ts';
import { newPgClient } from '../pg/client.ts';
import { formatLsn, parseLsn } from '../pg/lsn.ts';
import type { RelationMessage } from '../pg/pgoutput/messages.ts';
import { ReplicationConnection } from '../pg/replication/replication-connection.ts';
import { identifySource, type SourceIdentity } from '../pg/replication/source-identity.ts';
import { objectNames, qualifiedName, splitTableName } from '../pg/sql-names.ts';
import { partitionRootOf, primaryKeysByTable, withLeafPartitions } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode, RetryableError } from '../runtime/errors.ts';
import { recordCopied, requirePublished, tablesToCopy } from './added-tables.ts';
import { takeCaptureRun } from './capture-run.ts';
import { CaptureSender, type SentBatch } from './capture-sender.ts';
import type { ChangeEncoder } from './change-encoder.ts';
import { CopyProgress, clearCopyPositions, pausedCopies } from './copy-progress.ts';
import { readSlotHealth, slotLoss, slotLostError } from './slot-health.ts';
import { judgeFailure, nudgeCatalog, recordedSlot, releaseUnrecordedSlot } from './slot-recovery.ts';
import { createSlotWithSnapshot, ensureFailover } from './slot-setup.ts';
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
  /** The slot is created (or marked) FAILOVER (PostgreSQL 17+; nodes[].failoverSlot). */
  readonly failoverSlot?: boolean;
  readonly snapshotChunkRows: number;
  /** How copied rows travel (./snapshot.ts SnapshotOptions.records); default 'events'. */
  readonly snapshotRecords?: 'batched' | 'events';
  readonly maxBatchEvents: number;
  readonly onProgress?: (event: CaptureProgressEvent) => void;
}

export type CaptureProgressEvent =
  /** The slot is ready (not lost) and the snapshot, if one was due, is in Kafka: streaming starts. */
  | { readonly kind: 'streaming' }
  | { readonly kind: 'snapshot'; readonly progress: SnapshotProgress }
  | { readonly kind: 'confirmed'; readonly lsn: bigint }
  | ({ readonly kind: 'sent' } & SentBatch)
  | { readonly kind: 'loop-dropped'; readonly origin: string }
  /** The publication holds a table this capture does not sync: its changes are left out. */
  | { readonly kind: 'unsynced'; readonly table: string };

export class Capture {
  readonly #options: CaptureOptions;
  readonly slot: string;
  readonly publication: string;
  /** Ids of the event schemas known to be stored on the source (schemaless records only). */
  readonly #storedSchemas = new Set<string>();
  /**
   * The identity of the WAL this run reads (system identifier, timeline), sent with every commit LSN
   * (../kafka/wire-headers.ts SOURCE_HEADER). Read once per connection: a server changes timeline only
   * when promoted, which ends every replication connection to it.
   */
  #source: SourceIdentity | undefined;
  /** This start's capture run (./capture-run.ts), on the first record of each transaction. */
  #run: bigint | undefined;

  constructor(options: CaptureOptions) {
    this.#options = options;
    this.slot = objectNames.slot(options.node);
    this.publication = objectNames.publication(options.node);
  }

  /**
   * Runs until `signal` aborts (resolves) or the stream fails (rejects). A slot that can no longer
   * stream the node's changes (gone, invalidated) rejects with a BlockedError (PGB2005, ./slot-health.ts).
   */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const admin = newPgClient({ connectionString: o.url, application_name: `pgbisync-capture-${o.node}` });
    await admin.connect();
    let conn: ReplicationConnection | undefined; // opened in the try: admin must not outlive its failure
    let streaming = false;
    try {
      conn = await ReplicationConnection.connect(o.url, `pgbisync-capture-${o.node}`);
      // Before the slot is created: the snapshot its creation exports lasts until the next command.
      this.#source = await identifySource(conn);
      this.#run = await takeCaptureRun(admin, o.node);
      // Before anything is encoded: the snapshot and the stream compile relations with these.
      const regclasses = o.tables.map((t) => {
        const { schema, table } = splitTableName(t);
        return qualifiedName(schema, table);
      });
      o.encoder.useCatalog?.(await readTypeRegistry(admin, regclasses));
      await this.#prepareSlot(admin, conn, signal);
      o.onProgress?.({ kind: 'streaming' });
      const major = Number(
        (await admin.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]?.v ??
          0,
      );
      const primaryKeys = await primaryKeysByTable(admin, o.tables);
      const synced = new Set(await withLeafPartitions(admin, o.tables));
      await admin.end();
      streaming = true;
      await this.#stream(conn, major >= 160000, primaryKeys, synced, signal);
    } catch (error) {
      if (signal.aborted || error instanceof BlockedError || conn === undefined) throw error;
      throw (await judgeFailure(o, this.slot, error, streaming)) ?? error;
    } finally {
      await admin.end().catch(() => undefined);
      await conn?.close();
    }
  }

  /**
   * Ensures the slot exists and the initial snapshot (or the re-copy `pgbisync resync` asked for) was
   * delivered to Kafka. A slot the capture streamed from that is gone or invalidated blocks (PGB2005)
   * unless a resync was asked for: re-creating it would silently skip every change in the gap.
   */
  async #prepareSlot(admin: pg.Client, conn: ReplicationConnection, signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const health = await readSlotHealth(admin, o.node, this.slot);
    const resync = health.resyncRequestedAt;
    const loss = slotLoss(health);
    if (loss !== undefined && resync === null) throw slotLostError(health, loss);
    let exists = health.exists;
    if (loss === 'invalidated') {
      // It can never stream again; the re-copy starts from a new one.
      await admin.query('SELECT pg_drop_replication_slot($1)', [this.slot]);
      exists = false;
    }
    await requirePublished(admin, o.node, this.publication, o.tables);
    if (o.failoverSlot === true) await ensureFailover(admin, conn, o.node, this.slot, exists);
    const snapshotDone = resync === null && (o.snapshot === 'never' || health.streamed);
    if (exists && snapshotDone) {
      // A copy the operator paused (`pgbisync resync <table> --pause`) waits until it is resumed.
      const paused = await pausedCopies(admin, o.node);
      const added = (await tablesToCopy(admin, o.node, o.tables)).filter((t) => !paused.has(t));
      // capture.snapshot 'never': the operator copies tables (none is copied when added either).
      if (added.length > 0 && o.snapshot === 'initial') {
        const stopped = await this.#copyNow(added, signal, true);
        await recordCopied(
          admin,
          o.node,
          o.tables.filter((t) => !paused.has(t) && !stopped.includes(t)),
        );
      }
      return;
    }
    // A re-copy is made whatever capture.snapshot says: the operator asked for it.
    const copy = o.snapshot === 'initial' || resync !== null;
    if (resync !== null) {
      // Marks the re-copy as under way (`pgbisync resync` follows it); a crash from here on copies again.
      await admin.query('UPDATE pgbisync.capture_state SET snapshot_done_at = NULL WHERE node = $1', [
        o.node,
      ]);
    }
    if (exists && !(await recordedSlot(admin, o.node, this.slot))) {
      // A slot this capture never recorded making: a former run's capture cut off while it made it (its
      // walsender finishing the slot alone), or a leftover. Never ours: start afresh (lease still held).
      signal.throwIfAborted();
      const holder = await releaseUnrecordedSlot(admin, o.node, this.slot);
      if (holder !== undefined) {
        throw new RetryableError(
          `capture of node ${o.node}: replication slot ${this.slot} is held by another session (pid ${holder.pid}, application_name '${holder.application}') and was not created by this capture`,
          {
            code: ErrorCode.PG_CONNECTION,
            hint: `the capture retries until it is free; if that session is not yours, end it: SELECT pg_terminate_backend(${holder.pid})`,
          },
        );
      }
      exists = false;
    }
    if (!exists) {
      // The recorded slot is gone: forgotten before the new one is made. A capture cut off while making
      // it leaves its walsender finishing the slot alone (creation waits for running transactions); the
      // next capture must find that slot unrecorded, not take it for the lost one it had streamed from.
      signal.throwIfAborted();
      await admin.query('UPDATE pgbisync.capture_state SET consistent_lsn = NULL WHERE node = $1', [o.node]);
      signal.throwIfAborted();
      const created = await createSlotWithSnapshot(conn, this.slot, o.failoverSlot === true);
      // The catalog change at once (PostgreSQL's slot-creation bug), then positions and record: in this
      // order (slot-creation-bug.kafka.test.ts failed with the record first, or positions cleared before).
      await nudgeCatalog(admin);
      // A new slot streams from now: an earlier copy's positions would leave out what it never saw.
      await clearCopyPositions(admin, o.node);
      await admin.query(
        `INSERT INTO pgbisync.capture_state (node, slot, consistent_lsn, snapshot_done_at) VALUES ($1, $2, $3, NULL)
         ON CONFLICT (node) DO UPDATE SET slot = EXCLUDED.slot, consistent_lsn = EXCLUDED.consistent_lsn, snapshot_done_at = NULL`,
        [o.node, this.slot, formatLsn(created.consistentPoint)],
      );
      if (copy) await this.#snapshot(created.snapshotName, created.consistentPoint, signal);
    } else {
      // A snapshot that never completed (a crash while it was read), or a re-copy of a node whose slot
      // is fine. The slot stays: dropping it would lose what changed since it was created (a row
      // deleted meanwhile would then be deleted nowhere). The tables are read again in a snapshot taken
      // now, and the stream then replays every change since the slot's start after it. Replayed changes
      // are older than the snapshot's rows, which carry their own commit times; the replay ends with
      // each row's latest change, so every node ends with the newest version (and a replayed delete
      // still removes a row the interrupted snapshot had published).
      await this.#copyNow(o.tables, signal);
    }
    // An upsert: a crash between the slot's creation and the state row's insert leaves no row, and an
    // UPDATE of none would leave the snapshot undone forever (every restart would read it again). The
    // resync request is cleared only if it is the one this copy served: a newer one stays.
    await admin.query(
      `INSERT INTO pgbisync.capture_state (node, slot, consistent_lsn, snapshot_done_at)
       SELECT $1::text, $2::text, confirmed_flush_lsn, clock_timestamp() FROM pg_replication_slots WHERE slot_name = $2::text
       ON CONFLICT (node) DO UPDATE SET snapshot_done_at = EXCLUDED.snapshot_done_at${
         resync === null
           ? ''
           : `,
         resync_requested_at = CASE WHEN capture_state.resync_requested_at = $3::timestamptz THEN NULL
                                    ELSE capture_state.resync_requested_at END`
       }`,
      resync === null ? [o.node, this.slot] : [o.node, this.slot, resync],
    );
    if (copy) await recordCopied(admin, o.node, o.tables);
  }

  /**
   * Copies `tables` as they are now, while the slot stays where it is: the stream then replays every
   * change since the slot's position after the copy (older than the copy's rows, which carry their own
   * commit times), so every node ends with the newest version of each row.
   */
  async #copyNow(
    tables: readonly string[],
    signal: AbortSignal,
    allowPause = false,
  ): Promise<readonly string[]> {
    const reader = newPgClient({
      connectionString: this.#options.url,
      application_name: `pgbisync-capture-${this.#options.node}`,
    });
    await reader.connect();
    try {
      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const r = await reader.query<{ name: string; lsn: string }>(
        'SELECT pg_export_snapshot() AS name, pg_current_wal_lsn()::text AS lsn',
      );
      const exported = r.rows[0]!;
      return await this.#snapshot(exported.name, parseLsn(exported.lsn), signal, tables, allowPause);
    } finally {
      await reader.end().catch(() => undefined);
    }
  }

  /**
   * Copies `tables` in the exported snapshot, each from where an interrupted copy left it
   * (./copy-progress.ts); `allowPause`: a table the operator pauses meanwhile is left where it is.
   * Returns the tables so paused.
   */
  async #snapshot(
    snapshotName: string,
    consistentPoint: bigint,
    signal: AbortSignal,
    tables: readonly string[] = this.#options.tables,
    allowPause = false,
  ): Promise<readonly string[]> {
    const o = this.#options;
    const resume = await CopyProgress.open(o.url, o.node, allowPause);
    try {
      await runSnapshot({
        resume,
        node: o.node,
        storeSchema: (schema) => this.#storeSchemas([schema]),
        url: o.url,
        snapshotName,
        consistentPoint,
        ...(this.#source === undefined ? {} : { source: this.#source }),
        tables,
        encoder: o.encoder,
        producer: toPartition(o.producer),
        topicFor: o.topicFor,
        chunkRows: o.snapshotChunkRows,
        ...(o.snapshotRecords === undefined ? {} : { records: o.snapshotRecords }),
        signal,
        onProgress: (progress) => o.onProgress?.({ kind: 'snapshot', progress }),
      });
      await resume.flush();
      await resume.done();
      return resume.pausedTables;
    } finally {
      await resume.close();
    }
  }

  /**
   * A relation the synced set lacks may be a partition made since the stream started (a synced
   * partitioned table's changes are its partitions'): its root is looked up once per stream, and it
   * joins the set.
   */
  async #learnPartition(relation: RelationMessage, synced: Set<string>, asked: Set<string>): Promise<void> {
    const name = `${relation.schema}.${relation.table}`;
    if (synced.has(name) || asked.has(name)) return;
    asked.add(name);
    const client = newPgClient({
      connectionString: this.#options.url,
      application_name: `pgbisync-capture-${this.#options.node}`,
    });
    await client.connect();
    try {
      const root = await partitionRootOf(client, relation.relationId);
      if (root !== undefined && this.#options.tables.includes(root)) synced.add(name);
    } finally {
      await client.end();
    }
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
    synced: Set<string>,
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
    /** Relations of the publication whose partition root was looked up (see #learnPartition). */
    const asked = new Set<string>();
    const assembler = new TransactionAssembler(
      {
        encoder: o.encoder,
        topicFor: o.topicFor,
        partition: PARTITION,
        primaryKeyOf: (schema, table) => primaryKeys.get(`${schema}.${table}`),
        onLoopDropped: (origin) => o.onProgress?.({ kind: 'loop-dropped', origin }),
        synced: (schema, table) => synced.has(`${schema}.${table}`),
        onUnsynced: (table) => o.onProgress?.({ kind: 'unsynced', table }),
        ...(this.#source === undefined ? {} : { source: this.#source }),
        ...(this.#run === undefined ? {} : { run: this.#run }),
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
        if (item.kind === 'data' && item.message.tag === 'relation')
          await this.#learnPartition(item.message, synced, asked);
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
