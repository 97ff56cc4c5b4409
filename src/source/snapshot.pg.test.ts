/**
 * The snapshot against a real server, in a snapshot exported the way slot creation exports one: a
 * failed send fails the snapshot (the capture restarts) without ending the process, and tables are read
 * parents first, so a target that checks foreign keys takes every chunk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OutRecord } from '../kafka/records.ts';
import { newPgClient } from '../pg/client.ts';
import { PGBISYNC_SCHEMA_SQL } from '../pg/pgbisync-schema.ts';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import { FaultyProducer } from '../testing/memory-kafka.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';
import { runSnapshot } from './snapshot.ts';

const DDL = `CREATE TABLE public.parent (id int PRIMARY KEY);
  CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent (id));
  INSERT INTO public.parent SELECT g FROM generate_series(1, 3) g;
  INSERT INTO public.child SELECT g, g FROM generate_series(1, 3) g;`;

/** Runs the snapshot of `tables` (one row per chunk) in an exported snapshot of `url`, sending to `send`. */
async function snapshotOf(
  url: string,
  tables: string[],
  send: (records: readonly OutRecord[]) => Promise<void>,
) {
  const holder = newPgClient({ connectionString: url });
  await holder.connect();
  try {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const name = (await holder.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
    return await runSnapshot({
      node: 'snap',
      url,
      snapshotName: name,
      consistentPoint: 0x100n,
      tables,
      encoder: new DebeziumChangeEncoder({ serverName: 'snap', database: 'db', connectorVersion: 'test' }),
      storeSchema: async () => undefined,
      producer: { send },
      topicFor: (_schema, table) => `snap.${table}`,
      chunkRows: 1,
      signal: new AbortController().signal,
    });
  } finally {
    await holder.end();
  }
}

test('a send that fails while the next chunk is read fails the snapshot, not the process', async () => {
  await using dbs = await createTestDatabases('snapshot');
  await dbs.sql1(DDL);
  // Each table's copy starts with the node's TRUNCATE of it (pgbisync.tombstones): `setup` makes the table.
  await dbs.sql1(PGBISYNC_SCHEMA_SQL);
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', record);
  try {
    const producer = new FaultyProducer({ send: async () => undefined }, { fail: { call: 1 } });
    await assert.rejects(
      snapshotOf(dbs.db1, ['public.parent'], (records) => producer.send(records)),
      (error: unknown) => error instanceof RetryableError && error.code === ErrorCode.KAFKA,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    process.off('unhandledRejection', record);
  }
  assert.deepEqual(unhandled, []);
});

test('tables are read parents first, whatever order the config names them in', async () => {
  await using dbs = await createTestDatabases('snapshot');
  await dbs.sql1(DDL);
  // The snapshot reads the node's TRUNCATEs and remembered deletes: `setup` makes their table.
  await dbs.sql1(PGBISYNC_SCHEMA_SQL);
  const topics: string[] = [];
  const rows = await snapshotOf(dbs.db1, ['public.child', 'public.parent'], async (records) => {
    for (const r of records) if (topics.at(-1) !== r.topic) topics.push(r.topic);
  });
  assert.equal(rows, 6);
  assert.deepEqual(topics, ['snap.parent', 'snap.child']);
});
