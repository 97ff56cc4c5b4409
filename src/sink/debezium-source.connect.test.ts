/**
 * Interop, Debezium -> pgbisync: the real Debezium PostgreSQL connector (on the stack's Kafka Connect)
 * captures db1 into its per-table topics and its transaction topic; pgbisync's applier, configured with
 * `nodes[].debezium`, applies them to db2. db2 must equal db1, compared with plain SQL: the table of every
 * common type (snapshot rows and streamed ones), updates that leave a TOASTed column unchanged (Debezium
 * sends its placeholder), deletes (with their tombstones), a transaction over two tables with a foreign
 * key between them (applied in source order thanks to the transaction metadata) and a truncate.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { setup, teardown } from '../operate/setup.ts';
import { databaseParts, startConnector } from '../testing/connectors.ts';
import { DEBEZIUM_TYPE_ROWS, EVERY_TYPE_DDL } from '../testing/every-type.ts';
import { startSync, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const CHILD_DDL = `CREATE TABLE public.child (
  id int PRIMARY KEY, parent bigint NOT NULL REFERENCES public.everything (id), note text)`;

/** A text TOASTed out of line (about 12 kB, hardly compressible). */
const BIG_TEXT = `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)`;

test('changes captured by the real Debezium PostgreSQL connector are applied by pgbisync', async () => {
  await using dbs = await createTestDatabases('dbz');
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql(EVERY_TYPE_DDL);
    await sql(CHILD_DDL);
  }
  const prefix = `dbz_${dbs.name}`;
  const source = `${dbs.name}_a`;
  const config = parseConfig(
    `
kafka:
  brokers: [${testEnv.kafkaBrokers().join(', ')}]
  topicPrefix: test.${dbs.name}
nodes:
  - { name: ${source}, url: "${dbs.db1}", debezium: { topicPrefix: ${prefix} } }
  - { name: ${dbs.name}_b, url: "${dbs.db2}" }
tables: [public.everything, public.child]
apply: { maxWaitMs: 10 }
`,
    'test config',
  );
  // Creates the connector's topics too (one partition each) and the dead-letter topic.
  await setup(config);

  // A row present before the connector starts comes through its snapshot (op 'r').
  await dbs.sql1(DEBEZIUM_TYPE_ROWS[0]!);
  const db = databaseParts(dbs.db1);
  await using connector = await startConnector(`dbz-${dbs.name}`, {
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'database.hostname': db.host,
    'database.port': db.port,
    'database.user': db.user,
    'database.password': db.password,
    'database.dbname': db.database,
    'topic.prefix': prefix,
    'plugin.name': 'pgoutput',
    'slot.name': `dbz_${dbs.name}`,
    'publication.name': `dbz_${dbs.name}`,
    'publication.autocreate.mode': 'filtered',
    'table.include.list': 'public.everything,public.child',
    'snapshot.mode': 'initial',
    'provide.transaction.metadata': 'true',
    // Truncates are skipped by default.
    'skipped.operations': 'none',
    // Exact representations (docs/type-mapping.md, "Reading the real Debezium connector's events").
    'interval.handling.mode': 'string',
    'hstore.handling.mode': 'map',
    'topic.creation.default.replication.factor': '1',
    'topic.creation.default.partitions': '1',
  });

  await using sync = await startSync(config);
  const same = async (table: string) => {
    await connector.assertRunning();
    return (
      JSON.stringify(await tableRows(dbs.sql1, table)) === JSON.stringify(await tableRows(dbs.sql2, table))
    );
  };
  await waitFor(
    'the snapshot row on db2',
    async () => (await same('everything')) && (await count(dbs.sql2)) === 1,
    60_000,
  );

  // Streaming: the other rows, one transaction each.
  for (const rows of DEBEZIUM_TYPE_ROWS.slice(1)) await dbs.sql1(rows);
  // A TOASTed value, then updates that leave it unchanged: Debezium sends __debezium_unavailable_value.
  await dbs.sql1(`UPDATE everything SET t = ${BIG_TEXT} WHERE id = 1`);
  await dbs.sql1(`UPDATE everything SET i4 = 7, jb = '{"after": "toast"}' WHERE id = 1`);
  // A key change with an unchanged TOASTed value.
  await dbs.sql1(`UPDATE everything SET id = 10, i2 = 5 WHERE id = 1`);
  // Parent and children in one transaction, children first removed in another: needs source order.
  await dbs.sql1(`BEGIN;
    INSERT INTO everything (id, t) VALUES (20, 'parent');
    INSERT INTO child VALUES (1, 20, 'one'), (2, 20, 'two');
    UPDATE everything SET t = 'parent, updated' WHERE id = 20;
    COMMIT`);
  await dbs.sql1(`BEGIN; DELETE FROM child WHERE id = 2; INSERT INTO child VALUES (3, 10, 'three'); COMMIT`);
  await dbs.sql1('DELETE FROM everything WHERE id = 3');
  await waitFor(
    'streamed changes on db2',
    async () => (await same('everything')) && (await same('child')) && (await childCount(dbs.sql2)) === 2,
    60_000,
  );
  const toasted = await dbs.sql2(`SELECT length(t) AS n, i4, i2 FROM everything WHERE id = 10`);
  assert.deepEqual(toasted.rows, [{ n: 12_800, i4: 7, i2: 5 }], 'the unchanged TOASTed value was kept');
  assert.equal((await dbs.sql2('SELECT 1 FROM everything WHERE id IN (1, 3)')).rowCount, 0, 'deleted');

  // Truncate (Debezium emits it with skipped.operations=none).
  await dbs.sql1('TRUNCATE child');
  await waitFor('the truncate on db2', async () => (await childCount(dbs.sql2)) === 0, 60_000);
  assert.ok(await same('everything'));
  const dead = (await sync.metrics.deadLetters.get()).values.reduce((n, v) => n + v.value, 0);
  assert.equal(dead, 0, 'no record was dead-lettered');
  await sync.stop();
  await teardown(config, { keepTopics: false });
});

async function count(sql: (text: string) => Promise<{ rows: { n: number }[] }>): Promise<number> {
  return (await sql('SELECT count(*)::int AS n FROM everything')).rows[0]!.n;
}

async function childCount(sql: (text: string) => Promise<{ rows: { n: number }[] }>): Promise<number> {
  return (await sql('SELECT count(*)::int AS n FROM child')).rows[0]!.n;
}
