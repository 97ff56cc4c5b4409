/**
 * The codec against a real server: every mapped type's tricky values, read with the type's output
 * function (what pgoutput sends), encoded, decoded, and compared on the server with the original.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import type { RelationMessage, TupleValue } from '../pg/pgoutput/messages.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import type { ChangeEvent } from './change-event.ts';
import { decodeRecord } from './decode.ts';
import { EventEncoder } from './envelope.ts';
import { type CatalogQuery, readTypeRegistry, type TypeRegistry } from './pg-types.ts';
import { CONNECTOR_TYPE_HANDLING, type TypeHandling } from './type-handling.ts';

interface Column {
  readonly type: string;
  /** SQL expressions, one per row; rows beyond the list get NULL. */
  readonly values: readonly string[];
  /** Types without an equality operator are compared as text. */
  readonly compareText?: boolean;
}

const COLUMNS: readonly Column[] = [
  { type: 'int2', values: ['0', '-32768', '32767'] },
  { type: 'int4', values: ['-2147483648', '2147483647'] },
  { type: 'int8', values: ['-9223372036854775808', '9223372036854775807', '9007199254740993'] },
  { type: 'oid', values: ['4294967295', '0'] },
  { type: 'numeric(10,2)', values: ['12345678.9', '-0.01', `'NaN'`, '0'] },
  { type: 'numeric(5,-2)', values: ['12345', '-9999900'] },
  {
    type: 'numeric',
    values: [
      '3.14159265358979323846264338327950288419716939937510',
      '-0.000000000000000000001',
      `'NaN'`,
      `'Infinity'`,
      `'-Infinity'`,
      '1e100',
      '0.0000',
    ],
  },
  { type: 'float4', values: ['3.14', `'-0'`, '1e30', `'NaN'`, `'Infinity'`, '1.17549435e-38', '1e-45'] },
  {
    type: 'float8',
    values: ['0.1', '1.7976931348623157e308', '5e-324', '-1.2345678901234568e20', `'NaN'`, `'-Infinity'`],
  },
  { type: 'bool', values: ['true', 'false'] },
  {
    type: 'text',
    values: [`$$quote " \\ backslash$$`, `E'line\\nbreak\\ttab'`, `''`, `'NULL'`, `'日本語 🎉'`],
  },
  { type: 'varchar(10)', values: [`'  x  '`, `''`] },
  { type: 'char(5)', values: [`'ab'`, `''`] },
  { type: '"char"', values: [`'a'`] },
  { type: 'name', values: [`'Some Name'`] },
  { type: 'uuid', values: [`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`] },
  { type: 'json', values: [`'{"b": 1,  "a": [1, 2], "b": 3}'`, `'"str"'`, `'null'`], compareText: true },
  { type: 'jsonb', values: [`'{"a": [1, 2.50, "x\\u00e9"], "b": {"c": null}}'`, `'[]'`] },
  { type: 'bytea', values: [`'\\x'`, `'\\xdeadbeef00'`, `decode('00ff5c22', 'hex')`] },
  {
    type: 'date',
    values: [
      `'2024-02-29'`,
      `'0001-01-01'`,
      `'0044-03-15 BC'`,
      `'4714-11-24 BC'`,
      `'5874897-12-31'`,
      `'infinity'`,
      `'-infinity'`,
    ],
  },
  { type: 'time', values: [`'00:00:00'`, `'23:59:59.999999'`, `'24:00:00'`, `'12:34:56.5'`] },
  { type: 'time(0)', values: [`'12:34:56.7'`] },
  { type: 'time(3)', values: [`'12:34:56.7891'`] },
  {
    type: 'timetz',
    values: [
      `'12:34:56.789+05:30'`,
      `'00:00:00+00'`,
      `'23:59:59-12'`,
      `'10:00:00+14:59'`,
      `'01:02:03-03:30:15'`,
    ],
  },
  {
    type: 'timestamp',
    values: [
      `'2024-01-01 12:34:56.123456'`,
      `'1969-12-31 23:59:59.999999'`,
      `'0044-03-15 12:00:00 BC'`,
      `'4713-01-01 00:00:00 BC'`,
      `'294276-12-31 23:59:59.999999'`,
      `'10000-01-01 00:00:00'`,
      `'infinity'`,
      `'-infinity'`,
    ],
  },
  { type: 'timestamp(3)', values: [`'2024-01-01 12:34:56.7895'`, `'infinity'`] },
  {
    type: 'timestamptz',
    values: [
      `'2024-01-01 12:34:56.123456+02'`,
      `'1880-01-01 00:00:00+00'`,
      `'0044-03-15 12:00:00+00 BC'`,
      `'4713-11-24 00:00:00+00 BC'`,
      `'294276-12-31 23:59:59.999999+00'`,
      `'2024-03-31 02:30:00+02'`,
      `'infinity'`,
      `'-infinity'`,
    ],
  },
  { type: 'timestamptz(0)', values: [`'2024-01-01 12:34:56.6+00'`] },
  {
    type: 'interval',
    values: [
      `'1 year 2 mons -3 days 04:05:06.78'`,
      `'-1 second'`,
      `'0'`,
      `'178000000 years'`,
      `'1 day -00:00:00.000001'`,
      `'-2562047788:00:54.775807'`,
    ],
  },
  { type: 'int4[]', values: [`'{1,2,NULL,-3}'`, `'{}'`, `'{{1,2},{3,4}}'`] },
  { type: 'int8[]', values: [`'{9223372036854775807,-1}'`] },
  {
    type: 'text[]',
    values: [
      `ARRAY['a b', 'c"d', NULL, 'NULL', 'x,y', '', 'back\\slash', '{x}', ' lead', E'new\\nline', 'null']`,
    ],
  },
  { type: 'numeric(10,2)[]', values: [`'{1.5,NULL,-2}'`] },
  { type: 'float8[]', values: [`'{NaN,Infinity,-0,1.5}'`] },
  { type: 'bool[]', values: [`'{t,f,NULL}'`] },
  { type: 'numeric[]', values: [`'{1.5,NaN,Infinity,-0.001}'`] },
  { type: 'interval[]', values: [`'{"1 day",-00:00:01}'`] },
  { type: 'money[]', values: [`'{$1.00,-$2.50}'`] },
  { type: 'point[]', values: [`'{"(1,2)","(NaN,3)"}'`], compareText: true },
  { type: 'timetz[]', values: [`'{10:00:00+02,24:00:00-01}'`] },
  { type: 'bit(3)[]', values: [`'{101,010}'`] },
  { type: 'bit(1)[]', values: [`'{1,0}'`] },
  { type: 'text[][]', values: [`'{{a,NULL},{"b c","\\\\"}}'`] },
  { type: 'date[]', values: [`'{2024-01-01,infinity}'`] },
  { type: 'timestamptz[]', values: [`'{"2024-01-01 00:00:00+00",-infinity}'`] },
  { type: 'uuid[]', values: [`'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'`] },
  { type: 'jsonb[]', values: [`ARRAY['{"a": "b,c"}'::jsonb, NULL]`] },
  { type: 'bytea[]', values: [`ARRAY['\\xdead'::bytea, NULL, '\\x'::bytea]`] },
  { type: 'mood', values: [`'happy'`, `'o,k'`, `$$say "hi"$$`] },
  { type: 'mood[]', values: [`ARRAY['happy', 'o,k', 'say "hi"']::mood[]`] },
  { type: 'price', values: ['12.5'] },
  { type: 'price[]', values: [`'{12.5,NULL}'`] },
  { type: 'ints', values: [`'{1,NULL}'`] },
  { type: 'inet', values: [`'192.168.0.1/24'`, `'::1'`, `'::ffff:1.2.3.4/128'`] },
  { type: 'cidr', values: [`'10.0.0.0/8'`, `'2001:db8::/32'`] },
  { type: 'macaddr', values: [`'08:00:2b:01:02:03'`] },
  { type: 'macaddr8', values: [`'08:00:2b:01:02:03:04:05'`] },
  { type: 'money', values: ['1234.56', '-0.99', '92233720368547758.07', '-92233720368547758.08'] },
  { type: 'bit(5)', values: [`B'10101'`, `B'00000'`, `B'00101'`] },
  { type: 'bit(1)', values: [`B'1'`, `B'0'`] },
  { type: 'varbit', values: [`B'0001'`, `B''`, `B'1'`, `repeat('10', 100)::varbit`] },
  { type: 'point', values: [`'(1.5,-2)'`, `'(1e300,0)'`, `'(NaN,Infinity)'`], compareText: true },
  // No mapping: the string fallback.
  { type: 'int4range', values: [`'[1,5)'`, `'empty'`] },
  { type: 'tsvector', values: [`'a b'`] },
  { type: 'xml', values: [`'<a x="1">t</a>'`], compareText: true },
  { type: 'hstore', values: [`'a=>1, "b c"=>NULL, "q\\"x"=>"y"'`] },
  { type: 'citext', values: [`'MiXeD'`] },
  { type: 'ltree', values: [`'top.science.astronomy'`] },
];

const rawText = { getTypeParser: () => (value: string) => value };
const columnName = (i: number): string => `c${i}`;

/**
 * The type-handling options (./type-handling.ts) and the column types each one makes lossy, as
 * docs/type-mapping.md says (values of those types may come back different, or out of the type's
 * range); every other column must come back exact.
 */
const MODES: readonly { readonly types: Partial<TypeHandling>; readonly lossy: readonly string[] }[] = [
  { types: {}, lossy: [] },
  { types: CONNECTOR_TYPE_HANDLING, lossy: ['interval', 'interval[]', 'timetz', 'timetz[]', 'varbit'] },
  { types: { 'time.precision.mode': 'adaptive_time_microseconds' }, lossy: [] },
  { types: { 'time.precision.mode': 'connect' }, lossy: ['time', 'time(4)', 'timestamp', 'timestamp(6)'] },
  { types: { 'decimal.handling.mode': 'string' }, lossy: [] },
  {
    types: { 'decimal.handling.mode': 'double' },
    lossy: ['numeric', 'numeric(10,2)', 'numeric(5,-2)', 'money', 'money[]'],
  },
  { types: { 'binary.handling.mode': 'base64' }, lossy: [] },
  { types: { 'binary.handling.mode': 'base64-url-safe' }, lossy: [] },
  { types: { 'binary.handling.mode': 'hex' }, lossy: [] },
  { types: { 'hstore.handling.mode': 'json' }, lossy: [] },
];

for (const mode of MODES) {
  test(`every mapped type survives pg text -> Debezium JSON -> pg literal on a real server (${JSON.stringify(mode.types)})`, async () => {
    await roundTrip(mode.types, new Set(mode.lossy));
  });
}

async function roundTrip(types: Partial<TypeHandling>, lossy: ReadonlySet<string>): Promise<void> {
  await using dbs = await createTestDatabases('codec');
  await dbs.sql1(`CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
    CREATE TYPE mood AS ENUM ('happy', 'sad', 'o,k', 'say "hi"');
    CREATE DOMAIN price AS numeric(8,3);
    CREATE DOMAIN ints AS int[];
    CREATE TABLE t (id int PRIMARY KEY, ${COLUMNS.map((c, i) => `${columnName(i)} ${c.type}`).join(', ')})`);
  const rows = Math.max(...COLUMNS.map((c) => c.values.length)) + 1;
  for (let r = 0; r < rows; r++) {
    const values = COLUMNS.map((c) => c.values[r] ?? 'NULL');
    await dbs.sql1(`INSERT INTO t VALUES (${r}, ${values.join(', ')})`);
  }

  // Text-format results: each column's output function, as pgoutput and the snapshot read them. A
  // zone with LMT offsets (+00:53:28 before 1893) makes the timestamptz text harder.
  const client = new pg.Client({ connectionString: dbs.db1, types: rawText });
  await client.connect();
  try {
    await client.query(`SET TimeZone = 'Europe/Berlin'`);
    const relation = await describeTable(client);
    const encoder = new EventEncoder({
      serverName: 'pgbisync.codec',
      database: dbs.name,
      connectorVersion: 'pgbisync-test',
      registry: await readRegistry(client),
      types,
    });
    const plan = encoder.compile(relation);
    const { rows: data } = await client.query<unknown[]>({
      text: 'SELECT * FROM t ORDER BY id',
      rowMode: 'array',
    });
    const failures: string[] = [];
    let compared = 0;
    for (const row of data) {
      const tuple = row.map(
        (v): TupleValue => (v === null ? { kind: 'null' } : { kind: 'text', text: String(v) }),
      );
      const record = plan.create(tuple, { lsn: 1n, txId: 1, commitTimeUs: 0n });
      const event = decodeRecord(record.key, record.value) as ChangeEvent;
      assert.deepEqual(event.key, new Map([['id', String(row[0])]]));
      for (const [i, column] of COLUMNS.entries()) {
        const original = row[i + 1] as string | null;
        const decoded = event.after?.get(columnName(i));
        if (typeof decoded === 'symbol' || decoded === undefined) throw new Error(`column ${i} missing`);
        if ((original === null) !== (decoded === null)) {
          failures.push(`${column.type}: ${original} decoded as ${decoded}`);
          continue;
        }
        if (original === null) continue;
        const col = columnName(i);
        const sql = column.compareText
          ? `SELECT $1::${column.type}::text IS NOT DISTINCT FROM ${col}::text AS same FROM t WHERE id = $2`
          : `SELECT $1::${column.type} IS NOT DISTINCT FROM ${col} AS same FROM t WHERE id = $2`;
        compared++;
        try {
          const same = (await client.query<{ same: string }>(sql, [decoded, row[0]])).rows[0]?.same;
          if (same !== 't' && !lossy.has(column.type))
            failures.push(
              `${column.type}: ${JSON.stringify(original)} came back as ${JSON.stringify(decoded)}`,
            );
        } catch (error) {
          if (!lossy.has(column.type))
            failures.push(
              `${column.type}: ${JSON.stringify(decoded)} (from ${JSON.stringify(original)}) is rejected: ${String(error)}`,
            );
        }
      }
    }
    assert.deepEqual(failures, []);
    assert.equal(
      compared,
      COLUMNS.reduce((n, c) => n + c.values.length, 0),
    );
  } finally {
    await client.end();
  }
}

/** The Relation message pgoutput would send for `t` (key flags from the primary key). */
async function describeTable(client: pg.Client): Promise<RelationMessage> {
  const { rows } = await client.query<{ name: string; typeoid: string; typmod: string; iskey: string }>(
    `SELECT a.attname AS name, a.atttypid::int AS typeoid, a.atttypmod AS typmod,
            coalesce(a.attnum = ANY (i.indkey), false) AS iskey
       FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
      WHERE a.attrelid = 't'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  );
  return {
    tag: 'relation',
    relationId: 1,
    schema: 'public',
    table: 't',
    replicaIdentity: 'default',
    columns: rows.map((c) => ({
      name: c.name,
      typeOid: Number(c.typeoid),
      typeMod: Number(c.typmod),
      isKey: c.iskey === 't',
    })),
  };
}

/** Enums, domains and their arrays, classified from CUSTOM_TYPE_QUERY. */
function readRegistry(client: pg.Client): Promise<TypeRegistry> {
  return readTypeRegistry(client as unknown as CatalogQuery, ['t']);
}
