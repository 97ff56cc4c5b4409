/**
 * The initial copy: reads every synced table inside the snapshot exported by slot creation and sends
 * its rows, so streaming continues from the slot's consistent point with no gap and no overlap. Rows go
 * as row batches (`records: 'batched'`, ./snapshot-batches.ts: many rows of one source transaction per
 * record) or as one `op: r` event per row, read with a cursor in chunks (text format: the same output
 * functions pgoutput uses, so snapshot and stream values are identical). Each chunk, and each batch,
 * ends with a record marked as a transaction's last, so an applier applies them as transactions of
 * bounded size.
 *
 * Only the versions this node wrote are sent: rows (and deletes) its appliers wrote came from another
 * node's topic, which brings them to every node (see OWN_VERSIONS).
 *
 * After a table's rows come the deletes the node remembers (pgbisync.tombstones) of keys it no longer
 * holds, as `op: d` events (each followed by a Kafka tombstone, as streamed deletes are), dated by the
 * deleting transaction, and the node's last TRUNCATE of the table as a truncate event dated by its
 * transaction. A snapshot is then the node's whole state, deletes included: what a re-copy
 * after a lost slot (`pgbisync resync`) needs to bring deletes made in the gap to the other nodes.
 */
import type pg from 'pg';
import type { EventSchema } from '../events/envelope.ts';
import type { OutRecord, RecordProducer } from '../kafka/records.ts';
import { endOfTransaction } from '../kafka/wire-headers.ts';
import { newPgClient } from '../pg/client.ts';
import type { RelationMessage, Tuple, TupleValue } from '../pg/pgoutput/messages.ts';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';
import { qualifiedName, quoteIdent, quoteLiteral, splitTableName } from '../pg/sql-names.ts';
import { readPrimaryKeys, readReferencedTables, replicaIdentityOf } from '../pg/table-catalog.ts';
import {
  type ChangeEncoder,
  type EncodedRecord,
  recordHeaders,
  type SourcePosition,
  type TransactionPosition,
} from './change-encoder.ts';
import { copiedParts } from './copy-parts.ts';
import type { CopyResume } from './copy-progress.ts';
import { sendEventPages, sendRowBatches } from './snapshot-batches.ts';
import { COMMIT_US, OWN_VERSIONS } from './snapshot-sql.ts';

export interface SnapshotProgress {
  readonly table: string;
  readonly rows: number;
  /** Remembered deletes sent as delete events (counted when the table is done). */
  readonly deletes: number;
  readonly rowsPerSec: number;
  readonly done: boolean;
  /** The heap page a resumed copy of the table started at (./copy-progress.ts). */
  readonly fromPage?: number;
  /** The operator paused the copy of the table: it stopped here (not done). */
  readonly paused?: boolean;
}

export interface SnapshotOptions {
  /** The node read: only the row versions it wrote are sent (see OWN_VERSIONS). */
  readonly node: string;
  readonly url: string;
  readonly snapshotName: string;
  readonly consistentPoint: bigint;
  /** The identity of the source's WAL (IDENTIFY_SYSTEM): sent with each chunk's LSN. */
  readonly source?: SourceIdentity;
  readonly tables: readonly string[];
  readonly encoder: ChangeEncoder;
  /** Stores the schema of a table's schemaless records on the source before they are sent. */
  readonly storeSchema: (schema: EventSchema) => Promise<void>;
  readonly producer: RecordProducer;
  readonly topicFor: (schema: string, table: string) => string;
  readonly chunkRows: number;
  /**
   * How rows travel (capture.snapshotRecords): 'batched', many rows of one commit time per record
   * (./snapshot-batches.ts; pgbisync's applier only), or 'events', one Debezium `op: r` event per row.
   * Default 'events'.
   */
  readonly records?: 'batched' | 'events';
  readonly signal: AbortSignal;
  readonly onProgress?: (progress: SnapshotProgress) => void;
  /**
   * Where each table's copy starts, and what Kafka acknowledged (row batches only: ./copy-progress.ts);
   * a table it says is paused is left where it is, its remembered deletes unsent.
   */
  readonly resume?: CopyResume;
}

const rawText = { getTypeParser: () => (value: string) => value };

/** Relation description as pgoutput would send it, read from the catalog (inside the snapshot). */
async function describe(
  client: pg.Client,
  schema: string,
  table: string,
  relationId: number,
): Promise<RelationMessage> {
  const r = await client.query<{ name: string; typeoid: string; typmod: string; ident: string }>(
    `SELECT a.attname AS name, a.atttypid::int AS typeoid, a.atttypmod AS typmod, c.relreplident AS ident
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE c.oid = ${quoteLiteral(qualifiedName(schema, table))}::regclass
        AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
  );
  const [primaryKey = []] = await readPrimaryKeys(client, [{ schema, table }]);
  const ident = r.rows[0]?.ident;
  return {
    tag: 'relation',
    relationId,
    schema,
    table,
    replicaIdentity: (ident === undefined ? undefined : replicaIdentityOf(ident)) ?? 'default',
    // This client parses nothing (rawText): every value is its text form ('23', '-1').
    columns: r.rows.map((c) => ({
      name: c.name,
      typeOid: Number(c.typeoid),
      typeMod: Number(c.typmod),
      isKey: primaryKey.includes(c.name),
    })),
  };
}

export async function runSnapshot(o: SnapshotOptions): Promise<number> {
  const client = newPgClient({
    connectionString: o.url,
    types: rawText,
    application_name: 'pgbisync-snapshot',
  });
  await client.connect();
  let total = 0;
  const sending: Sending = { pending: Promise.resolve(), before: Promise.resolve() };
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(o.snapshotName)}`);
    const txid = Number(
      (await client.query<{ x: string }>('SELECT txid_current_if_assigned()::text AS x')).rows[0]?.x ?? 0,
    );
    // The replication origins of the other nodes' appliers (pgbisync_<source>@<target>, or pgbisync_<source>
    // as earlier versions named them; not this node's own, which verify --repair uses for its
    // versions), as an oid[] literal ('{}' when none).
    const others = (
      await client.query<{ ids: string }>(
        `SELECT coalesce(array_agg(roident), '{}')::text AS ids FROM pg_replication_origin
          WHERE roname LIKE 'pgbisync\\_%' AND split_part(substr(roname, 10), '@', 1) <> $1`,
        [o.node],
      )
    ).rows[0]!.ids;
    const parts = await copiedParts(
      client,
      parentsFirst(o.tables, await readReferencedTables(client, o.tables)),
    );
    for (const [index, part] of parts.entries()) {
      // Progress and copy positions are the part's; rows, truncates and deletes are the synced table's.
      const name = part.read;
      const { schema, table } = splitTableName(part.of);
      const partitioned = part.read !== part.of;
      const relation = await describe(client, schema, table, -(index + 1));
      const encoder = o.encoder.forRelation(relation, new Map());
      if (encoder.schema !== undefined) await o.storeSchema(encoder.schema);
      const headers = recordHeaders(encoder);
      const topic = o.topicFor(schema, table);
      let order = 0;
      /** The row's own commit time (the query's last column) as the event's. */
      const sourceOf = (row: readonly unknown[]): SourcePosition => ({
        lsn: o.consistentPoint,
        commitLsn: o.consistentPoint,
        txId: txid,
        commitTimeUs: BigInt(row[row.length - 1] as string),
        snapshot: 'true',
      });
      const transaction = (): TransactionPosition => {
        order++;
        return { id: `snapshot:${o.consistentPoint}`, totalOrder: order, dataCollectionOrder: order };
      };
      const withSchema = (encoded: EncodedRecord): OutRecord =>
        headers === undefined || encoded.value === null
          ? { topic, ...encoded }
          : { topic, ...encoded, headers };
      const started = Date.now();
      const resume = o.resume;
      const fromPage = resume?.from(name) ?? 0;
      const progress = (rows: number, deletes: number, done: boolean, paused = false) => {
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        o.onProgress?.({
          table: name,
          rows,
          deletes,
          rowsPerSec: Math.round(rows / seconds),
          done,
          ...(fromPage > 0 ? { fromPage } : {}),
          ...(paused ? { paused } : {}),
        });
      };
      const qualified = qualifiedName(schema, table);
      const read = partitioned
        ? qualifiedName(splitTableName(name).schema, splitTableName(name).table)
        : qualified;
      // First, the node's own TRUNCATE of the table (its tombstone, key '{}'), as a truncate at its commit
      // time: applied under last-writer-wins, it removes on the other nodes the rows written before it
      // that this node never saw, and keeps the newer ones (sent as anything else, it was a delete of a
      // null key that removed nothing: the torture test found the rows kept). Before the rows, as in
      // commit order: a source's change replaces that source's versions whatever their times
      // (../conflicts/policy.ts), so sent after them it deleted this node's newer rows on the targets.
      const truncates = !part.first
        ? 0
        : await sendCursor(
            client,
            o,
            sending,
            `SELECT ${COMMIT_US} FROM pgbisync.tombstones b ${OWN_VERSIONS('b', others)}
                AND b.table_name = ${quoteLiteral(`${schema}.${table}`)} AND b.key = '{}'::jsonb`,
            (row) => [withSchema(encoder.truncate(sourceOf(row), transaction()))],
            () => undefined,
          );
      const columns = relation.columns.map((c) => quoteIdent(c.name));
      // Each row carries its own commit time (the last column), as a streamed change would: conflict
      // resolution compares it on every node. Unknown (written before track_commit_timestamp was on, or
      // truncated) is the Unix epoch, as pgbisync.version_time has it on every target (../conflicts/policy.ts).
      const rowsQuery = (where = '') =>
        `SELECT ${columns.map((c) => `t.${c}`).join(', ')}, ${COMMIT_US} FROM ONLY ${read} t ${OWN_VERSIONS('t', others)}${where}`;
      const asEvents = (query: string, onChunk: (n: number) => void) =>
        sendCursor(
          client,
          o,
          sending,
          query,
          (row) => [
            withSchema(
              encoder.change('r', undefined, toTuple(row.slice(0, -1)), sourceOf(row), transaction()),
            ),
          ],
          onChunk,
        );
      const pageAsEvents = (from: number, to: number) =>
        asEvents(
          rowsQuery(` AND t.ctid >= '(${from},0)'::tid AND t.ctid < '(${to},0)'::tid`),
          () => undefined,
        );
      // Once every record handed to Kafka so far is acknowledged, the range is.
      const pages = {
        qualified: read,
        maxRows: o.chunkRows,
        signal: o.signal,
        sendPageAsEvents: pageAsEvents,
        fromPage,
        onRows: (n: number) => progress(n, 0, false),
        ...(resume === undefined
          ? {}
          : {
              onRange: (to: number) => {
                sending.pending.then(
                  () => resume.acked(name, to),
                  () => undefined,
                );
              },
              paused: () => resume.paused(name),
            }),
      };
      const rows =
        o.records === 'batched'
          ? await sendRowBatches(client, {
              ...pages,
              relation,
              others,
              topic,
              consistentPoint: o.consistentPoint,
              ...(o.source === undefined ? {} : { source: o.source }),
              send: (records) => sendInTurn(o.producer, sending, records),
            })
          : await sendEventPages(client, pages);
      if (resume?.pausedTables.includes(name) === true) {
        progress(rows, 0, false, true);
        total += rows;
        continue;
      }
      // The deletes this node remembers (pgbisync.tombstones) of keys it no longer holds, each dated by
      // its own commit time: a copy of the rows alone would leave a row deleted here, while the changes
      // were not captured (a lost slot), on the other nodes for good. They apply under last-writer-wins
      // like a streamed delete: a version written there after the delete stays.
      const key = relation.columns.filter((c) => c.isKey).map((c) => quoteIdent(c.name));
      const deletes =
        key.length === 0 || !part.last
          ? 0
          : await sendCursor(
              client,
              o,
              sending,
              `SELECT ${relation.columns.map((c) => (c.isKey ? `r.${quoteIdent(c.name)}` : 'NULL')).join(', ')}, ${COMMIT_US}
                 FROM pgbisync.tombstones b CROSS JOIN LATERAL jsonb_populate_record(NULL::${qualified}, b.key) r
                 ${OWN_VERSIONS('b', others)}
                  AND b.table_name = ${quoteLiteral(`${schema}.${table}`)} AND b.key <> '{}'::jsonb
                  AND NOT EXISTS (SELECT 1 FROM ${partitioned ? '' : 'ONLY '}${qualified} t
                                   WHERE (${key.map((k) => `t.${k}`).join(', ')}) = (${key.map((k) => `r.${k}`).join(', ')}))`,
              (row) => {
                const before = toTuple(row.slice(0, -1));
                return [
                  withSchema(encoder.change('d', before, undefined, sourceOf(row), transaction())),
                  withSchema(encoder.tombstone(before)),
                ];
              },
              () => undefined,
            );
      total += rows + deletes + truncates;
      progress(rows, deletes + truncates, true);
    }
    await sending.pending;
    await client.query('COMMIT');
    return total;
  } finally {
    await sending.pending.catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

/**
 * Reads `query` through a cursor in chunks of `o.chunkRows` rows and sends each chunk's records as one
 * transaction (its last record carries the transaction's end). Keeps one send in flight while the
 * next chunk is read. Returns the number of rows read.
 */
async function sendCursor(
  client: pg.Client,
  o: SnapshotOptions,
  sending: Sending,
  query: string,
  toRecords: (row: readonly unknown[]) => OutRecord[],
  onChunk: (rowsSoFar: number) => void,
): Promise<number> {
  await client.query(`DECLARE snap NO SCROLL CURSOR FOR ${query}`);
  let rows = 0;
  for (;;) {
    if (o.signal.aborted) throw o.signal.reason ?? new Error('snapshot aborted');
    const chunk = await client.query<unknown[]>({ text: `FETCH ${o.chunkRows} FROM snap`, rowMode: 'array' });
    if (chunk.rows.length === 0) break;
    const records = chunk.rows.flatMap(toRecords);
    const last = records[records.length - 1]!;
    records[records.length - 1] = {
      ...last,
      headers: endOfTransaction(last.headers, o.consistentPoint, true, undefined, o.source),
    };
    await sendInTurn(o.producer, sending, records);
    rows += chunk.rows.length;
    onChunk(rows);
  }
  await client.query('CLOSE snap');
  return rows;
}

/** The copy's sends in flight: the latest one and the one before it. */
interface Sending {
  pending: Promise<unknown>;
  before: Promise<unknown>;
}

/**
 * Sends `records` once the send before the latest one settled: two sends in flight while the next part
 * is read, so the source reads a part while the broker acknowledges the last two (the producer keeps
 * their order and fails every later send with an earlier one). A send's failure is read at a later call
 * (or the copy's end): handled from the start, or it would end the process while the next part's query
 * is under way.
 */
async function sendInTurn(producer: RecordProducer, sending: Sending, records: OutRecord[]): Promise<void> {
  await sending.before;
  sending.before = sending.pending;
  sending.pending = producer.send(records);
  sending.pending.catch(() => undefined);
}

const NULL_VALUE: TupleValue = { kind: 'null' };

function toTuple(row: readonly unknown[]): Tuple {
  return row.map((v) => (v === null ? NULL_VALUE : { kind: 'text', text: v as string }));
}

/**
 * `tables` with every table after the ones it references (`references`, by foreign key), otherwise in
 * their order. Each snapshot chunk is a target transaction of its own: a child's chunk applied before
 * its parents' fails the target's foreign key. No order satisfies a cycle of references: its tables
 * come as the walk reaches them, each once. A self-reference is no reason to move.
 */
export function parentsFirst(
  tables: readonly string[],
  references: ReadonlyMap<string, readonly string[]>,
): string[] {
  const out: string[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const place = (table: string) => {
    if (placed.has(table) || visiting.has(table)) return;
    visiting.add(table);
    for (const parent of references.get(table) ?? []) {
      if (parent !== table && tables.includes(parent)) place(parent);
    }
    visiting.delete(table);
    placed.add(table);
    out.push(table);
  };
  for (const table of tables) place(table);
  return out;
}
