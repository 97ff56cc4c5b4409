import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RelationMessage, TupleValue } from '../pg/pgoutput/messages.ts';
import { ErrorCode, FatalError, MalformedInputError } from '../runtime/errors.ts';
import { type ChangeEvent, type ColumnValue, UNCHANGED } from './change-event.ts';
import { decodeRecord } from './decode.ts';
import { EventEncoder } from './envelope.ts';

const encoder = new EventEncoder({
  serverName: 'pgbisync.db1',
  database: 'db1',
  connectorVersion: 'pgbisync-test',
  clockUs: () => 1_700_000_000_000_000,
});
const ctx = { lsn: 0x1234n, txId: 42, commitTimeUs: 1_700_000_000_123_456n };
const numeric = (precision: number, scale: number): number => ((precision << 16) | (scale & 0x7ff)) + 4;

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
const BASE = encoder.compile(ROW_RELATION).create([text('7'), text('12.50'), text('{a,b}')], {
  ...ctx,
  transaction: { id: '42:4660', totalOrder: 1, dataCollectionOrder: 1 },
});
const BASE_VALUE = BASE.value!.toString('utf8');
const BASE_KEY = BASE.key!;

type JsonNode = { [key: string]: unknown };

/** The base value edited by `edit`. */
function edited(edit: (root: JsonNode) => void): Buffer {
  const root = JSON.parse(BASE_VALUE) as JsonNode;
  edit(root);
  return Buffer.from(JSON.stringify(root), 'utf8');
}

/** The base value with the field at `path` (from the top: 'payload', 'after', 'price') set or deleted. */
function withField(path: readonly string[], value: unknown, deleted = false): Buffer {
  return edited((root) => {
    let node = root;
    for (const name of path.slice(0, -1)) node = node[name] as JsonNode;
    const last = path.at(-1)!;
    if (deleted) delete node[last];
    else node[last] = value;
  });
}

function assertMalformed(key: Buffer | null, value: Buffer | null, path: string): void {
  assert.throws(
    () => decodeRecord(key, value),
    (error: unknown) => {
      assert.ok(error instanceof MalformedInputError, `expected MalformedInputError, got ${String(error)}`);
      assert.equal(error.code, ErrorCode.EVENT_MALFORMED);
      assert.ok(error.message.startsWith(`${path}: `), `"${error.message}" should start with "${path}: "`);
      return true;
    },
  );
}

const buf = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('malformed input names the field path', () => {
  const cases: readonly (readonly [string, Buffer | null, Buffer, string])[] = [
    ['not JSON', BASE_KEY, buf('{"schema":{"type":"struct"'), 'value'],
    ['empty value', BASE_KEY, Buffer.alloc(0), 'value'],
    ['schemaless value', BASE_KEY, buf('{"before":null,"after":{"id":1},"op":"c"}'), 'value.schema'],
    ['no payload', BASE_KEY, withField(['payload'], undefined, true), 'value.payload'],
    ['payload not an object', BASE_KEY, withField(['payload'], 'x'), 'value.payload'],
    ['unknown op', BASE_KEY, withField(['payload', 'op'], 'x'), 'value.payload.op'],
    ['message op', BASE_KEY, withField(['payload', 'op'], 'm'), 'value.payload.op'],
    ['op missing', BASE_KEY, withField(['payload', 'op'], undefined, true), 'value.payload.op'],
    ['create without after', BASE_KEY, withField(['payload', 'after'], null), 'value.payload.after'],
    ['after not an object', BASE_KEY, withField(['payload', 'after'], [1, 2]), 'value.payload.after'],
    [
      'decimal as a number',
      BASE_KEY,
      withField(['payload', 'after', 'price'], 12.5),
      'value.payload.after.price',
    ],
    [
      'decimal not base64',
      BASE_KEY,
      withField(['payload', 'after', 'price'], '***'),
      'value.payload.after.price',
    ],
    [
      'array element',
      BASE_KEY,
      withField(['payload', 'after', 'tags'], ['a', 1]),
      'value.payload.after.tags',
    ],
    ['array as object', BASE_KEY, withField(['payload', 'after', 'tags'], {}), 'value.payload.after.tags'],
    [
      'missing column',
      BASE_KEY,
      withField(['payload', 'after', 'tags'], undefined, true),
      'value.payload.after.tags',
    ],
    ['int as string', BASE_KEY, withField(['payload', 'after', 'id'], '7'), 'value.payload.after.id'],
    ['no source', BASE_KEY, withField(['payload', 'source'], undefined, true), 'value.payload.source'],
    ['lsn as string', BASE_KEY, withField(['payload', 'source', 'lsn'], '0/1'), 'value.payload.source.lsn'],
    [
      'table missing',
      BASE_KEY,
      withField(['payload', 'source', 'table'], undefined, true),
      'value.payload.source.table',
    ],
    [
      'snapshot number',
      BASE_KEY,
      withField(['payload', 'source', 'snapshot'], 1),
      'value.payload.source.snapshot',
    ],
    [
      'no commit time',
      BASE_KEY,
      edited((root) => {
        const source = (root.payload as JsonNode).source as JsonNode;
        source.ts_us = null;
        delete source.ts_ms;
      }),
      'value.payload.source.ts_ms',
    ],
    ['txId fraction', BASE_KEY, withField(['payload', 'source', 'txId'], 1.5), 'value.payload.source.txId'],
    [
      'transaction order',
      BASE_KEY,
      withField(['payload', 'transaction', 'total_order'], undefined, true),
      'value.payload.transaction.total_order',
    ],
    ['unknown schema type', BASE_KEY, withField(['schema', 'type'], 'record'), 'value.schema.type'],
    ['not an envelope', BASE_KEY, withField(['schema'], { type: 'string' }), 'value.schema'],
    ['key not JSON', buf('{"id":'), buf(BASE_VALUE), 'key'],
    [
      'key value type',
      buf(BASE_KEY.toString().replace('"payload":{"id":7}', '"payload":{"id":"x"}')),
      buf(BASE_VALUE),
      'key.payload.id',
    ],
    [
      'key missing column',
      buf(BASE_KEY.toString().replace('"payload":{"id":7}', '"payload":{}')),
      buf(BASE_VALUE),
      'key.payload.id',
    ],
    [
      "Debezium docs' key layout (not JsonConverter's)",
      buf(
        '{"schema":{"type":"struct","name":"s.public.t.Key","optional":false,"fields":[{"name":"id","index":"0","schema":{"type":"INT32","optional":"false"}}]},"payload":{"id":"1"}}',
      ),
      buf(BASE_VALUE),
      'key.schema.fields[0].field',
    ],
  ];
  for (const [name, key, value, path] of cases) test(name, () => assertMalformed(key, value, path));

  test('a tombstone with a malformed key', () => assertMalformed(buf('[1'), null, 'key'));

  test('any wrong payload value or truncation: MalformedInputError or success, never a TypeError', () => {
    const wrong: unknown[] = [null, 0, -1.5, 'x', true, [], {}, [null], { scale: 'x' }];
    const paths: string[][] = [];
    const walk = (node: unknown, path: string[]): void => {
      paths.push(path);
      if (typeof node === 'object' && node !== null)
        for (const [k, v] of Object.entries(node)) walk(v, [...path, k]);
    };
    walk((JSON.parse(BASE_VALUE) as JsonNode).payload, ['payload']);
    const attempt = (value: Buffer): void => {
      try {
        decodeRecord(BASE_KEY, value);
      } catch (error) {
        assert.ok(error instanceof MalformedInputError, `${value.toString()}: ${String(error)}`);
      }
    };
    for (const path of paths) {
      attempt(withField(path, undefined, true));
      for (const value of wrong) attempt(withField(path, value));
    }
    for (let n = 0; n < BASE_VALUE.length; n += 3) attempt(buf(BASE_VALUE.slice(0, n)));
  });
});

describe('tombstones', () => {
  test('a schema key is decoded', () => {
    assert.deepEqual(decodeRecord(BASE_KEY, null), {
      kind: 'tombstone',
      key: new Map([['id', '7']]),
      keySchemaName: 'pgbisync.db1.shop.items.Key',
    });
  });
  test('no key or a schemaless key', () => {
    const none = { kind: 'tombstone', key: null, keySchemaName: null };
    assert.deepEqual(decodeRecord(null, null), none);
    assert.deepEqual(decodeRecord(buf('{"id":7}'), null), none);
  });
});

test('our envelope: op, source, transaction, key and rows', () => {
  const event = decodeRecord(BASE_KEY, buf(BASE_VALUE)) as ChangeEvent;
  assert.deepEqual(event, {
    kind: 'change',
    op: 'c',
    schema: 'shop',
    table: 'items',
    key: new Map([['id', '7']]),
    before: null,
    after: new Map([
      ['id', '7'],
      ['price', '12.50'],
      ['tags', '{a,b}'],
    ]),
    source: {
      version: 'pgbisync-test',
      connector: 'postgresql',
      name: 'pgbisync.db1',
      db: 'db1',
      tsUs: 1_700_000_000_123_456n,
      snapshot: 'false',
      txId: 42n,
      lsn: 0x1234n,
      sequence: null,
    },
    transaction: { id: '42:4660', totalOrder: 1n, dataCollectionOrder: 1n },
  });
});

test('a schemaless key takes its columns from the row', () => {
  const event = decodeRecord(buf('{"id":7}'), buf(BASE_VALUE)) as ChangeEvent;
  assert.deepEqual(event.key, new Map([['id', '7']]));
});

// The create event of the Debezium 2.x PostgreSQL connector documentation ("Data change events",
// customers table), as printed there: pretty-printed, and with `snapshot` a boolean.
const DOCS_VALUE = `{
  "schema": {
    "type": "struct",
    "fields": [
      { "type": "struct", "fields": [
          { "type": "int32", "optional": false, "field": "id" },
          { "type": "string", "optional": false, "field": "first_name" },
          { "type": "string", "optional": false, "field": "last_name" },
          { "type": "string", "optional": false, "field": "email" }
        ], "optional": true, "name": "PostgreSQL_server.inventory.customers.Value", "field": "before" },
      { "type": "struct", "fields": [
          { "type": "int32", "optional": false, "field": "id" },
          { "type": "string", "optional": false, "field": "first_name" },
          { "type": "string", "optional": false, "field": "last_name" },
          { "type": "string", "optional": false, "field": "email" }
        ], "optional": true, "name": "PostgreSQL_server.inventory.customers.Value", "field": "after" },
      { "type": "struct", "fields": [
          { "type": "string", "optional": false, "field": "version" },
          { "type": "string", "optional": false, "field": "connector" },
          { "type": "string", "optional": false, "field": "name" },
          { "type": "int64", "optional": false, "field": "ts_ms" },
          { "type": "boolean", "optional": true, "default": false, "field": "snapshot" },
          { "type": "string", "optional": false, "field": "db" },
          { "type": "string", "optional": false, "field": "schema" },
          { "type": "string", "optional": false, "field": "table" },
          { "type": "int64", "optional": true, "field": "txId" },
          { "type": "int64", "optional": true, "field": "lsn" },
          { "type": "int64", "optional": true, "field": "xmin" }
        ], "optional": false, "name": "io.debezium.connector.postgresql.Source", "field": "source" },
      { "type": "string", "optional": false, "field": "op" },
      { "type": "int64", "optional": true, "field": "ts_ms" }
    ],
    "optional": false,
    "name": "PostgreSQL_server.public.customers.Envelope"
  },
  "payload": {
    "before": null,
    "after": { "id": 1, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org" },
    "source": {
      "version": "2.5.2.Final",
      "connector": "postgresql",
      "name": "PostgreSQL_server",
      "ts_ms": 1559033904863,
      "snapshot": true,
      "db": "postgres",
      "sequence": "[\\"24023119\\",\\"24023128\\"]",
      "schema": "public",
      "table": "customers",
      "txId": 555,
      "lsn": 24023128,
      "xmin": null
    },
    "op": "c",
    "ts_ms": 1559033904863
  }
}`;
// The key as JsonConverter writes it (the documentation's key listing is not JsonConverter's layout).
const DOCS_KEY =
  '{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"PostgreSQL_server.public.customers.Key"},"payload":{"id":1}}';

test('Debezium 2.x documentation sample', () => {
  assert.deepEqual(decodeRecord(buf(DOCS_KEY), buf(DOCS_VALUE)), {
    kind: 'change',
    op: 'c',
    schema: 'public',
    table: 'customers',
    key: new Map([['id', '1']]),
    before: null,
    after: new Map([
      ['id', '1'],
      ['first_name', 'Anne'],
      ['last_name', 'Kretchmar'],
      ['email', 'annek@noanswer.org'],
    ]),
    source: {
      version: '2.5.2.Final',
      connector: 'postgresql',
      name: 'PostgreSQL_server',
      db: 'postgres',
      tsUs: 1_559_033_904_863_000n,
      snapshot: 'true',
      txId: 555n,
      lsn: 24_023_128n,
      sequence: '["24023119","24023128"]',
    },
    transaction: null,
  });
});

// An update as Debezium 3.x writes it with its default type mapping (decimal.handling.mode=precise,
// time.precision.mode=adaptive, interval.handling.mode=numeric, binary.handling.mode=bytes; timetz in
// UTC), JsonConverter's compact layout, two unchanged TOASTed columns.
const TYPED_FIELDS = [
  '{"type":"int32","optional":false,"field":"id"}',
  '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"}',
  '{"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}],"optional":true,"name":"io.debezium.data.VariableScaleDecimal","version":1,"doc":"Variable scaled decimal","field":"amount"}',
  '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"created"}',
  '{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"updated"}',
  '{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"day"}',
  '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"at"}',
  '{"type":"string","optional":true,"name":"io.debezium.time.ZonedTime","version":1,"field":"at_tz"}',
  '{"type":"int64","optional":true,"name":"io.debezium.time.MicroDuration","version":1,"field":"took"}',
  '{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"doc"}',
  '{"type":"string","optional":true,"name":"io.debezium.data.Uuid","version":1,"field":"uid"}',
  '{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"happy,sad"},"field":"mood"}',
  '{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"3"},"field":"flags"}',
  '{"type":"boolean","optional":true,"field":"active"}',
  '{"type":"bytes","optional":true,"field":"data"}',
  '{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"}',
  '{"type":"struct","fields":[{"type":"double","optional":false,"field":"x"},{"type":"double","optional":false,"field":"y"},{"type":"bytes","optional":true,"field":"wkb"},{"type":"int32","optional":true,"field":"srid"}],"optional":true,"name":"io.debezium.data.geometry.Point","version":1,"doc":"Geometry (POINT)","field":"loc"}',
  '{"type":"string","optional":true,"field":"body"}',
  '{"type":"array","items":{"type":"int32","optional":true},"optional":true,"field":"counts"}',
  '{"type":"double","optional":true,"field":"ratio"}',
].join(',');
const VALUE_STRUCT = `{"type":"struct","fields":[${TYPED_FIELDS}],"optional":true,"name":"dbz.public.typed.Value"`;
const TYPED_VALUE = `{"schema":{"type":"struct","fields":[${VALUE_STRUCT},"field":"before"},${VALUE_STRUCT},"field":"after"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"},{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"}],"optional":false,"name":"dbz.public.typed.Envelope","version":2},"payload":{"before":null,"after":{"id":1,"price":"MDk=","amount":{"scale":3,"value":"AeJA"},"created":1700000000123456,"updated":"2023-11-14T22:13:20.123456Z","day":19675,"at":3723000000,"at_tz":"08:00:00Z","took":3600000000,"doc":"{\\"a\\":1}","uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","mood":"happy","flags":"BQ==","active":true,"data":"3q2+7w==","tags":["a","b c",null],"loc":{"x":1.5,"y":2.5,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAARA","srid":null},"body":"__debezium_unavailable_value","counts":[95,95,100,101,98,101,122,105,117,109,95,117,110,97,118,97,105,108,97,98,108,101,95,118,97,108,117,101],"ratio":"NaN"},"source":{"version":"3.0.7.Final","connector":"postgresql","name":"dbz","ts_ms":1700000000123,"snapshot":"false","db":"inventory","sequence":"[\\"24023119\\",\\"24023128\\"]","ts_us":1700000000123456,"ts_ns":1700000000123456000,"schema":"public","table":"typed","txId":556,"lsn":24023128,"xmin":null},"transaction":{"id":"556:24023128","total_order":1,"data_collection_order":1},"op":"u","ts_ms":1700000000200,"ts_us":1700000000200000,"ts_ns":1700000000200000000}}`;
const TYPED_KEY =
  '{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbz.public.typed.Key"},"payload":{"id":1}}';

test('Debezium 3.x typed update with unchanged TOAST values', () => {
  const event = decodeRecord(buf(TYPED_KEY), buf(TYPED_VALUE)) as ChangeEvent;
  assert.equal(event.op, 'u');
  assert.equal(event.before, null);
  assert.deepEqual(
    event.after,
    new Map<string, ColumnValue>([
      ['id', '1'],
      ['price', '123.45'],
      ['amount', '123.456'],
      ['created', '2023-11-14 22:13:20.123456'],
      ['updated', '2023-11-14 22:13:20.123456+00'],
      ['day', '2023-11-14'],
      ['at', '01:02:03'],
      ['at_tz', '08:00:00+00'],
      ['took', '1:00:00.000000'],
      ['doc', '{"a":1}'],
      ['uid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
      ['mood', 'happy'],
      ['flags', '101'],
      ['active', '1'],
      ['data', '\\xdeadbeef'],
      ['tags', '{a,"b c",NULL}'],
      ['loc', '(1.5,2.5)'],
      ['body', UNCHANGED],
      ['counts', UNCHANGED],
      ['ratio', 'NaN'],
    ]),
  );
  assert.equal(event.source.tsUs, 1_700_000_000_123_456n);
  assert.equal(event.source.sequence, '["24023119","24023128"]');
  assert.deepEqual(event.transaction, { id: '556:24023128', totalOrder: 1n, dataCollectionOrder: 1n });
  // The second record with the same schema takes the cached fast path.
  assert.deepEqual(decodeRecord(buf(TYPED_KEY), buf(TYPED_VALUE)), event);
});

test('a column schema without a PostgreSQL mapping is a FatalError naming the column', () => {
  const geometry =
    '{"type":"struct","fields":[{"type":"bytes","optional":false,"field":"wkb"},{"type":"int32","optional":true,"field":"srid"}],"optional":true,"name":"io.debezium.data.geometry.Geometry","version":1,"field":"shape"}';
  const value = BASE_VALUE.replaceAll('"field":"tags"}', `"field":"tags"},${geometry}`);
  assert.throws(
    () => decodeRecord(BASE_KEY, buf(value)),
    (error: unknown) =>
      error instanceof FatalError &&
      error.code === ErrorCode.TYPE_UNSUPPORTED &&
      error.message.startsWith('value.schema.fields[0].fields[3] (column shape): '),
  );
});
