/**
 * The applier's upsert into a partitioned table (./row-version-sql.ts): ON CONFLICT's row and RETURNING
 * have no system columns there, so the guard reads the locked version by key and a key the snapshot saw
 * is locked before the insert. Races with local writes end as they do on an ordinary table: a
 * serialization failure, then the transaction applied again resolves by last-writer-wins.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { applyAgain, raceLocal } from '../testing/writer-race.ts';
import type { ApplyTransaction } from './apply-model.ts';

const T0_US = 1_764_400_000_000_000n;

function upsertOf(i: number, id: string, n: string, commitTimeUs = T0_US + BigInt(i)): ApplyTransaction {
  return {
    sourceNode: 'src',
    commitLsn: BigInt(0x1000 + i),
    commitTimeUs,
    lsnOrdered: true,
    snapshot: false,
    changes: [{ op: 'c', schema: 'public', table: 'items', after: { id, n } }],
    topic: 'pgbisync.src',
    partition: 0,
    lastOffset: BigInt(10 * i),
  };
}

/** items partitioned in two, with the tombstone trigger as `pgbisync setup` puts it. */
async function partitionedItems(dbs: TestDatabases): Promise<void> {
  await dbs.sql2(`CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL) PARTITION BY RANGE (id);
    CREATE TABLE items_low PARTITION OF items FOR VALUES FROM (MINVALUE) TO (100);
    CREATE TABLE items_high PARTITION OF items DEFAULT`);
  const client = new pg.Client({ connectionString: dbs.db2 });
  await client.connect();
  try {
    await ensurePgbisyncSchema(client);
  } finally {
    await client.end();
  }
  await dbs.sql2(
    "CREATE TRIGGER pgbisync_tombstone AFTER DELETE ON public.items FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone('id')",
  );
}

test('partitioned target: an upsert racing a local delete of its row is refused for a retry, which keeps the later delete', async () => {
  await using dbs = await createTestDatabases('writer');
  await partitionedItems(dbs);
  await dbs.sql2('INSERT INTO items VALUES (1, 0)');
  const txn = upsertOf(1, '1', '1');
  await raceLocal(
    dbs,
    'DELETE FROM items WHERE id = 1',
    txn,
    /public\.items \{"id": 1\} was deleted by a concurrent transaction/,
  );
  assert.deepEqual(await applyAgain(dbs, txn), { applied: 1, skipped: 0, conflicts: 1 });
  assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 0);
  const conflicts = await dbs.sql2('SELECT conflict_type, resolution FROM pgbisync.conflicts');
  assert.deepEqual(conflicts.rows, [{ conflict_type: 'update_deleted', resolution: 'keep_deleted' }]);
});

test('partitioned target: an upsert racing a local insert of its key is refused for a retry, which keeps the later insert', async () => {
  await using dbs = await createTestDatabases('writer');
  await partitionedItems(dbs);
  const txn = upsertOf(1, '150', '1');
  await raceLocal(
    dbs,
    'INSERT INTO items VALUES (150, 9)',
    txn,
    /public\.items \{"id": 150\} was inserted by a concurrent transaction/,
  );
  // Applied again, the guard reads the local row's version (newer than T0): the local row stays.
  assert.deepEqual(await applyAgain(dbs, txn), { applied: 1, skipped: 0, conflicts: 1 });
  assert.deepEqual((await dbs.sql2('SELECT id::int, n FROM items')).rows, [{ id: 150, n: 9 }]);
  const conflicts = await dbs.sql2(
    "SELECT conflict_type, resolution, local_row ->> 'n' AS n FROM pgbisync.conflicts",
  );
  assert.deepEqual(conflicts.rows, [{ conflict_type: 'insert_exists', resolution: 'keep_local', n: '9' }]);
  // A newer incoming version replaces it, in its partition; the source's own next write needs no guard.
  const newer = upsertOf(2, '150', '2', BigInt(Date.now() + 1000) * 1000n);
  assert.deepEqual(await applyAgain(dbs, newer), { applied: 1, skipped: 0, conflicts: 1 });
  assert.deepEqual(await applyAgain(dbs, upsertOf(3, '150', '3', T0_US)), {
    applied: 1,
    skipped: 0,
    conflicts: 0,
  });
  assert.deepEqual((await dbs.sql2('SELECT tableoid::regclass::text AS p, id::int, n FROM items')).rows, [
    { p: 'items_high', id: 150, n: 3 },
  ]);
});
