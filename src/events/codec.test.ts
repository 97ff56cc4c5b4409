import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RelationMessage, Tuple, TupleValue } from '../pg/pgoutput/messages.ts';
import { MalformedInputError } from '../runtime/errors.ts';
import { DebeziumChangeEncoder } from '../source/debezium-encoder.ts';
import { type ChangeEvent, type ColumnValue, UNCHANGED } from './change-event.ts';
import { decodeRecord } from './decode.ts';
import { EventEncoder, eventSchemaId } from './envelope.ts';
import { type ColumnType, TypeRegistry } from './pg-types.ts';

const numeric = (precision: number, scale: number): number => ((precision << 16) | (scale & 0x7ff)) + 4;
const ENUM_OID = 16400;
const ENUM_ARRAY_OID = 16401;
const registry = new TypeRegistry();
registry.define({ kind: 'enum', oid: ENUM_OID, name: 'public.mood', labels: ['happy', 'sad', 'o,k'] });
registry.define({ kind: 'array', oid: ENUM_ARRAY_OID, name: 'public._mood', elementOid: ENUM_OID });

const encoder = new EventEncoder({
  serverName: 'pgbisync.db1',
  database: 'db1',
  connectorVersion: 'pgbisync-test',
  registry,
  clockUs: () => 1_700_000_000_000_000,
});
const ctx = { lsn: 0x1234n, txId: 42, commitTimeUs: 1_700_000_000_123_456n };

function relation(column: ColumnType): RelationMessage {
  return {
    tag: 'relation',
    relationId: 1,
    schema: 'public',
    table: 't',
    replicaIdentity: 'default',
    columns: [
      { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
      { name: 'v', ...column, isKey: false },
    ],
  };
}

const schemalessEncoder = new EventEncoder({
  serverName: 'pgbisync.db1',
  database: 'db1',
  connectorVersion: 'pgbisync-test',
  registry,
  schemas: false,
  clockUs: () => 1_700_000_000_000_000,
});

/** Like {@link roundTrip}, schemaless: the value is read by the schema its encoder names. */
function schemalessRoundTrip(column: ColumnType, value: TupleValue): ColumnValue | undefined {
  const tuple: Tuple = [{ kind: 'text', text: '1' }, value];
  const rel = schemalessEncoder.compile(relation(column));
  const record = rel.create(tuple, ctx);
  const json = JSON.parse(record.value!.toString('utf8'));
  assert.ok(!('schema' in json) && 'after' in json, 'the value is the payload alone');
  assert.equal(rel.schema?.id, eventSchemaId(rel.schema!.json));
  const event = decodeRecord(record.key, record.value, rel.schema!.json) as ChangeEvent;
  assert.equal(event.key?.get('id'), '1');
  return event.after?.get('v');
}

/** PostgreSQL text (or TOAST/null) -> encode -> JSON bytes -> decodeRecord -> the column's value. */
function roundTrip(column: ColumnType, value: TupleValue): ColumnValue | undefined {
  const tuple: Tuple = [{ kind: 'text', text: '1' }, value];
  const record = encoder.compile(relation(column)).create(tuple, ctx);
  JSON.parse(record.value!.toString('utf8')); // plain JSON, as a Java consumer reads it
  const event = decodeRecord(record.key, record.value) as ChangeEvent;
  assert.equal(event.key?.get('id'), '1');
  return event.after?.get('v');
}

// [type, typeOid, typeMod, [pg text, decoded text when it differs][]]
type Case = readonly [string, number, number, readonly (readonly [string, string?])[]];
const CASES: readonly Case[] = [
  ['int2', 21, -1, [['0'], ['-32768'], ['32767']]],
  ['int4', 23, -1, [['-2147483648'], ['2147483647']]],
  ['int8', 20, -1, [['-9223372036854775808'], ['9223372036854775807'], ['9007199254740993']]],
  ['numeric(10,2)', 1700, numeric(10, 2), [['12345678.90'], ['-0.01'], ['0.00'], ['NaN']]],
  ['numeric(5,-2)', 1700, numeric(5, -2), [['12300'], ['-99900']]],
  [
    'numeric',
    1700,
    -1,
    [
      ['3.14159265358979323846264338327950288'],
      ['-0.000001'],
      ['1.500'],
      ['0'],
      ['100'],
      ['NaN'],
      ['Infinity'],
      ['-Infinity'],
    ],
  ],
  ['float4', 700, -1, [['3.14'], ['-0'], ['1e+30'], ['1.1'], ['NaN'], ['Infinity'], ['-Infinity']]],
  [
    'float8',
    701,
    -1,
    [
      ['0.1'],
      ['1.7976931348623157e+308'],
      ['5e-324'],
      ['1.2345678901234568e+20', '123456789012345680000'],
      ['NaN'],
      ['-Infinity'],
    ],
  ],
  [
    'bool',
    16,
    -1,
    [
      ['t', '1'],
      ['f', '0'],
    ],
  ],
  ['text', 25, -1, [['hello'], [''], ['quote " and \\ backslash'], ['日本語 🎉\n\ttab'], ['NULL']]],
  ['varchar(10)', 1043, 14, [['abc'], ['  x  ']]],
  ['char(5)', 1042, 9, [['ab   ']]],
  ['uuid', 2950, -1, [['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']]],
  ['json', 114, -1, [['{"b": 1,  "a": [1, 2]}'], ['"just a string"'], ['null']]],
  ['jsonb', 3802, -1, [['{"a": [1, 2], "b": {"c": null}}']]],
  ['bytea', 17, -1, [['\\x'], ['\\xdeadbeef00'], ['\\000abc\\\\', '\\x006162635c']]],
  [
    'date',
    1082,
    -1,
    [['2024-02-29'], ['0001-01-01'], ['0044-03-15 BC'], ['5874897-12-31'], ['infinity'], ['-infinity']],
  ],
  ['time', 1083, -1, [['00:00:00'], ['23:59:59.999999'], ['24:00:00'], ['12:34:56.5']]],
  ['time(0)', 1083, 0, [['12:34:56']]],
  ['time(3)', 1083, 3, [['12:34:56.789']]],
  [
    'timetz',
    1266,
    -1,
    [
      ['12:34:56.789+05:30'],
      ['00:00:00+00'],
      ['23:59:59-12', '23:59:59-12:00'],
      ['10:00:00+02', '10:00:00+02:00'],
    ],
  ],
  [
    'timestamp',
    1114,
    -1,
    [
      ['2024-01-01 12:34:56.123456'],
      ['1970-01-01 00:00:00'],
      ['1969-12-31 23:59:59.999999'],
      ['0044-03-15 12:00:00 BC'],
      ['294276-12-31 23:59:59.999999'],
      ['4713-01-01 00:00:00 BC'],
      ['infinity'],
      ['-infinity'],
    ],
  ],
  ['timestamp(3)', 1114, 3, [['2024-01-01 12:34:56.789'], ['infinity']]],
  [
    'timestamptz',
    1184,
    -1,
    [
      ['2024-01-01 12:34:56.123456+02', '2024-01-01 10:34:56.123456+00'],
      ['2000-01-01 00:00:00+00', '2000-01-01 00:00:00.000000+00'],
      ['0044-03-15 12:00:00+00 BC', '0044-03-15 12:00:00.000000+00 BC'],
      ['1880-01-01 00:00:00+00:53:28', '1879-12-31 23:06:32.000000+00'],
      ['infinity'],
      ['-infinity'],
    ],
  ],
  ['timestamptz(0)', 1184, 0, [['2024-01-01 12:34:56+00', '2024-01-01 12:34:56+00']]],
  [
    'interval',
    1186,
    -1,
    [
      ['1 year 2 mons -3 days +04:05:06.78', '1 years 2 mons -3 days 4 hours 5 mins 6.78 secs'],
      ['-00:00:01', '0 years 0 mons 0 days 0 hours 0 mins -1 secs'],
      ['00:00:00', '0 years 0 mons 0 days 0 hours 0 mins 0 secs'],
      [
        '-1 years -2 mons +3 days -04:05:06.000001',
        '-1 years -2 mons 3 days -4 hours -5 mins -6.000001 secs',
      ],
    ],
  ],
  ['int4[]', 1007, -1, [['{1,2,NULL,-3}'], ['{}'], ['{{1,2},{3,4}}'], ['[0:1]={1,2}', '{1,2}']]],
  [
    'text[]',
    1009,
    -1,
    [['{"a b","c\\"d",NULL,"NULL","x,y","",plain,"back\\\\slash","{x}"}'], ['{"multi\nline"}']],
  ],
  ['numeric(10,2)[]', 1231, numeric(10, 2), [['{1.50,NULL,-2.00}']]],
  ['bool[]', 1000, -1, [['{t,f,NULL}', '{1,0,NULL}']]],
  ['enum', ENUM_OID, -1, [['happy'], ['o,k']]],
  ['enum[]', ENUM_ARRAY_OID, -1, [['{happy,"o,k"}']]],
  ['unregistered enum', 16500, -1, [['sad']]],
  ['inet', 869, -1, [['192.168.0.1/24'], ['::1']]],
  ['cidr', 650, -1, [['10.0.0.0/8']]],
  ['macaddr', 829, -1, [['08:00:2b:01:02:03']]],
  ['macaddr8', 774, -1, [['08:00:2b:01:02:03:04:05']]],
  [
    'money',
    790,
    -1,
    [
      ['$1,234.56', '1234.56'],
      ['-$0.99', '-0.99'],
      ['$0.00', '0.00'],
    ],
  ],
  ['bit(5)', 1560, 5, [['10101'], ['00000'], ['00101']]],
  ['bit(1)', 1560, 1, [['1'], ['0']]],
  ['varbit', 1562, -1, [['0001'], ['']]],
  ['point', 600, -1, [['(1.5,-2)'], ['(1e+300,0)'], ['(NaN,Infinity)']]],
];

describe('round trip: PostgreSQL text -> Debezium JSON -> PostgreSQL text', () => {
  for (const [type, typeOid, typeMod, values] of CASES) {
    test(type, () => {
      for (const [text, expected = text] of values) {
        assert.equal(roundTrip({ typeOid, typeMod }, { kind: 'text', text }), expected, `${type} ${text}`);
        assert.equal(
          schemalessRoundTrip({ typeOid, typeMod }, { kind: 'text', text }),
          expected,
          `${type} ${text}, schemaless`,
        );
      }
      assert.equal(roundTrip({ typeOid, typeMod }, { kind: 'null' }), null, `${type} null`);
      assert.equal(
        roundTrip({ typeOid, typeMod }, { kind: 'unchanged-toast' }),
        UNCHANGED,
        `${type} unchanged TOAST`,
      );
    });
  }
});

// A three-column table: the base record that malformed cases mutate.
const ROW_RELATION: RelationMessage = {
  tag: 'relation',
  relationId: 2,
  schema: 'shop',
  table: 'items',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
    { name: 'price', typeOid: 1700, typeMod: numeric(10, 2), isKey: false },
    { name: 'tags', typeOid: 1009, typeMod: -1, isKey: false },
  ],
};
const text = (t: string): TupleValue => ({ kind: 'text', text: t });

test('zero and missing positions still make valid JSON', () => {
  const zero = new EventEncoder({ serverName: 's', database: 'd', connectorVersion: 'v', clockUs: () => 0 });
  const record = zero
    .compile(ROW_RELATION)
    .create([text('1'), text('0.00'), text('{}')], { lsn: 0n, txId: null, commitTimeUs: 0n });
  const event = decodeRecord(record.key, record.value) as ChangeEvent;
  assert.deepEqual([event.source.tsUs, event.source.lsn, event.source.txId], [0n, 0n, null]);
  const payload = (JSON.parse(record.value!.toString('utf8')) as { payload: Record<string, unknown> })
    .payload;
  assert.deepEqual([payload.ts_ms, payload.ts_us, payload.ts_ns], [0, 0, 0]);
});

describe('DebeziumChangeEncoder (the capture port)', () => {
  const port = new DebeziumChangeEncoder({
    serverName: 'pgbisync.db1',
    database: 'db1',
    connectorVersion: 'pgbisync-test',
    clockUs: () => 1,
  });
  const rel = port.forRelation(ROW_RELATION, new Map());
  const source = {
    lsn: 0x20n,
    commitLsn: 0x30n,
    txId: 9,
    commitTimeUs: 5_000_000n,
    snapshot: 'false' as const,
  };
  const tx = { id: '9:48', totalOrder: 2, dataCollectionOrder: 1 };
  const row: Tuple = [text('7'), text('1.00'), { kind: 'unchanged-toast' }];

  test('update: source, sequence and transaction block', () => {
    const event = decodeRecord(...pair(rel.change('u', row, row, source, tx))) as ChangeEvent;
    assert.equal(event.op, 'u');
    assert.deepEqual(
      event.before,
      new Map<string, ColumnValue>([
        ['id', '7'],
        ['price', '1.00'],
        ['tags', UNCHANGED],
      ]),
    );
    assert.deepEqual(
      { ...event.source },
      {
        version: 'pgbisync-test',
        connector: 'postgresql',
        name: 'pgbisync.db1',
        db: 'db1',
        tsUs: 5_000_000n,
        snapshot: 'false',
        txId: 9n,
        lsn: 0x20n,
        sequence: '["48","32"]',
      },
    );
    assert.deepEqual(event.transaction, { id: '9:48', totalOrder: 2n, dataCollectionOrder: 1n });
  });

  test('snapshot read, delete + tombstone, truncate', () => {
    const read = decodeRecord(...pair(rel.change('r', undefined, row, { ...source, snapshot: 'last' }, tx)));
    assert.equal(read.kind === 'change' && `${read.op}/${read.source.snapshot}`, 'r/last');
    const deleted = decodeRecord(...pair(rel.change('d', row, undefined, source, tx))) as ChangeEvent;
    assert.equal(deleted.after, null);
    assert.equal(deleted.before?.get('price'), '1.00');
    assert.deepEqual(decodeRecord(...pair(rel.tombstone(row))), {
      kind: 'tombstone',
      key: new Map([['id', '7']]),
      keySchemaName: 'pgbisync.db1.shop.items.Key',
    });
    const truncated = decodeRecord(...pair(rel.truncate(source, tx))) as ChangeEvent;
    assert.deepEqual(
      [truncated.op, truncated.key, truncated.before, truncated.after],
      ['t', null, null, null],
    );
  });

  test('a change without its tuple is refused', () => {
    assert.throws(() => rel.change('c', undefined, undefined, source, tx), MalformedInputError);
    assert.throws(() => rel.change('d', undefined, undefined, source, tx), MalformedInputError);
  });
});

function pair(record: { key: Buffer | null; value: Buffer | null }): [Buffer | null, Buffer | null] {
  return [record.key, record.value];
}
