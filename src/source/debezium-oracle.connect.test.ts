/**
 * The Debezium oracle: the real Debezium PostgreSQL connector and pgbisync's capture read the same
 * every-type table (every type of docs/type-mapping.md: arrays, an enum, a domain, ranges, geometric
 * types, hstore, citext...) and the same transactions (insert, update, an update that leaves a TOASTed
 * value unchanged, a primary-key change, a delete, a truncate). Their records are compared key, value
 * schema and payload, field by field (src/testing/event-oracle.ts); every difference is reported, and
 * the test fails on any that docs/type-mapping.md does not list as deliberate for the run, and on a
 * listed one that no longer occurs.
 *
 * Runs: the connector with its defaults, and with the options pgbisync documents for interop
 * (docs/interop.md); pgbisync with its defaults, and with the connector's own option names set to the
 * connector's defaults (`capture.types`), the setting for a user who replaces a connector and keeps its
 * consumers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONNECTOR_VERSION } from '../daemon/components.ts';
import type { TypeHandling } from '../events/type-handling.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import type { InRecord } from '../kafka/records.ts';
import { serverName, topicFor } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { databaseParts, startConnector } from '../testing/connectors.ts';
import {
  type ColumnLabels,
  compareStreams,
  type Difference,
  listedDifferences,
  parseRecord,
  unlistedDifferences,
} from '../testing/event-oracle.ts';
import {
  EVERY_TYPE_DDL,
  EVERY_TYPE_EXTRA_DDL,
  EVERY_TYPE_EXTRA_UPDATES,
  EVERY_TYPE_ROWS,
} from '../testing/every-type.ts';
import { readTopic, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { Capture } from './capture.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';

const DOC = new URL('../../docs/type-mapping.md', import.meta.url).pathname;

/** A text TOASTed out of line (about 12 kB, hardly compressible). */
const BIG_TEXT = `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)`;

/** The transactions both read, in order. */
const TRANSACTIONS: readonly string[] = [
  EVERY_TYPE_ROWS,
  ...EVERY_TYPE_EXTRA_UPDATES,
  `UPDATE everything SET t = ${BIG_TEXT} WHERE id = 1`,
  // Leaves the TOASTed t unchanged: both send the placeholder.
  `UPDATE everything SET i4 = 7 WHERE id = 1`,
  `UPDATE everything SET id = 10, i2 = 5 WHERE id = 1`,
  'DELETE FROM everything WHERE id = 3',
  'TRUNCATE everything',
];
/** pgbisync's records: 3 inserts, 5 updates, the key change, delete + tombstone, truncate. */
const PGBISYNC_RECORDS = 11;

interface Run {
  readonly name: string;
  /** Connector options beyond the connection, slot and table. */
  readonly connector: Readonly<Record<string, string>>;
  readonly pgbisync: Partial<TypeHandling>;
  /** Debezium's records: inserts, updates, d + tombstone + c for the key change, d + tombstone, (t). */
  readonly debeziumRecords: number;
}

const RUNS: readonly Run[] = [
  { name: 'defaults', connector: {}, pgbisync: {}, debeziumRecords: 12 },
  {
    name: 'interop',
    // docs/interop.md, "Reading the real Debezium connector's events".
    connector: {
      'interval.handling.mode': 'string',
      'hstore.handling.mode': 'map',
      'provide.transaction.metadata': 'true',
      'skipped.operations': 'none',
    },
    pgbisync: {},
    debeziumRecords: 13,
  },
  {
    name: 'connector-options',
    connector: {},
    pgbisync: {
      'interval.handling.mode': 'numeric',
      'time.precision.mode': 'adaptive',
      'decimal.handling.mode': 'precise',
      'binary.handling.mode': 'bytes',
      'hstore.handling.mode': 'json',
      // pgbisync's own options for what the connector always does.
      varbit: 'bits',
      timetz: 'utc',
    },
    debeziumRecords: 12,
  },
];

for (const run of RUNS) {
  test(`the real Debezium connector and pgbisync's capture send the same events (${run.name})`, async (t) => {
    const { debezium, pgbisync, labels } = await captureBoth(run);
    const found = compareStreams(debezium, pgbisync, labels);
    for (const d of found)
      t.diagnostic(`${d.key}: ${d.path}: debezium ${d.debezium} | pgbisync ${d.pgbisync}`);
    const { unlisted, unseen } = unlistedDifferences(run.name, found, listedDifferences(DOC));
    assert.deepEqual(
      unlisted.map(describe),
      [],
      `differences not listed in docs/type-mapping.md for run ${run.name}`,
    );
    assert.deepEqual(unseen, [], `listed for run ${run.name} in docs/type-mapping.md but not seen`);
  });
}

function describe(d: Difference): string {
  return `${d.key} (${d.path}): debezium ${d.debezium} | pgbisync ${d.pgbisync}`;
}

async function captureBoth(run: Run) {
  await using dbs = await createTestDatabases('oracle');
  // db2 only takes part in `setup`, which checks the table on every node.
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql(EVERY_TYPE_DDL);
    await sql(EVERY_TYPE_EXTRA_DDL);
  }
  const config = syncConfig(dbs, ['public.everything']);
  const node = config.nodes[0]!.name;
  const prefix = serverName(config, node);
  await setup(config);
  const labels = await columnLabels(dbs.sql1);

  const db = databaseParts(dbs.db1);
  const slot = `dbz_${dbs.name}`;
  await using connector = await startConnector(`oracle-${dbs.name}`, {
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'database.hostname': db.host,
    'database.port': db.port,
    'database.user': db.user,
    'database.password': db.password,
    'database.dbname': db.database,
    // The same logical name as pgbisync's node: the same source.name and schema names.
    'topic.prefix': prefix,
    'plugin.name': 'pgoutput',
    'slot.name': slot,
    'publication.name': slot,
    'publication.autocreate.mode': 'filtered',
    'table.include.list': 'public.everything',
    'snapshot.mode': 'no_data',
    'topic.creation.default.replication.factor': '1',
    'topic.creation.default.partitions': '1',
    ...run.connector,
  });
  await waitFor(
    "the connector's slot in use",
    async () => {
      await connector.assertRunning();
      return (
        (await dbs.sql1('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [slot]))
          .rowCount === 1
      );
    },
    60_000,
  );

  const producer = new KafkaProducer({ ...kafkaOptions(config, 'capture-oracle'), compression: 'lz4' });
  let streaming = false;
  const capture = new Capture({
    node,
    url: dbs.db1,
    tables: ['public.everything'],
    encoder: new DebeziumChangeEncoder({
      serverName: prefix,
      database: dbs.name,
      schemas: true,
      connectorVersion: CONNECTOR_VERSION,
      types: run.pgbisync,
    }),
    producer,
    topicFor: topicFor(config, node),
    snapshot: 'never',
    snapshotChunkRows: 10_000,
    maxBatchEvents: 2_000,
    onProgress: (event) => {
      if (event.kind === 'streaming') streaming = true;
    },
  });
  const controller = new AbortController();
  let captureFailure: unknown;
  const capturing = capture.run(controller.signal).catch((error: unknown) => {
    captureFailure = error;
  });
  let debezium: InRecord[];
  let pgbisync: InRecord[];
  try {
    await waitFor('the capture streaming', async () => {
      if (captureFailure !== undefined) throw captureFailure;
      return streaming;
    });
    for (const sql of TRANSACTIONS) await dbs.sql1(sql);
    pgbisync = await readTopic(config, prefix, (r) => r.length >= PGBISYNC_RECORDS, 60_000);
    debezium = await readTopic(
      config,
      `${prefix}.public.everything`,
      (r) => r.length >= run.debeziumRecords,
      60_000,
    );
    await connector.assertRunning();
  } finally {
    controller.abort();
    await capturing;
    await producer.close();
  }
  if (captureFailure !== undefined) throw captureFailure;
  assert.equal(pgbisync.length, PGBISYNC_RECORDS, "pgbisync's records");
  await teardown(config, { keepTopics: false });
  return { debezium: debezium.map(parseRecord), pgbisync: pgbisync.map(parseRecord), labels };
}

/**
 * Column name -> its type as format_type prints it without the type modifier (`numeric`, `bit
 * varying`), `primary key` for the key column, `not null column` for the other NOT NULL ones.
 */
async function columnLabels(
  sql: (text: string) => Promise<{ rows: { name: string; label: string }[] }>,
): Promise<ColumnLabels> {
  const { rows } = await sql(`
    SELECT a.attname AS name,
           CASE WHEN a.attnum = ANY (i.indkey) THEN 'primary key'
                WHEN a.attnotnull THEN 'not null column'
                ELSE regexp_replace(format_type(a.atttypid, a.atttypmod), '\\(.*\\)', '') END AS label
    FROM pg_attribute a JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
    WHERE a.attrelid = 'public.everything'::regclass AND a.attnum > 0 AND NOT a.attisdropped`);
  return new Map(rows.map((r) => [r.name, r.label]));
}
