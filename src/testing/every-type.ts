/**
 * The table of every common type (and the rows of tricky values) that the end-to-end tests send
 * through the pipeline: pgbisync both ways, and with the real Debezium components.
 */
export const EVERY_TYPE_DDL = `
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.everything (
  id bigint PRIMARY KEY,
  i2 smallint, i4 int, i8 bigint, n numeric(20,6), nv numeric, f4 real, f8 double precision, m money,
  b bool, t text, vc varchar(20), c char(5), u uuid, j json, jb jsonb, x xml, by bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  ia int[], ta text[], e public.mood, ip inet, cidr cidr, mac macaddr, bits bit(4), vb varbit, pt point
);`;

export const EVERY_TYPE_ROWS = `
INSERT INTO everything VALUES
 (1, -32768, 2147483647, -9223372036854775808, 12345678901234.123456, 'NaN', 'Infinity', -0.000001, 12.34,
  true, E'tab\\there "quotes" \\\\ and ünïcödé', 'short', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.5, null]}', '{"z": {"y": true}}', '<a b="1">x</a>', '\\x00ff10',
  '0044-03-15 BC', '23:59:59.999999', '01:02:03+05:30', '2024-02-29 12:34:56.789012', '2024-06-01 00:00:00.000001+02',
  '1 year 2 mons 3 days 04:05:06.7', '{1,NULL,3}', '{"a,b","c\\"d",NULL,""}', 'happy', '192.168.0.1/24',
  '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101', '(1.5,-2)'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  'infinity', NULL, NULL, '-infinity', 'infinity', NULL, '{}', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, 0, 0, 0, 0.1, '-Infinity', 'NaN', 0, false, '', '', '', '00000000-0000-0000-0000-000000000000', 'null',
  '[]', '<r/>', '\\x', '1970-01-01', '00:00', '00:00:00-12', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
  '-1 days -00:00:01', '{{1,2},{3,4}}', '{" spaced "}', 'sad', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'0000', B'', '(0,0)');`;

/**
 * The same three rows as one INSERT each, for the real Debezium PostgreSQL connector (the test applies
 * them as separate transactions, the first one through the connector's snapshot), with the values that
 * connector itself cannot carry replaced (seen with 3.6.1; docs/interop.md lists them):
 * - numeric `NaN` (nv, row 1) arrives as null: 'NaN' -> 1.5;
 * - a BC date loses its era ('0044-03-15 BC' arrives as 44 AD): row 1 uses '0044-03-15';
 * - timetz is shifted to UTC ('01:02:03+05:30' arrives as '19:32:03+00'): rows 1 and 3 use +00 offsets.
 */
export const DEBEZIUM_TYPE_ROWS: readonly string[] = [
  `INSERT INTO everything VALUES
 (1, -32768, 2147483647, -9223372036854775808, 12345678901234.123456, 1.5, 'Infinity', -0.000001, 12.34,
  true, E'tab\\there "quotes" \\\\ and ünïcödé', 'short', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.5, null]}', '{"z": {"y": true}}', '<a b="1">x</a>', '\\x00ff10',
  '0044-03-15', '23:59:59.999999', '01:02:03+00', '2024-02-29 12:34:56.789012', '2024-06-01 00:00:00.000001+02',
  '1 year 2 mons 3 days 04:05:06.7', '{1,NULL,3}', '{"a,b","c\\"d",NULL,""}', 'happy', '192.168.0.1/24',
  '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101', '(1.5,-2)')`,
  `INSERT INTO everything VALUES
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  'infinity', NULL, NULL, '-infinity', 'infinity', NULL, '{}', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
  `INSERT INTO everything VALUES
 (3, 0, 0, 0, 0, 0.1, '-Infinity', 'NaN', 0, false, '', '', '', '00000000-0000-0000-0000-000000000000', 'null',
  '[]', '<r/>', '\\x', '1970-01-01', '00:00', '00:00:00+00', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
  '-1 days -00:00:01', '{{1,2},{3,4}}', '{" spaced "}', 'sad', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'0000', B'', '(0,0)')`,
];

/**
 * The every-type table without the columns the Debezium JDBC sink (3.6.0) cannot write into stock
 * PostgreSQL (docs/interop.md): `point` (it calls PostGIS's ST_GeomFromWKB).
 */
export const JDBC_SINK_TYPE_DDL = EVERY_TYPE_DDL.replace(', pt point', '');

/**
 * DEBEZIUM_TYPE_ROWS without the unsupported columns' values, and with these replacements of values
 * the sink writes differently (docs/interop.md):
 * - finite floats instead of `Infinity`, `-Infinity` and `NaN`: JSON has no such numbers, so they travel
 *   as strings ("Infinity", as Kafka's JsonConverter writes them too), and JsonConverter reads a string
 *   in a float field as 0;
 */
export const JDBC_SINK_TYPE_ROWS: readonly string[] = DEBEZIUM_TYPE_ROWS.map((row) =>
  row
    .replace(/, ('\([^)]*\)'|NULL)\)$/, ')')
    .replaceAll("'-Infinity'", '-2.5')
    .replaceAll("'Infinity'", '3.5')
    .replaceAll("'NaN'", '0.25')
    // date 'infinity' arrives as '-infinity' (the sink's date conversion); timestamps keep theirs.
    .replace(
      "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,\n  'infinity',",
      "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,\n  '9999-12-31',",
    )
    // Multi-dimensional arrays are nested JSON arrays, which a Connect array of int32 cannot hold.
    .replace("'{{1,2},{3,4}}'", "'{1,2,3,4}'"),
);

/**
 * More columns for the Debezium oracle (src/source/debezium-oracle.connect.test.ts): a domain, ranges,
 * the geometric types, text search, more arrays, bit strings, temporal precisions, and `hstore` and
 * `citext` (contrib extensions, created by {@link EVERY_TYPE_EXTRA_DDL}). Run after EVERY_TYPE_DDL.
 */
export const EVERY_TYPE_EXTRA_DDL = `
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE DOMAIN public.posint AS int CHECK (VALUE > 0);
ALTER TABLE public.everything
  ADD COLUMN dm public.posint, ADD COLUMN r4 int4range, ADD COLUMN nr numrange, ADD COLUMN tsr tstzrange,
  ADD COLUMN bx box, ADD COLUMN ci circle, ADD COLUMN ln line, ADD COLUMN ls lseg, ADD COLUMN pa path,
  ADD COLUMN pg polygon, ADD COLUMN m8 macaddr8, ADD COLUMN tv tsvector, ADD COLUMN tq tsquery,
  ADD COLUMN ea public.mood[], ADD COLUMN vb5 varbit(5), ADD COLUMN b1 bit(1), ADD COLUMN na numeric[],
  ADD COLUMN n0 numeric(5,0), ADD COLUMN ts3 timestamp(3), ADD COLUMN tm3 time(3), ADD COLUMN hs hstore,
  ADD COLUMN cit citext, ADD COLUMN nn text NOT NULL DEFAULT 'x';`;

/** Values of the extra columns for rows 1 and 3 (row 2 keeps them null). */
export const EVERY_TYPE_EXTRA_UPDATES: readonly string[] = [
  `UPDATE everything SET dm = 5, r4 = '[1,10)', nr = '(1.5,2.5]',
  tsr = '[2024-01-01 00:00:00+00,2024-01-02 00:00:00+02)', bx = '(1,2),(3,4)', ci = '<(1,2),3>',
  ln = '{1,2,3}', ls = '[(1,2),(3,4)]', pa = '((1,2),(3,4))', pg = '((0,0),(1,1),(1,0))',
  m8 = '08:00:2b:01:02:03:04:05', tv = 'a fat cat', tq = 'fat & cat', ea = '{happy,sad}', vb5 = B'00101',
  b1 = B'1', na = '{1.5,NULL,2}', n0 = -12345, ts3 = '2024-01-01 12:34:56.789', tm3 = '12:34:56.789',
  hs = '"a"=>"1", "b"=>NULL', cit = 'MiXeD' WHERE id = 1`,
  `UPDATE everything SET dm = 1, r4 = 'empty', nr = '(,)', tsr = '(,2024-01-01 00:00:00+00]',
  bx = '(0,0),(0,0)', ci = '<(0,0),0>', ln = '{0,1,0}', ls = '[(0,0),(0,0)]', pa = '[(0,0),(1,1)]',
  pg = '((0,0))', m8 = 'ff:ff:ff:ff:ff:ff:ff:ff', tv = '', tq = 'a', ea = '{}', vb5 = B'1', b1 = B'0',
  na = '{}', n0 = 0, ts3 = '1970-01-01 00:00:00', tm3 = '00:00', hs = '', cit = '' WHERE id = 3`,
];
