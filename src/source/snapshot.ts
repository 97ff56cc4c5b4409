/**
 * The initial copy: reads every synced table (parents before the tables that reference them) inside the
 * snapshot exported by slot creation and emits each row as an `op: r` event, so streaming continues from the slot's consistent point with no gap and
 * no overlap. Rows are read with a cursor in chunks (text format: the same output functions pgoutput
 * uses, so snapshot and stream values are identical). Each chunk ends with a record marked as a
 * transaction's last, so an applier applies chunks as transactions of bounded size.
 */
import type pg from 'pg';
import type { EventSchema } from '../events/envelope.ts';
import type { OutRecord, RecordProducer } from '../kafka/records.ts';
import { SCHEMA_HEADER, transactionEndHeaders } from '../kafka/wire-headers.ts';
import { newPgClient } from '../pg/client.ts';
import type { RelationMessage, Tuple, TupleValue } from '../pg/pgoutput/messages.ts';
import { qualifiedName, quoteIdent, quoteLiteral, splitTableName } from '../pg/sql-names.ts';
import { readPrimaryKeys, readReferencedTables, replicaIdentityOf } from '../pg/table-catalog.ts';
import type { ChangeEncoder, SourcePosition } from './change-encoder.ts';

export interface SnapshotProgress {
  readonly table: string;
  readonly rows: number;
  readonly rowsPerSec: number;
  readonly done: boolean;
}

export interface SnapshotOptions {
  readonly url: string;
  readonly snapshotName: string;
  readonly consistentPoint: bigint;
  readonly tables: readonly string[];
  readonly encoder: ChangeEncoder;
  /** Stores the schema of a table's schemaless records on the source before they are sent. */
  readonly storeSchema: (schema: EventSchema) => Promise<void>;
  readonly producer: RecordProducer;
  readonly topicFor: (schema: string, table: string) => string;
  readonly chunkRows: number;
  readonly signal: AbortSignal;
  readonly onProgress?: (progress: SnapshotProgress) => void;
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
  let pending: Promise<unknown> = Promise.resolve();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(o.snapshotName)}`);
    const txid = Number(
      (await client.query<{ x: string }>('SELECT txid_current_if_assigned()::text AS x')).rows[0]?.x ?? 0,
    );
    const tables = parentsFirst(o.tables, await readReferencedTables(client, o.tables));
    for (const [index, name] of tables.entries()) {
      const { schema, table } = splitTableName(name);
      const relation = await describe(client, schema, table, -(index + 1));
      const encoder = o.encoder.forRelation(relation, new Map());
      if (encoder.schema !== undefined) await o.storeSchema(encoder.schema);
      const schemaHeader: Record<string, string> =
        encoder.schema === undefined ? {} : { [SCHEMA_HEADER]: encoder.schema.id };
      const topic = o.topicFor(schema, table);
      const columns = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
      // Each row carries its own commit time (the last column), as a streamed change would: conflict
      // resolution compares it on every node. Unknown (frozen, or written before
      // track_commit_timestamp was on) counts as oldest: the Unix epoch.
      await client.query(
        `DECLARE snap NO SCROLL CURSOR FOR SELECT ${columns},
           coalesce((extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint, 0)::text
           FROM ONLY ${qualifiedName(schema, table)}`,
      );
      const started = Date.now();
      let rows = 0;
      let order = 0;
      for (;;) {
        if (o.signal.aborted) throw o.signal.reason ?? new Error('snapshot aborted');
        const chunk = await client.query<unknown[]>({
          text: `FETCH ${o.chunkRows} FROM snap`,
          rowMode: 'array',
        });
        if (chunk.rows.length === 0) break;
        const records: OutRecord[] = [];
        const last = chunk.rows.length - 1;
        for (const [i, row] of chunk.rows.entries()) {
          const source: SourcePosition = {
            lsn: o.consistentPoint,
            commitLsn: o.consistentPoint,
            txId: txid,
            commitTimeUs: BigInt(row[row.length - 1] as string),
            snapshot: 'true',
          };
          order++;
          const encoded = encoder.change('r', undefined, toTuple(row.slice(0, -1)), source, {
            id: `snapshot:${o.consistentPoint}`,
            totalOrder: order,
            dataCollectionOrder: order,
          });
          const record: OutRecord =
            i === last
              ? {
                  topic,
                  ...encoded,
                  headers: { ...schemaHeader, ...transactionEndHeaders(o.consistentPoint, true) },
                }
              : encoder.schema === undefined
                ? { topic, ...encoded }
                : { topic, ...encoded, headers: schemaHeader };
          records.push(record);
        }
        // Keep one send in flight while the next chunk is read. Its failure is read at the next chunk:
        // handled from the start, or it would end the process while that chunk's FETCH is under way.
        await pending;
        pending = o.producer.send(records);
        pending.catch(() => undefined);
        rows += chunk.rows.length;
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        o.onProgress?.({ table: name, rows, rowsPerSec: Math.round(rows / seconds), done: false });
      }
      await client.query('CLOSE snap');
      total += rows;
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      o.onProgress?.({ table: name, rows, rowsPerSec: Math.round(rows / seconds), done: true });
    }
    await pending;
    await client.query('COMMIT');
    return total;
  } finally {
    await pending.catch(() => undefined);
    await client.end().catch(() => undefined);
  }
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

const NULL_VALUE: TupleValue = { kind: 'null' };

function toTuple(row: readonly unknown[]): Tuple {
  return row.map((v) => (v === null ? NULL_VALUE : { kind: 'text', text: v as string }));
}
