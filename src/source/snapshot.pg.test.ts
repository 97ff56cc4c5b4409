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
import type { CopyResume } from './copy-progress.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';
import { runSnapshot, type SnapshotOptions } from './snapshot.ts';

const DDL = `CREATE TABLE public.parent (id int PRIMARY KEY);
  CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent (id));
  INSERT INTO public.parent SELECT g FROM generate_series(1, 3) g;
  INSERT INTO public.child SELECT g, g FROM generate_series(1, 3) g;`;

/** Runs the snapshot of `tables` (one row per chunk) in an exported snapshot of `url`, sending to `send`. */
async function snapshotOf(
  url: string,
  tables: string[],
  send: (records: readonly OutRecord[]) => Promise<void>,
  more: Partial<SnapshotOptions> = {},
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
      ...more,
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

test('a copy in row batches starts at the page it is told, reports acknowledged pages, and stops where paused', async () => {
  await using dbs = await createTestDatabases('snapshot');
  // Few rows per page: the copy reads many ranges.
  await dbs.sql1(`CREATE TABLE public.wide (id int PRIMARY KEY, pad text NOT NULL) WITH (fillfactor = 10);
                  INSERT INTO public.wide SELECT g, repeat('x', 200) FROM generate_series(1, 200) g;
                  DELETE FROM public.wide WHERE id = 7`);
  await dbs.sql1(PGBISYNC_SCHEMA_SQL);
  await dbs.sql1(
    `CREATE TRIGGER pgbisync_tombstone AFTER DELETE ON public.wide FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone('id')`,
  );
  await dbs.sql1('DELETE FROM public.wide WHERE id = 8');
  const pages = Number((await dbs.sql1("SELECT pg_relation_size('public.wide') / 8192 AS n")).rows[0].n);
  const from = Math.floor(pages / 2);
  const after = Number(
    (await dbs.sql1(`SELECT count(*) AS n FROM public.wide WHERE ctid >= '(${from},0)'::tid`)).rows[0].n,
  );
  assert.ok(pages > 10 && after > 0 && after < 199, `${pages} pages, ${after} rows from page ${from}`);
  const run = async (resume: CopyResume) => {
    const ops: string[] = [];
    const rows = await snapshotOf(
      dbs.db1,
      ['public.wide'],
      async (records) => {
        for (const r of records)
          if (r.value !== null) ops.push(JSON.parse(String(r.value)).payload?.op ?? 'rows');
      },
      { records: 'batched', chunkRows: 1000, resume },
    );
    return { rows, ops };
  };
  // Resumed: only the rows from page `from` on, then the remembered delete; acknowledged pages rise to the end.
  const acked: number[] = [];
  const resumed = await run({
    from: () => from,
    acked: (_table, page) => acked.push(page),
    paused: async () => false,
    pausedTables: [],
  });
  assert.equal(resumed.rows, after + 1, 'the rows from the page, and the remembered delete');
  assert.deepEqual(
    resumed.ops.filter((op) => op === 'd'),
    ['d'],
  );
  assert.ok(acked.length > 1 && acked.every((p, i) => i === 0 || p > acked[i - 1]!), `acked ${acked}`);
  assert.equal(acked.at(-1), pages);
  // Paused after the first ranges: it stops there, its remembered deletes unsent.
  let asked = 0;
  const paused: string[] = [];
  const stopped = await run({
    from: () => 0,
    acked: () => undefined,
    paused: async (table) => {
      if (++asked < 2) return false;
      if (!paused.includes(table)) paused.push(table);
      return true;
    },
    pausedTables: paused,
  });
  assert.ok(stopped.rows > 0 && stopped.rows < 100, `${stopped.rows} rows before the pause`);
  assert.deepEqual(
    stopped.ops.filter((op) => op === 'd'),
    [],
  );
});
