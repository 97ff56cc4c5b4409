/**
 * `capture.types` end to end: pgbisync's capture sends db1's rows with the connector's type options
 * (bytea as base64 or hex strings, hstore as a JSON string, decimals as strings, every time in
 * microseconds...), and pgbisync's own applier writes them into db2, which must then equal db1 (plain
 * SQL comparison): every exact option round-trips, snapshot rows and streamed ones, with and without
 * schemas in the records. The lossy options (docs/type-mapping.md) are proven value by value in
 * src/events/codec.pg.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN public.posint AS int CHECK (VALUE > 0);
CREATE TABLE public.typed (
  id int PRIMARY KEY, by bytea, hs hstore, n numeric(12,4), nv numeric, m money, tm time(3), tm6 time,
  d date, ts timestamp(3), e public.mood, ea public.mood[], dm public.posint, tv tsvector
);`;

const ROWS = [
  `(1, '\\xfbff00', '"a"=>"1", "b\\"c"=>NULL', 12345678.1234, 'NaN', '-$1,234.56', '12:34:56.789',
    '23:59:59.999999', '2024-02-29', '2024-01-01 12:34:56.789', 'happy', '{happy,sad}', 5, 'a fat cat')`,
  `(2, '\\x', '', -0.0001, 1e-30, 0, '00:00', '24:00:00', '0044-03-15 BC', '1970-01-01', 'sad', '{}', 1, '')`,
  `(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
];

const OPTION_SETS: readonly [string, string][] = [
  [
    'base64, json, string, adaptive_time_microseconds',
    `{ binary.handling.mode: base64, hstore.handling.mode: json, decimal.handling.mode: string, time.precision.mode: adaptive_time_microseconds }`,
  ],
  ['hex, schemaless', `{ binary.handling.mode: hex }`],
  ['base64-url-safe', `{ binary.handling.mode: base64-url-safe }`],
];

for (const [name, types] of OPTION_SETS) {
  test(`pgbisync's applier applies what its capture sends with capture.types ${name}`, async () => {
    await using dbs = await createTestDatabases('typeopts');
    await dbs.sql1(DDL);
    await dbs.sql2(DDL);
    const schemaless = name.includes('schemaless');
    const config = syncConfig(
      dbs,
      ['public.typed'],
      `capture: { types: ${types}${schemaless ? ', schemasEnabled: false' : ''} }`,
    );
    await setup(config);
    await dbs.sql1(`INSERT INTO typed VALUES ${ROWS[0]}`); // through the snapshot
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    for (const row of ROWS.slice(1)) await dbs.sql1(`INSERT INTO typed VALUES ${row}`);
    await dbs.sql1(`UPDATE typed SET by = '\\x00', hs = '"k"=>"v"', n = 1.5 WHERE id = 2`);
    const same = async () =>
      JSON.stringify(await tableRows(dbs.sql1, 'typed')) ===
      JSON.stringify(await tableRows(dbs.sql2, 'typed'));
    await waitFor('db2 equal to db1', async () => (await same()) && (await count(dbs.sql2)) === 3, 60_000);
    const dead = (await sync.metrics.deadLetters.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(dead, 0, 'no record was dead-lettered');
    await sync.stop();
    await teardown(config, { keepTopics: false });
  });
}

async function count(sql: (text: string) => Promise<{ rows: { n: number }[] }>): Promise<number> {
  return (await sql('SELECT count(*)::int AS n FROM typed')).rows[0]!.n;
}
