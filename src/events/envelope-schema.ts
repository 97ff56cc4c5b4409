/**
 * The Debezium 3.x envelope, source and transaction-block schemas (SchemaFactory /
 * PostgresSourceInfoStructMaker), as the real connector's JsonConverter output shows them:
 * before, after, source, transaction, op, ts_ms, ts_us, ts_ns; Envelope version 2.
 */
import { type ConnectField, type ConnectSchema, schemaJson } from './connect-schema.ts';

/** Values of source.snapshot (io.debezium.data.Enum, SnapshotRecord). */
export const SNAPSHOT_MARKERS = [
  'true',
  'first',
  'first_in_data_collection',
  'last_in_data_collection',
  'last',
  'false',
  'incremental',
] as const;
export type SnapshotMarker = (typeof SNAPSHOT_MARKERS)[number];

export const SOURCE_SCHEMA: ConnectSchema = {
  type: 'struct',
  name: 'io.debezium.connector.postgresql.Source',
  version: 1,
  fields: [
    { field: 'version', type: 'string' },
    { field: 'connector', type: 'string' },
    { field: 'name', type: 'string' },
    { field: 'ts_ms', type: 'int64' },
    {
      field: 'snapshot',
      type: 'string',
      optional: true,
      name: 'io.debezium.data.Enum',
      version: 1,
      parameters: { allowed: SNAPSHOT_MARKERS.join(',') },
      defaultJson: '"false"',
    },
    { field: 'db', type: 'string' },
    { field: 'sequence', type: 'string', optional: true },
    { field: 'ts_us', type: 'int64', optional: true },
    { field: 'ts_ns', type: 'int64', optional: true },
    { field: 'schema', type: 'string' },
    { field: 'table', type: 'string' },
    { field: 'txId', type: 'int64', optional: true },
    { field: 'lsn', type: 'int64', optional: true },
    { field: 'xmin', type: 'int64', optional: true },
    // The replication origin of a transaction another replication applied (pgoutput's Origin message).
    { field: 'origin', type: 'string', optional: true },
    { field: 'origin_lsn', type: 'int64', optional: true },
  ],
};

export const TRANSACTION_BLOCK_SCHEMA: ConnectSchema = {
  type: 'struct',
  name: 'event.block',
  version: 1,
  fields: [
    { field: 'id', type: 'string' },
    { field: 'total_order', type: 'int64' },
    { field: 'data_collection_order', type: 'int64' },
  ],
};

/** One column of a relation as the envelope sees it. */
export interface EnvelopeColumn {
  readonly name: string;
  readonly schema: ConnectSchema;
  /** A key column: never null, `optional: false` in before/after as the connector marks it. */
  readonly isKey?: boolean;
}

/** `{"type":"struct","fields":[...],"optional":false,"name":"<prefix>.<schema>.<table>.Key"}` */
export function keySchemaJson(baseName: string, keyColumns: readonly EnvelopeColumn[]): string {
  const fields: ConnectField[] = keyColumns.map((c) => ({ ...c.schema, field: c.name, optional: false }));
  return schemaJson({ type: 'struct', name: `${baseName}.Key`, fields }, false);
}

/**
 * The value schema of a table's change events. Key columns are required, as the connector marks them;
 * other fields are optional: pgoutput does not say NOT NULL.
 */
export function envelopeSchemaJson(baseName: string, columns: readonly EnvelopeColumn[]): string {
  const valueFields: ConnectField[] = columns.map((c) => ({
    ...c.schema,
    field: c.name,
    optional: c.isKey !== true,
  }));
  const value: ConnectSchema = { type: 'struct', name: `${baseName}.Value`, fields: valueFields };
  const envelope: ConnectSchema = {
    type: 'struct',
    name: `${baseName}.Envelope`,
    version: 2,
    fields: [
      { ...value, field: 'before', optional: true },
      { ...value, field: 'after', optional: true },
      { ...SOURCE_SCHEMA, field: 'source', optional: false },
      { ...TRANSACTION_BLOCK_SCHEMA, field: 'transaction', optional: true },
      { field: 'op', type: 'string' },
      { field: 'ts_ms', type: 'int64', optional: true },
      { field: 'ts_us', type: 'int64', optional: true },
      { field: 'ts_ns', type: 'int64', optional: true },
    ],
  };
  return schemaJson(envelope, false);
}
