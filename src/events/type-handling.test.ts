/**
 * What the Debezium oracle (src/source/debezium-oracle.connect.test.ts) found, pinned down without a
 * connector: key columns required, source.origin, the catalog-typed columns (enum, enum array, domain,
 * hstore, tsvector), and each type-handling option's schema and value as the connector sends them,
 * decoded back by pgbisync's applier.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RelationMessage, Tuple } from '../pg/pgoutput/messages.ts';
import { DebeziumChangeEncoder } from '../source/debezium-encoder.ts';
import type { ChangeEvent } from './change-event.ts';
import { decodeRecord } from './decode.ts';
import { EventEncoder } from './envelope.ts';
import { type ColumnType, PgOid, TypeRegistry } from './pg-types.ts';
import type { TypeHandling } from './type-handling.ts';

const ENUM = 16400;
const ENUM_ARRAY = 16401;
const DOMAIN = 16402;
const HSTORE = 16403;
const registry = new TypeRegistry();
registry.define({ kind: 'enum', oid: ENUM, name: 'public.mood', labels: ['sad', 'ok', 'happy'] });
registry.define({ kind: 'array', oid: ENUM_ARRAY, name: 'public._mood', elementOid: ENUM });
registry.define({ kind: 'domain', oid: DOMAIN, name: 'public.posint', base: { typeOid: 23, typeMod: -1 } });
registry.define({ kind: 'other', oid: HSTORE, name: 'public.hstore' });

const ctx = { lsn: 16n, txId: 7, commitTimeUs: 1_000_000n };

function relation(column: ColumnType): RelationMessage {
  return {
    tag: 'relation',
    relationId: 1,
    schema: 'public',
    table: 't',
    replicaIdentity: 'default',
    columns: [
      { name: 'id', typeOid: PgOid.INT8, typeMod: -1, isKey: true },
      { name: 'v', ...column, isKey: false },
    ],
  };
}

interface Encoded {
  /** The value column's field schema in `after`, and its payload value. */
  readonly schema: Record<string, unknown>;
  readonly value: unknown;
  /** What pgbisync's applier decodes it to. */
  readonly decoded: unknown;
}

function encode(column: ColumnType, text: string, types: Partial<TypeHandling> = {}): Encoded {
  const encoder = new EventEncoder({
    serverName: 's',
    database: 'db',
    connectorVersion: 'test',
    registry,
    types,
    clockUs: () => 1,
  });
  const tuple: Tuple = [
    { kind: 'text', text: '1' },
    { kind: 'text', text },
  ];
  const record = encoder.compile(relation(column)).create(tuple, ctx);
  const json = JSON.parse(record.value!.toString('utf8'));
  const after = json.schema.fields.find((f: { field: string }) => f.field === 'after');
  const event = decodeRecord(record.key, record.value) as ChangeEvent;
  return {
    schema: after.fields[1],
    value: json.payload.after.v,
    decoded: event.after?.get('v'),
  };
}

const col = (typeOid: number, typeMod = -1): ColumnType => ({ typeOid, typeMod });

describe('what the oracle found', () => {
  test('key columns are required in before/after, other columns optional', () => {
    const encoder = new EventEncoder({ serverName: 's', database: 'db', connectorVersion: 'test' });
    const record = encoder
      .compile(relation(col(PgOid.TEXT)))
      .create([{ kind: 'text', text: '1' }, { kind: 'null' }], ctx);
    const schema = JSON.parse(record.value!.toString('utf8')).schema;
    for (const part of ['before', 'after']) {
      const fields = schema.fields.find((f: { field: string }) => f.field === part).fields;
      assert.deepEqual(
        fields.map((f: { field: string; optional: boolean }) => [f.field, f.optional]),
        [
          ['id', false],
          ['v', true],
        ],
        part,
      );
    }
  });

  test('source.origin and origin_lsn: null for a local write, the origin of a replicated one', () => {
    const port = new DebeziumChangeEncoder({ serverName: 's', database: 'db', connectorVersion: 'test' });
    const rel = port.forRelation(relation(col(PgOid.TEXT)), new Map());
    const row: Tuple = [
      { kind: 'text', text: '1' },
      { kind: 'text', text: 'x' },
    ];
    const position = { lsn: 32n, commitLsn: 48n, txId: 9, commitTimeUs: 5n, snapshot: 'false' as const };
    const tx = { id: '9:48', totalOrder: 1, dataCollectionOrder: 1 };
    const local = JSON.parse(rel.change('c', undefined, row, position, tx).value!.toString('utf8'));
    const replicated = JSON.parse(
      rel
        .change('c', undefined, row, { ...position, origin: 'pg_16390', originLsn: 4096n }, tx)
        .value!.toString('utf8'),
    );
    const sourceFields = local.schema.fields.find((f: { field: string }) => f.field === 'source').fields;
    assert.deepEqual(
      sourceFields.slice(-3).map((f: { field: string; type: string }) => `${f.field}:${f.type}`),
      ['xmin:int64', 'origin:string', 'origin_lsn:int64'],
    );
    assert.deepEqual([local.payload.source.origin, local.payload.source.origin_lsn], [null, null]);
    assert.deepEqual(
      [replicated.payload.source.origin, replicated.payload.source.origin_lsn],
      ['pg_16390', 4096],
    );
  });

  test('the capture port takes the catalog facts: an enum is io.debezium.data.Enum', () => {
    const port = new DebeziumChangeEncoder({ serverName: 's', database: 'db', connectorVersion: 'test' });
    port.useCatalog(registry);
    const rel = port.forRelation(relation(col(ENUM)), new Map());
    const position = { lsn: 32n, commitLsn: 48n, txId: 9, commitTimeUs: 5n, snapshot: 'false' as const };
    const record = rel.change(
      'c',
      undefined,
      [
        { kind: 'text', text: '1' },
        { kind: 'text', text: 'ok' },
      ],
      position,
      { id: '9:48', totalOrder: 1, dataCollectionOrder: 1 },
    );
    const after = JSON.parse(record.value!.toString('utf8')).schema.fields[1].fields[1];
    assert.deepEqual(
      { name: after.name, parameters: after.parameters },
      { name: 'io.debezium.data.Enum', parameters: { allowed: 'sad,ok,happy' } },
    );
  });
});

/** [case, column, text, options, expected schema (subset), expected payload value, decoded text]. */
const CASES: readonly [string, ColumnType, string, Partial<TypeHandling>, object, unknown, string][] = [
  [
    'enum array',
    col(ENUM_ARRAY),
    '{happy,sad}',
    {},
    {
      type: 'array',
      items: {
        type: 'string',
        optional: false,
        name: 'io.debezium.data.Enum',
        version: 1,
        parameters: { allowed: 'sad,ok,happy' },
      },
    },
    ['happy', 'sad'],
    '{happy,sad}',
  ],
  ['domain over int4', col(DOMAIN), '5', {}, { type: 'int32' }, 5, '5'],
  [
    'tsvector',
    col(PgOid.TSVECTOR),
    "'a' 'cat'",
    {},
    { type: 'string', name: 'io.debezium.data.Tsvector' },
    "'a' 'cat'",
    "'a' 'cat'",
  ],
  [
    'hstore, map (default)',
    col(HSTORE),
    '"a"=>"1", "b\\"c"=>NULL',
    {},
    { type: 'map', keys: { type: 'string', optional: false }, values: { type: 'string', optional: true } },
    { a: '1', 'b"c': null },
    '"a"=>"1","b\\"c"=>NULL',
  ],
  [
    'hstore, json',
    col(HSTORE),
    '"a"=>"1", "b"=>NULL',
    { 'hstore.handling.mode': 'json' },
    { type: 'string', name: 'io.debezium.data.Json', parameters: { 'pgbisync.encoding': 'hstore-json' } },
    '{"a":"1","b":null}',
    '"a"=>"1","b"=>NULL',
  ],
  ['varbit, string (default)', col(PgOid.VARBIT), '0001', {}, { type: 'string' }, '0001', '0001'],
  [
    'varbit, bits',
    col(PgOid.VARBIT),
    '00101',
    { varbit: 'bits' },
    { type: 'bytes', name: 'io.debezium.data.Bits', parameters: { length: '2147483647' } },
    'BQ==',
    '101',
  ],
  [
    'varbit(5), bits',
    col(PgOid.VARBIT, 5),
    '101',
    { varbit: 'bits' },
    { type: 'bytes', name: 'io.debezium.data.Bits', parameters: { length: '5' } },
    'BQ==',
    '00101',
  ],
  [
    'timetz, offset (default)',
    col(PgOid.TIMETZ),
    '01:02:03+05:30',
    {},
    { type: 'string', name: 'io.debezium.time.ZonedTime' },
    '01:02:03+05:30',
    '01:02:03+05:30',
  ],
  [
    'timetz, utc',
    col(PgOid.TIMETZ),
    '01:02:03.5+05:30',
    { timetz: 'utc' },
    { type: 'string', name: 'io.debezium.time.ZonedTime' },
    '19:32:03.5Z',
    '19:32:03.5+00',
  ],
  [
    'interval, numeric',
    col(PgOid.INTERVAL),
    '1 day',
    { 'interval.handling.mode': 'numeric' },
    { type: 'int64', name: 'io.debezium.time.MicroDuration' },
    86400000000,
    '24:00:00.000000',
  ],
  [
    'time(3), adaptive_time_microseconds',
    col(PgOid.TIME, 3),
    '12:00:00.5',
    { 'time.precision.mode': 'adaptive_time_microseconds' },
    { type: 'int64', name: 'io.debezium.time.MicroTime' },
    43200500000,
    '12:00:00.5',
  ],
  [
    'time, connect',
    col(PgOid.TIME),
    '12:00:00.5',
    { 'time.precision.mode': 'connect' },
    { type: 'int32', name: 'org.apache.kafka.connect.data.Time' },
    43200500,
    '12:00:00.5',
  ],
  [
    'date, connect',
    col(PgOid.DATE),
    '1970-01-02',
    { 'time.precision.mode': 'connect' },
    { type: 'int32', name: 'org.apache.kafka.connect.data.Date' },
    1,
    '1970-01-02',
  ],
  [
    'timestamp, connect',
    col(PgOid.TIMESTAMP),
    '1970-01-01 00:00:01.5',
    { 'time.precision.mode': 'connect' },
    { type: 'int64', name: 'org.apache.kafka.connect.data.Timestamp' },
    1500,
    '1970-01-01 00:00:01.5',
  ],
  [
    'numeric, string',
    col(PgOid.NUMERIC),
    '-12.50',
    { 'decimal.handling.mode': 'string' },
    { type: 'string' },
    '-12.50',
    '-12.50',
  ],
  [
    'money, string',
    col(PgOid.MONEY),
    '-$1,234.56',
    { 'decimal.handling.mode': 'string' },
    { type: 'string' },
    '-1234.56',
    '-1234.56',
  ],
  [
    'numeric, double',
    col(PgOid.NUMERIC),
    '0.1',
    { 'decimal.handling.mode': 'double' },
    { type: 'double' },
    0.1,
    '0.1',
  ],
  [
    'numeric NaN, double',
    col(PgOid.NUMERIC),
    'NaN',
    { 'decimal.handling.mode': 'double' },
    { type: 'double' },
    'NaN',
    'NaN',
  ],
  [
    'bytea, base64',
    col(PgOid.BYTEA),
    '\\xfbff00',
    { 'binary.handling.mode': 'base64' },
    { type: 'string', parameters: { 'pgbisync.encoding': 'base64' } },
    '+/8A',
    '\\xfbff00',
  ],
  [
    'bytea, base64-url-safe',
    col(PgOid.BYTEA),
    '\\xfbff00',
    { 'binary.handling.mode': 'base64-url-safe' },
    { type: 'string', parameters: { 'pgbisync.encoding': 'base64-url-safe' } },
    '-_8A',
    '\\xfbff00',
  ],
  [
    'bytea, hex',
    col(PgOid.BYTEA),
    '\\xfbff00',
    { 'binary.handling.mode': 'hex' },
    { type: 'string', parameters: { 'pgbisync.encoding': 'hex' } },
    'fbff00',
    '\\xfbff00',
  ],
];

describe('type-handling options: schema, value, and what the applier decodes', () => {
  for (const [name, column, text, types, schema, value, decoded] of CASES) {
    test(name, () => {
      const out = encode(column, text, types);
      for (const [k, v] of Object.entries(schema)) assert.deepEqual(out.schema[k], v, `schema.${k}`);
      assert.deepEqual(out.value, value);
      assert.equal(out.decoded, decoded);
    });
  }
});
