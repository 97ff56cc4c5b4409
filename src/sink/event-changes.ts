/**
 * The applier's view of a Kafka record: a Debezium change event (ours or the real connector's) turned
 * into a RowChange plus the source position the grouper needs. Tombstones carry no change (null).
 */
import { type ChangeEvent, type ColumnValue, PGBISYNC_VERSION_PREFIX } from '../events/change-event.ts';
import { decodeRecord } from '../events/decode.ts';
import { decodeRowBatch } from '../events/row-batch.ts';
import type { InRecord } from '../kafka/records.ts';
import { isRowBatch } from '../kafka/wire-headers.ts';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import type { RowChange } from './apply-model.ts';
import type { EventSchemas } from './event-schemas.ts';
import { type DecodedChange, recordPosition } from './transaction-grouper.ts';

/**
 * Decodes one record with a value (the grouper skips tombstones). Throws MalformedInputError for
 * anything that is not a change event. A schemaless record is read by the schema its
 * `pgbisync.schema` header names, from `schemas` (loaded for the batch beforehand).
 */
export function decodeChange(record: InRecord, schemas?: EventSchemas): DecodedChange {
  if (isRowBatch(record.headers) && record.value !== null) return decodeBatch(record, record.value);
  const decoded = decodeRecord(record.key, record.value, schemas?.schemaOf(record));
  if (decoded.kind === 'tombstone') {
    throw new MalformedInputError(`record ${recordPosition(record)} has no value`, {
      code: ErrorCode.EVENT_MALFORMED,
    });
  }
  return toDecodedChange(decoded, record);
}

export function toDecodedChange(event: ChangeEvent, record: InRecord): DecodedChange {
  const source = event.source;
  const snapshot = source.snapshot !== 'false';
  const row = rowChange(event, record);
  // A snapshot row keeps its own commit time (rows of one snapshot chunk differ).
  const change: RowChange = snapshot ? { ...row, commitTimeUs: source.tsUs } : row;
  return {
    change,
    lsn: source.lsn ?? 0n,
    txId: source.txId === null ? `lsn:${source.lsn ?? 0n}` : String(source.txId),
    commitTimeUs: source.tsUs,
    snapshot,
    totalOrder: event.transaction?.totalOrder,
    ours: source.version.startsWith(PGBISYNC_VERSION_PREFIX),
  };
}

/** A row batch of the initial copy (../events/row-batch.ts): one change of many rows, a transaction. */
function decodeBatch(record: InRecord, value: Buffer): DecodedChange {
  const batch = decodeRowBatch(value, recordPosition(record));
  return {
    change: {
      op: 'r',
      schema: batch.schema,
      table: batch.table,
      commitTimeUs: batch.commitTimeUs,
      batch: { columns: batch.columns, rows: batch.rows, values: batch.values },
    },
    lsn: 0n,
    txId: `batch@${record.offset}`,
    commitTimeUs: batch.commitTimeUs,
    snapshot: true,
    ours: true,
  };
}

function rowChange(event: ChangeEvent, record: InRecord): RowChange {
  const base = { op: event.op, schema: event.schema, table: event.table };
  switch (event.op) {
    case 't':
      return base;
    case 'd': {
      const key = event.key ?? keyFrom(event.before, record);
      return { ...base, beforeKey: Object.fromEntries(key) };
    }
    case 'c':
    case 'r':
    case 'u': {
      if (event.after === null) {
        throw new MalformedInputError(
          `event at ${recordPosition(record)}: op '${event.op}' without an 'after' row`,
          {
            code: ErrorCode.EVENT_MALFORMED,
            hint: 'the producer of this topic must send full after-images (Debezium envelope)',
          },
        );
      }
      const after: Record<string, ColumnValue> = Object.fromEntries(event.after);
      // The row's key before the change: an update that changes the key must delete the old one.
      const before = event.before === null ? undefined : keyOf(event.before, event.key);
      return before === undefined ? { ...base, after } : { ...base, after, beforeKey: before };
    }
    default:
      event.op satisfies never;
      throw new MalformedInputError(`event at ${recordPosition(record)}: unknown op`, {
        code: ErrorCode.EVENT_MALFORMED,
      });
  }
}

/** The before image's values of the key columns (the key names come from the record key). */
function keyOf(
  before: ReadonlyMap<string, ColumnValue>,
  key: ReadonlyMap<string, string | null> | null,
): Record<string, string | null> | undefined {
  if (key === null) return undefined;
  const out: Record<string, string | null> = {};
  for (const name of key.keys()) {
    const v = before.get(name);
    if (v === undefined || typeof v === 'symbol') return undefined;
    out[name] = v;
  }
  return out;
}

function keyFrom(
  row: ReadonlyMap<string, ColumnValue> | null,
  record: InRecord,
): ReadonlyMap<string, string | null> {
  if (row === null) {
    throw new MalformedInputError(
      `delete event at ${recordPosition(record)} has neither a key nor a 'before' row`,
      {
        code: ErrorCode.EVENT_MALFORMED,
      },
    );
  }
  const out = new Map<string, string | null>();
  for (const [k, v] of row) if (typeof v !== 'symbol') out.set(k, v);
  return out;
}
