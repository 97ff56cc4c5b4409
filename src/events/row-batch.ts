/**
 * A row batch: many rows of one table copied in one Kafka record, the initial copy's compact form between
 * pgbisync nodes (capture.snapshotRecords: batched, the default; docs/architecture.md "Initial copy").
 * Every row of a batch has the same commit time on the source, so one guarded statement applies the
 * batch as one target transaction dated by it, as a streamed transaction of those rows would be.
 *
 * The value is JSON: the table, its column names, the row count, the commit time (microseconds since the
 * Unix epoch, as decimal text) and, per column, a PostgreSQL text[] literal of the column's values in
 * their text form (`{1,2,NULL}`), which the source server writes (array_agg(column::text)) and the
 * target server reads (the applier's statement casts each element to the target column's type). No row
 * is parsed or formatted in JavaScript on either side: that per-row work was most of the copy's cost.
 *
 * A batch record carries the header `pgbisync.rows` (../kafka/wire-headers.ts ROWS_HEADER) and wire
 * version 4, so an applier older than the format stops at it instead of setting it aside as malformed.
 * Consumers other than pgbisync's applier (the Debezium JDBC sink) need `op: r` events instead: set
 * capture.snapshotRecords: events.
 */
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';

export interface RowBatch {
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly string[];
  /** Rows in the batch: each literal of `values` has this many elements. */
  readonly rows: number;
  /** The rows' commit time on the source, microseconds since the Unix epoch (0: unknown). */
  readonly commitTimeUs: bigint;
  /** One text[] literal per column, in `columns` order. */
  readonly values: readonly string[];
}

/** The JSON object's `format` field: tells a batch from anything else a person finds on the topic. */
const FORMAT = 'pgbisync.rows/1';

export function encodeRowBatch(batch: RowBatch): Buffer {
  return Buffer.from(
    JSON.stringify({
      format: FORMAT,
      schema: batch.schema,
      table: batch.table,
      columns: batch.columns,
      rows: batch.rows,
      commitTimeUs: String(batch.commitTimeUs),
      values: batch.values,
    }),
  );
}

/** Reads a batch record's value; throws MalformedInputError naming `where` for anything else. */
export function decodeRowBatch(value: Buffer, where: string): RowBatch {
  const bad = (why: string) =>
    new MalformedInputError(`row batch at ${where}: ${why}`, {
      code: ErrorCode.EVENT_MALFORMED,
      hint: "only pgbisync's capture writes row batches (header pgbisync.rows); see docs/security.md",
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (error) {
    throw bad(`not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw bad('not a JSON object');
  const o = parsed as Record<string, unknown>;
  if (o.format !== FORMAT) throw bad(`format is ${JSON.stringify(o.format)}, not "${FORMAT}"`);
  const text = (name: string): string => {
    const v = o[name];
    if (typeof v !== 'string' || v === '') throw bad(`field ${name} is not a non-empty string`);
    return v;
  };
  const texts = (name: string): string[] => {
    const v = o[name];
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string')) {
      throw bad(`field ${name} is not a non-empty array of strings`);
    }
    return v as string[];
  };
  const columns = texts('columns');
  const values = texts('values');
  if (values.length !== columns.length) {
    throw bad(`${values.length} value arrays for ${columns.length} columns`);
  }
  if (new Set(columns).size !== columns.length) throw bad('a column is named twice');
  const rows = o.rows;
  if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 1) {
    throw bad('field rows is not a positive integer');
  }
  const time = text('commitTimeUs');
  if (!/^-?\d{1,19}$/.test(time)) throw bad(`field commitTimeUs is '${time}', not microseconds`);
  if (!values.every((v) => v.startsWith('{') && v.endsWith('}'))) {
    throw bad('a value array is not a text[] literal ({...})');
  }
  return { schema: text('schema'), table: text('table'), columns, rows, commitTimeUs: BigInt(time), values };
}
