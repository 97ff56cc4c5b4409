/**
 * Interop, pgbisync -> Debezium: pgbisync's capture publishes db1's changes to its node topic; the real
 * Debezium JDBC sink connector (upsert mode, deletes enabled, key from the record key), on the stack's
 * Kafka Connect, writes them into db2. db2 must equal db1, compared with plain SQL, for the columns of
 * the every-type table whose types the JDBC sink carries (docs/interop.md lists the others and why):
 * inserts, updates (one writing a TOASTed value), deletes and their tombstones. Not here: an update that
 * leaves a TOASTed value unchanged, which the JDBC sink writes as Debezium's placeholder text
 * `__debezium_unavailable_value` (docs/interop.md); pgbisync's applier keeps the value.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTOR_VERSION } from '../daemon/components.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import { serverName, topicFor } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { databaseParts, startConnector } from '../testing/connectors.ts';
import { JDBC_SINK_TYPE_DDL, JDBC_SINK_TYPE_ROWS } from '../testing/every-type.ts';
import { syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { Capture } from './capture.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';

/** A text TOASTed out of line (about 12 kB, hardly compressible). */
const BIG_TEXT = `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)`;

test("the real Debezium JDBC sink applies pgbisync's topic", async () => {
  await using dbs = await createTestDatabases('jdbc');
  await dbs.sql1(JDBC_SINK_TYPE_DDL);
  await dbs.sql2(JDBC_SINK_TYPE_DDL);
  const config = syncConfig(dbs, ['public.everything']);
  const source = config.nodes[0]!.name;
  await setup(config);

  // pgbisync's capture of db1 alone (no pgbisync applier: the JDBC sink is the applier).
  await dbs.sql1(JDBC_SINK_TYPE_ROWS[0]!); // through the snapshot
  const producer = new KafkaProducer({ ...kafkaOptions(config, 'capture-jdbc'), compression: 'lz4' });
  const capture = new Capture({
    node: source,
    url: dbs.db1,
    tables: ['public.everything'],
    encoder: new DebeziumChangeEncoder({
      serverName: serverName(config, source),
      database: dbs.name,
      schemas: true,
      connectorVersion: CONNECTOR_VERSION,
    }),
    producer,
    topicFor: topicFor(config, source),
    snapshot: 'initial',
    snapshotChunkRows: 10_000,
    maxBatchEvents: 2_000,
  });
  const controller = new AbortController();
  let captureFailure: unknown;
  const capturing = capture.run(controller.signal).catch((error: unknown) => {
    captureFailure = error;
  });
  try {
    const db = databaseParts(dbs.db2);
    await using sink = await startConnector(`jdbc-${dbs.name}`, {
      'connector.class': 'io.debezium.connector.jdbc.JdbcSinkConnector',
      'tasks.max': '1',
      // transactional mode: one topic for all tables; the sink names each record's table from its
      // source block.
      topics: serverName(config, source),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the sink's own placeholders
      'collection.name.format': '${source.schema}.${source.table}',
      // stringtype=unspecified: strings are bound untyped, so PostgreSQL casts them to the column's
      // type (interval, inet, enum, varbit... arrive as strings; bound as varchar they are refused).
      'connection.url': `jdbc:postgresql://${db.host}:${db.port}/${db.database}?stringtype=unspecified`,
      'connection.username': db.user,
      'connection.password': db.password,
      'insert.mode': 'upsert',
      'delete.enabled': 'true',
      'truncate.enabled': 'true',
      'primary.key.mode': 'record_key',
      'schema.evolution': 'none',
      'batch.size': '1000',
    });
    const same = async () => {
      if (captureFailure !== undefined) throw captureFailure;
      await sink.assertRunning();
      return (
        JSON.stringify(await tableRows(dbs.sql1, 'everything')) ===
        JSON.stringify(await tableRows(dbs.sql2, 'everything'))
      );
    };
    await waitFor('the snapshot row on db2', same, 60_000);

    for (const rows of JDBC_SINK_TYPE_ROWS.slice(1)) await dbs.sql1(rows);
    await dbs.sql1(`UPDATE everything SET t = ${BIG_TEXT} WHERE id = 1`);
    await waitFor('the TOASTed value on db2', same, 60_000);
    await dbs.sql1(`UPDATE everything SET i4 = 7 WHERE id = 2`);
    await dbs.sql1('DELETE FROM everything WHERE id = 3');
    await dbs.sql1(`INSERT INTO everything (id, t) VALUES (4, 'last')`);
    await waitFor('every change on db2', async () => (await same()) && (await has(dbs.sql2, 4)), 60_000);
    assert.equal(await has(dbs.sql2, 3), false, 'the deleted row is gone');
    const written = await dbs.sql2(
      'SELECT length(t) AS n FROM everything WHERE id = 1 UNION ALL SELECT i4 FROM everything WHERE id = 2',
    );
    assert.deepEqual(written.rows, [{ n: 12_800 }, { n: 7 }], 'the TOASTed value and the update arrived');
  } finally {
    controller.abort();
    await capturing;
    await producer.close();
  }
  if (captureFailure !== undefined) throw captureFailure;
  await teardown(config, { keepTopics: false });
});

async function has(
  sql: (text: string) => Promise<{ rowCount: number | null }>,
  id: number,
): Promise<boolean> {
  return (await sql(`SELECT 1 FROM everything WHERE id = ${id}`)).rowCount === 1;
}
