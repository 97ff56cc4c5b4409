/**
 * The exact events on the real topic for a table with a column of every common type: insert, update
 * with a primary-key change, delete + tombstone and truncate, as the Debezium PostgreSQL connector
 * would write them (values per docs/type-mapping.md; the expected payloads below were checked by hand
 * against it: decimals as unscaled big-endian two's complement in base64, money as a decimal of scale 2,
 * MicroTimestamp/ZonedTimestamp/Date/MicroTime, Bits as little-endian bytes, Point with WKB...).
 * Integers beyond 2^53 are compared on the raw JSON text, where JSON.parse would round them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverName } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { EVERY_TYPE_DDL, EVERY_TYPE_ROWS } from '../testing/every-type.ts';
import { readTopic, startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

/** Row 1 of EVERY_TYPE_ROWS as the Debezium event carries it. */
const ROW_1 = {
  id: 1,
  i2: -32768,
  i4: 2147483647,
  i8: '<raw>',
  n: 'AKtUqYzrGELA',
  nv: { scale: 0, value: 'NAN' },
  f4: 'Infinity',
  f8: -1e-6,
  m: 'BNI=',
  b: true,
  t: 'tab\there "quotes" \\ and \u00fcn\u00efc\u00f6d\u00e9',
  vc: 'short',
  c: 'ab   ',
  u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  j: '{"a": [1, 2.5, null]}',
  jb: '{"z": {"y": true}}',
  x: '<a b="1">x</a>',
  by: 'AP8Q',
  d: -735160,
  tm: 86399999999,
  ttz: '01:02:03+05:30',
  ts: 1709210096789012,
  tstz: '2024-05-31T22:00:00.000001Z',
  iv: 'P1Y2M3DT4H5M6.7S',
  ia: [1, null, 3],
  ta: ['a,b', 'c"d', null, ''],
  e: 'happy',
  ip: '192.168.0.1/24',
  cidr: '10.0.0.0/8',
  mac: '08:00:2b:01:02:03',
  bits: 'Cg==',
  vb: '101',
  pt: { x: 1.5, y: -2, wkb: 'AQEAAAAAAAAAAAD4PwAAAAAAAADA', srid: null },
};
/** A before image under the default replica identity: the key, every other column null. */
const keyOnly = (id: number) => ({ ...Object.fromEntries(Object.keys(ROW_1).map((k) => [k, null])), id });

/** key payload, op, before, after per record in topic order ('tombstone': a null value). */
const EXPECTED: { key: unknown; op?: string; before?: unknown; after?: unknown; tombstone?: true }[] = [
  {
    key: { id: 1 },
    op: 'c',
    before: null,
    after: ROW_1,
  },
  {
    key: { id: 2 },
    op: 'c',
    before: null,
    after: {
      id: 2,
      i2: null,
      i4: null,
      i8: null,
      n: null,
      nv: null,
      f4: null,
      f8: null,
      m: null,
      b: null,
      t: null,
      vc: null,
      c: null,
      u: null,
      j: null,
      jb: null,
      x: null,
      by: null,
      d: -2147472692,
      tm: null,
      ttz: null,
      ts: '<raw>',
      tstz: 'infinity',
      iv: null,
      ia: [],
      ta: [],
      e: null,
      ip: null,
      cidr: null,
      mac: null,
      bits: null,
      vb: null,
      pt: null,
    },
  },
  {
    key: { id: 3 },
    op: 'c',
    before: null,
    after: {
      id: 3,
      i2: 0,
      i4: 0,
      i8: 0,
      n: 'AA==',
      nv: { scale: 1, value: 'AQ==' },
      f4: '-Infinity',
      f8: 'NaN',
      m: 'AA==',
      b: false,
      t: '',
      vc: '',
      c: '     ',
      u: '00000000-0000-0000-0000-000000000000',
      j: 'null',
      jb: '[]',
      x: '<r/>',
      by: '',
      d: 0,
      tm: 0,
      ttz: '00:00:00-12:00',
      ts: 0,
      tstz: '1969-12-31T23:59:59.999999Z',
      iv: 'P0Y0M-1DT0H0M-1S',
      ia: [
        [1, 2],
        [3, 4],
      ],
      ta: [' spaced '],
      e: 'sad',
      ip: '::1',
      cidr: '::/0',
      mac: 'ff:ff:ff:ff:ff:ff',
      bits: '',
      vb: '',
      pt: { x: 0, y: 0, wkb: 'AQEAAAAAAAAAAAAAAAAAAAAAAAAA', srid: null },
    },
  },
  {
    key: { id: 10 },
    op: 'u',
    before: keyOnly(1),
    after: { ...ROW_1, id: 10, t: 'moved' },
  },
  {
    key: { id: 2 },
    op: 'd',
    before: keyOnly(2),
    after: null,
  },
  { key: { id: 2 }, tombstone: true },
  { key: null, op: 't', before: null, after: null },
];

/** Values JSON.parse would round, as they must appear in the raw record text. */
const RAW: [number, string][] = [
  [0, '"i8":-9223372036854775808'],
  [1, '"ts":-9223372036832400000'],
  [3, '"i8":-9223372036854775808'],
];

interface Envelope {
  schema: { name?: string };
  payload: {
    op: string;
    before: Record<string, unknown> | null;
    after: Record<string, unknown> | null;
    source: Record<string, unknown>;
    transaction: { total_order: number; data_collection_order: number } | null;
  };
}

test('insert, key-changing update, delete and truncate put the exact Debezium events on the topic', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1(EVERY_TYPE_DDL);
  await dbs.sql2(EVERY_TYPE_DDL);
  const warm = 'CREATE TABLE public.warm (id int PRIMARY KEY)';
  await dbs.sql1(warm);
  await dbs.sql2(warm);
  const config = syncConfig(dbs, ['public.everything', 'public.warm']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  const server = serverName(config, a);
  await setup(config);
  {
    await using sync = await startSync(config);
    // Once this row crossed, the capture streams (rows written before the slot are snapshot reads).
    await dbs.sql1('INSERT INTO warm VALUES (1)');
    await waitFor('the warm-up row on b', async () => (await dbs.sql2('SELECT 1 FROM warm')).rowCount === 1);
    await dbs.sql1(EVERY_TYPE_ROWS);
    await dbs.sql1(`UPDATE everything SET id = 10, t = 'moved' WHERE id = 1`);
    await dbs.sql1('DELETE FROM everything WHERE id = 2');
    await dbs.sql1('TRUNCATE everything');
    // One ordered topic: once this marker is on b, everything before it is too.
    await dbs.sql1('INSERT INTO warm VALUES (2)');
    await waitFor(
      'the marker on b',
      async () => (await dbs.sql2('SELECT 1 FROM warm WHERE id = 2')).rowCount === 1,
    );
    await sync.stop();
  }
  const records = (await readTopic(config, server, (rs) => rs.length >= EXPECTED.length + 2)).map((r) => ({
    key: r.key?.toString() ?? null,
    value: r.value?.toString() ?? null,
  }));
  const events = records.slice(1, -1); // without the warm-up row and the marker
  assert.equal(events.length, EXPECTED.length, JSON.stringify(events));
  for (const [i, expected] of EXPECTED.entries()) {
    const r = events[i]!;
    const key = r.key === null ? null : (JSON.parse(r.key) as { payload: unknown }).payload;
    assert.deepEqual(key, expected.key, `record ${i}: key`);
    if (expected.tombstone) {
      assert.equal(r.value, null, `record ${i}: a tombstone`);
      continue;
    }
    const value = JSON.parse(r.value!) as Envelope;
    const raw = (row: Record<string, unknown> | null) =>
      row === null
        ? null
        : Object.fromEntries(
            Object.entries(row).map(([k, v]) => [
              k,
              typeof v === 'number' && !Number.isSafeInteger(v) && Number.isInteger(v) ? '<raw>' : v,
            ]),
          );
    assert.equal(value.payload.op, expected.op, `record ${i}: op`);
    assert.deepEqual(raw(value.payload.before), expected.before, `record ${i}: before`);
    assert.deepEqual(raw(value.payload.after), expected.after, `record ${i}: after`);
    assert.equal(value.schema.name, `${server}.public.everything.Envelope`);
    const source = value.payload.source;
    assert.deepEqual(
      [source.connector, source.name, source.db, source.schema, source.table, source.snapshot],
      ['postgresql', server, dbs.name, 'public', 'everything', 'false'],
    );
    assert.equal(typeof source.lsn, 'number');
    assert.ok(value.payload.transaction !== null && value.payload.transaction.total_order >= 1);
  }
  for (const [i, text] of RAW) assert.ok(events[i]!.value!.includes(text), `record ${i} holds ${text}`);
  await teardown(config, { keepTopics: false });
});
