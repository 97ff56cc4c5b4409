/**
 * Runs of one-statement transactions applied as one CALL (./apply-procedures.ts) against a real server:
 * each is still its own target transaction, with its source commit time, the source's origin and its
 * progress; conflicts are counted; a failure inside the call commits what came before it, nothing after.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeError } from '../runtime/errors.ts';
import { createTestDatabases, type TestDatabases, withPgbisyncSchema } from '../testing/test-databases.ts';
import { writerFor } from '../testing/writer-race.ts';
import type { ApplyTransaction, RowChange } from './apply-model.ts';

const T0_US = 1_764_400_000_000_000n;

function txn(i: number, change: RowChange): ApplyTransaction {
  return {
    sourceNode: 'src',
    commitLsn: BigInt(0x1000 + i),
    commitTimeUs: T0_US + BigInt(i),
    lsnOrdered: true,
    snapshot: false,
    changes: [change],
    topic: 'pgbisync.src',
    partition: 0,
    lastOffset: BigInt(10 * i),
  };
}
const item = (op: 'c' | 'u', id: string, n: string): RowChange => ({
  op,
  schema: 'public',
  table: 'items',
  after: { id, n },
});
const remove = (id: string): RowChange => ({ op: 'd', schema: 'public', table: 'items', beforeKey: { id } });

/** items on db2 with the pgbisync schema and the tombstone trigger `setup` leaves on a synced table. */
async function items(dbs: TestDatabases): Promise<void> {
  await withPgbisyncSchema(dbs.db2);
  await dbs.sql2('CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)');
  await dbs.sql2(
    "CREATE TRIGGER pgbisync_tombstone AFTER DELETE ON public.items FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone('id')",
  );
}

/** The apply procedures the writer's session made (in its temporary schema). */
async function procedures(dbs: TestDatabases): Promise<number> {
  const r = await dbs.sql2(
    `SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace
      WHERE s.nspname LIKE 'pg_temp%' AND p.proname LIKE 'pgbisync_apply_%'`,
  );
  return r.rows[0].n;
}

test('a run of one-row transactions is one CALL, each still its own transaction with its commit time and origin', async () => {
  await using dbs = await createTestDatabases('calls');
  await items(dbs);
  // A local row newer than the source's insert of the same key: a conflict, the local row kept.
  await dbs.sql2('INSERT INTO items VALUES (7, 70)');
  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    const batch = [
      txn(1, item('c', '1', '1')),
      txn(2, item('c', '2', '2')),
      txn(3, item('c', '3', '3')),
      txn(4, item('u', '1', '10')),
      txn(5, remove('2')),
      txn(6, item('c', '7', '7')),
      txn(7, item('c', '4', '4')),
    ];
    assert.deepEqual(await writer.apply(batch), { applied: 7, skipped: 0, conflicts: 1 });
    assert.equal(await procedures(dbs), 1, 'the run went out as a procedure call');
  } finally {
    await writer.close();
  }
  const rows = await dbs.sql2(
    `SELECT id::int, n, (extract(epoch FROM c.timestamp) * 1000000)::bigint::text AS us,
            o.roname = 'pgbisync_src@' || current_database() AS from_source, xmin::text AS xid
       FROM items, pg_xact_commit_timestamp_origin(xmin) c LEFT JOIN pg_replication_origin o ON o.roident = c.roident
      ORDER BY id`,
  );
  const applied = rows.rows.filter((r) => r.id !== 7);
  assert.deepEqual(
    applied.map((r) => [r.id, r.n, r.us, r.from_source]),
    [
      [1, 10, String(T0_US + 4n), true],
      [3, 3, String(T0_US + 3n), true],
      [4, 4, String(T0_US + 7n), true],
    ],
    'each row is dated by its own source transaction, under the origin',
  );
  assert.equal(new Set(applied.map((r) => r.xid)).size, 3, 'one target transaction per source transaction');
  assert.deepEqual(
    rows.rows.filter((r) => r.id === 7).map((r) => [r.n, r.from_source]),
    [[70, null]],
  );
  const tombstones = await dbs.sql2('SELECT key::text FROM pgbisync.tombstones');
  assert.deepEqual(tombstones.rows, [{ key: '{"id": 2}' }], 'the delete left its tombstone');
  const progress = await dbs.sql2(
    'SELECT next_offset::int AS next, commit_lsn::text AS lsn FROM pgbisync.apply_progress',
  );
  assert.deepEqual(progress.rows, [{ next: 71, lsn: '0/1007' }]);
});

test('a transaction failing inside a CALL leaves those before it committed and none after; a new writer resumes there', async () => {
  await using dbs = await createTestDatabases('calls');
  await items(dbs);
  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    const batch = [1, 2, 3, 4, 5].map((i) => txn(i, item('c', String(i), i === 3 ? 'three' : String(i))));
    await assert.rejects(writer.apply(batch), (error: unknown) => {
      assert.match(describeError(error), /invalid input syntax for type integer/);
      return true;
    });
    assert.equal(await procedures(dbs), 1, 'the run went out as a procedure call');
  } finally {
    await writer.close();
  }
  assert.deepEqual((await dbs.sql2('SELECT id::int FROM items ORDER BY id')).rows, [{ id: 1 }, { id: 2 }]);
  const progress = await dbs.sql2('SELECT next_offset::int AS next FROM pgbisync.apply_progress');
  assert.deepEqual(progress.rows, [{ next: 21 }]);
  const again = writerFor(dbs.db2);
  try {
    assert.equal((await again.open())?.nextOffset, 21n);
    const rest = [3, 4, 5].map((i) => txn(i, item('c', String(i), String(i))));
    assert.deepEqual(await again.apply(rest), { applied: 3, skipped: 0, conflicts: 0 });
  } finally {
    await again.close();
  }
  assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 5);
});
