/**
 * The repair from the source of rows an update lacking unchanged TOAST values could not write whole
 * (./toast-repair.ts), against real servers: db1 is the source node, db2 the target. The events are the
 * ones pgoutput sends under REPLICA IDENTITY DEFAULT (the TOASTed body unchanged), at the commit time of
 * the source's own write, as the capture would send them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { type RowChange, UNCHANGED } from './apply-model.ts';
import { repairFromSource } from './toast-repair.ts';
import { TransactionWriter } from './transaction-writer.ts';

const DDL = 'CREATE TABLE docs (id bigint PRIMARY KEY, n int NOT NULL, body text)';
/** A body far over the TOAST threshold, random so that it does not compress below it. */
const BODY = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))`;
const VERSION = `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us,
    n, md5(body) AS body FROM docs WHERE id = $1`;

async function prepare(dbs: TestDatabases): Promise<void> {
  for (const url of [dbs.db1, dbs.db2]) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(DDL);
      await ensurePgbisyncSchema(client);
    } finally {
      await client.end();
    }
  }
}

/** The source's row `id`: its commit time (µs), n and the md5 of its body. */
async function sourceRow(dbs: TestDatabases, id: number) {
  const row = (await dbs.sql1(VERSION, [id])).rows[0] as { us: string; n: number; body: string };
  return { us: BigInt(row.us), n: row.n, body: row.body };
}

/** The update of n that pgoutput sends for row `id` (body unchanged, so not sent). */
const partial = (id: number, n: number): RowChange => ({
  op: 'u',
  schema: 'public',
  table: 'docs',
  beforeKey: { id: String(id) },
  after: { id: String(id), n: String(n), body: UNCHANGED },
});

const source = (dbs: TestDatabases) => `s_${dbs.name}`;

/** Commit LSNs and offsets of the applied transactions: increasing, or the writer skips them as applied. */
let applied = 0n;

async function applyFromSource(dbs: TestDatabases, us: bigint, changes: RowChange[]): Promise<number> {
  const writer = new TransactionWriter({
    url: dbs.db2,
    targetNode: dbs.name,
    sourceNode: source(dbs),
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
  applied++;
  try {
    await writer.open();
    const result = await writer.apply([
      {
        sourceNode: source(dbs),
        commitLsn: 0x1000n + applied,
        commitTimeUs: us,
        lsnOrdered: true,
        snapshot: false,
        changes,
        topic: 'pgbisync.src',
        partition: 0,
        lastOffset: applied,
      },
    ]);
    return result.conflicts;
  } finally {
    await writer.close();
  }
}

async function repair(dbs: TestDatabases, held = new Map<string, string>()) {
  const writer = new TransactionWriter({
    url: dbs.db2,
    targetNode: dbs.name,
    sourceNode: source(dbs),
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
  try {
    await writer.open();
    return await writer.between((session, catalog) =>
      repairFromSource(session, catalog, {
        sourceNode: source(dbs),
        targetNode: dbs.name,
        sourceUrl: dbs.db1,
        held,
      }),
    );
  } finally {
    await writer.close();
  }
}

/**
 * The source inserts rows `ids` (one body for all), the target receives them and rewrites their bodies
 * itself; later on the source an update of n only (bodies unchanged, not in the events), applied here as
 * partial updates that win over the target's own bodies: one `needs_repair` record each. Returns the
 * source's version of the last row after that update.
 */
async function sourceUpdateOverTargetBodies(dbs: TestDatabases, ids: readonly number[]) {
  await dbs.sql1(`INSERT INTO docs SELECT g, 0, ${BODY} FROM unnest($1::int[]) g`, [ids]);
  const v0 = await sourceRow(dbs, ids[0]!);
  await applyFromSource(
    dbs,
    v0.us,
    ids.map((id) => ({
      op: 'c' as const,
      schema: 'public',
      table: 'docs',
      after: { id: String(id), n: '0', body: null },
    })),
  );
  await dbs.sql2(`UPDATE docs SET body = 'written on the target' || ${BODY} WHERE id = ANY($1::int[])`, [
    ids,
  ]);
  await new Promise((r) => setTimeout(r, 5));
  await dbs.sql1('UPDATE docs SET n = 1 WHERE id = ANY($1::int[])', [ids]);
  const v1 = await sourceRow(dbs, ids.at(-1)!);
  assert.equal(
    await applyFromSource(
      dbs,
      v1.us,
      ids.map((id) => partial(id, 1)),
    ),
    ids.length,
  );
  return v1;
}

const RECORDS = `SELECT key->>'id' AS id, conflict_type, resolution FROM pgbisync.conflicts
  WHERE conflict_type IN ('update_missing', 'update_origin_differs') ORDER BY id`;

test('a row the target lacks comes back whole from the source, under the version the update described', async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  await dbs.sql1(`INSERT INTO docs VALUES (1, 0, ${BODY}), (2, 0, ${BODY})`);
  await dbs.sql1('UPDATE docs SET n = 1 WHERE id = 1');
  await dbs.sql1('UPDATE docs SET n = 1 WHERE id = 2');
  const one = await sourceRow(dbs, 1);
  const two = await sourceRow(dbs, 2);
  // Row 2 is deleted on the source after the event below: that later event settles it, not the repair.
  await dbs.sql1('DELETE FROM docs WHERE id = 2');
  // db2 lacks both rows (deleted there earlier, or never arrived): the updates cannot write them.
  assert.equal(await applyFromSource(dbs, one.us, [partial(1, 1)]), 1);
  assert.equal(await applyFromSource(dbs, two.us, [partial(2, 1)]), 1);
  assert.equal((await dbs.sql2('SELECT 1 FROM docs')).rowCount, 0);
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_missing', resolution: 'needs_repair' },
    { id: '2', conflict_type: 'update_missing', resolution: 'needs_repair' },
  ]);

  assert.deepEqual(await repair(dbs), { repaired: 1, superseded: 1, waiting: 0, held: 0 });
  // Row 1: whole, with the source's commit time and origin (so every node compares the same version).
  assert.deepEqual(
    (await dbs.sql2(VERSION, [1])).rows.map((r) => ({ ...r, us: BigInt(r.us) })),
    [{ us: one.us, n: 1, body: one.body }],
  );
  const origin = await dbs.sql2(
    `SELECT o.roname FROM docs t JOIN pg_replication_origin o
       ON o.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident WHERE t.id = 1`,
  );
  assert.deepEqual(origin.rows, [{ roname: `pgbisync_${source(dbs)}@${dbs.name}` }]);
  assert.equal((await dbs.sql2('SELECT 1 FROM docs WHERE id = 2')).rowCount, 0);
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_missing', resolution: 'repaired' },
    { id: '2', conflict_type: 'update_missing', resolution: 'superseded' },
  ]);
  // Nothing left: a second round does nothing.
  assert.deepEqual(await repair(dbs), { repaired: 0, superseded: 0, waiting: 0, held: 0 });
});

test("an update that wins over the target's own TOASTed value brings the source's value", async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  const v1 = await sourceUpdateOverTargetBodies(dbs, [1]);
  const differs = (await dbs.sql2(VERSION, [1])).rows[0];
  assert.equal(differs.n, 1);
  assert.notEqual(differs.body, v1.body, "the target's own body stayed");
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_origin_differs', resolution: 'needs_repair' },
  ]);

  // Another update of n on the source: once applied here the row is dated by the source, so it records
  // nothing; the first record must still bring the source's body.
  await dbs.sql1('UPDATE docs SET n = 2 WHERE id = 1');
  const v2 = await sourceRow(dbs, 1);
  // Not applied here yet: the source's row at v2 waits for it (older events of the source would
  // otherwise be replayed over it).
  assert.deepEqual(await repair(dbs), { repaired: 0, superseded: 0, waiting: 1, held: 0 });
  assert.notEqual((await dbs.sql2(VERSION, [1])).rows[0].body, v1.body);
  assert.equal(await applyFromSource(dbs, v2.us, [partial(1, 2)]), 0);

  assert.deepEqual(await repair(dbs), { repaired: 1, superseded: 0, waiting: 0, held: 0 });
  assert.deepEqual(
    (await dbs.sql2(VERSION, [1])).rows.map((r) => ({ ...r, us: BigInt(r.us) })),
    [{ us: v2.us, n: 2, body: v2.body }],
  );
  assert.equal(v2.body, v1.body);
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_origin_differs', resolution: 'repaired' },
  ]);
});

test('a repair loses to a write on the target newer than the event: the guarded upsert keeps it', async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  await dbs.sql1(`INSERT INTO docs VALUES (1, 0, ${BODY})`);
  await dbs.sql1('UPDATE docs SET n = 1 WHERE id = 1');
  const v1 = await sourceRow(dbs, 1);
  assert.equal(await applyFromSource(dbs, v1.us, [partial(1, 1)]), 1);
  // Before the repair runs, the target writes the key itself (later than the source's update).
  await dbs.sql2("INSERT INTO docs VALUES (1, 7, 'local')");
  assert.deepEqual(await repair(dbs), { repaired: 0, superseded: 1, waiting: 0, held: 0 });
  assert.deepEqual((await dbs.sql2('SELECT n, body FROM docs')).rows, [{ n: 7, body: 'local' }]);
  const records = await dbs.sql2('SELECT conflict_type, resolution FROM pgbisync.conflicts ORDER BY id');
  assert.deepEqual(records.rows, [
    { conflict_type: 'update_missing', resolution: 'superseded' },
    { conflict_type: 'update_origin_differs', resolution: 'keep_local' },
  ]);
});

test("a key's repair waits while the target holds the source's version; the source's key change then brings the body", async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  await sourceUpdateOverTargetBodies(dbs, [1]);
  // The source moves the row to key 2 before the repair of key 1 runs: it has no row at key 1 any more,
  // while the target still holds the row the partial update dated, with its own body. Resolved
  // (superseded) now, the key change below would move that body to key 2 and record nothing: the
  // torture test's seed 3 ended so.
  await dbs.sql1('UPDATE docs SET id = 2 WHERE id = 1');
  const moved = await sourceRow(dbs, 2);
  assert.deepEqual(await repair(dbs), { repaired: 0, superseded: 0, waiting: 1, held: 1 });
  const keyChange: RowChange = {
    op: 'u',
    schema: 'public',
    table: 'docs',
    beforeKey: { id: '1' },
    after: { id: '2', n: '1', body: UNCHANGED },
  };
  assert.ok((await applyFromSource(dbs, moved.us, [keyChange])) >= 1, 'the new key recorded');
  assert.deepEqual(await repair(dbs), { repaired: 1, superseded: 1, waiting: 0, held: 0 });
  assert.deepEqual((await dbs.sql2('SELECT id::int, n, md5(body) AS body FROM docs ORDER BY id')).rows, [
    { id: 2, n: 1, body: moved.body },
  ]);
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_origin_differs', resolution: 'superseded' },
    { id: '2', conflict_type: 'update_origin_differs', resolution: 'repaired' },
  ]);
});

test('a held record is superseded once the direction applied a later source transaction: the settling change is not coming', async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  await sourceUpdateOverTargetBodies(dbs, [1]);
  // The source deletes the row; its event never reaches the target (lost, as in a lost slot's gap).
  await dbs.sql1('DELETE FROM docs WHERE id = 1');
  const held = new Map<string, string>();
  assert.deepEqual(await repair(dbs, held), { repaired: 0, superseded: 0, waiting: 1, held: 1 });
  assert.deepEqual(await repair(dbs, held), { repaired: 0, superseded: 0, waiting: 1, held: 1 });
  // A later source transaction applied here: every source change before it was, so the record stops waiting.
  await dbs.sql1(`INSERT INTO docs VALUES (5, 0, 'later')`);
  const later = await sourceRow(dbs, 5);
  await applyFromSource(dbs, later.us, [
    { op: 'c', schema: 'public', table: 'docs', after: { id: '5', n: '0', body: 'later' } },
  ]);
  assert.deepEqual(await repair(dbs, held), { repaired: 0, superseded: 1, waiting: 0, held: 0 });
  assert.equal(held.size, 0);
  assert.deepEqual((await dbs.sql2(RECORDS)).rows, [
    { id: '1', conflict_type: 'update_origin_differs', resolution: 'superseded' },
  ]);
});

test('held records do not keep later records from their repair: rounds page past them', async () => {
  await using dbs = await createTestDatabases('toastrepair');
  await prepare(dbs);
  // 101 rows: the first 100 will be held (a page of records), the last one repairable.
  const v1 = await sourceUpdateOverTargetBodies(
    dbs,
    Array.from({ length: 101 }, (_, i) => i + 1),
  );
  // The source deletes the first 100 (their events not applied yet here): held; row 101 is repairable.
  await dbs.sql1('DELETE FROM docs WHERE id <= 100');
  assert.deepEqual(await repair(dbs), { repaired: 1, superseded: 0, waiting: 100, held: 100 });
  assert.equal((await dbs.sql2(VERSION, [101])).rows[0].body, v1.body);
});
