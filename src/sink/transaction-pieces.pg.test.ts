/**
 * A source transaction applied in pieces (ApplyTransaction.piece, cut by ./transaction-grouper.ts):
 * one open target transaction, invisible until its last piece commits it with the position after the
 * whole source transaction; a failure anywhere rolls every piece back; a re-published one is rolled back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { describeError } from '../runtime/errors.ts';
import { createTestDatabases, nodeOfDatabase } from '../testing/test-databases.ts';
import type { ApplyTransaction, RowChange } from './apply-model.ts';
import { TransactionWriter } from './transaction-writer.ts';

const T0_US = 1_764_400_000_000_000n;

const insert = (id: number, n: string): RowChange => ({
  op: 'c',
  schema: 'public',
  table: 'items',
  after: { id: String(id), n },
});

/** Source transaction `i` (commit LSN 0x1000 + i) as pieces of `perPiece` rows of `changes`. */
function pieces(
  i: number,
  changes: readonly RowChange[],
  perPiece: number,
  offset = 100,
): ApplyTransaction[] {
  const out: ApplyTransaction[] = [];
  for (let at = 0; at < changes.length; at += perPiece) {
    const last = at + perPiece >= changes.length;
    out.push({
      sourceNode: 'src',
      commitLsn: last ? BigInt(0x1000 + i) : 0n,
      lsnOrdered: last,
      commitTimeUs: T0_US + BigInt(i),
      snapshot: false,
      changes: changes.slice(at, at + perPiece),
      topic: 'pgbisync.src',
      partition: 0,
      lastOffset: BigInt(offset + Math.min(at + perPiece, changes.length) - 1),
      piece: last ? 'last' : at === 0 ? 'first' : 'middle',
    });
  }
  return out;
}

async function setup(url: string): Promise<TransactionWriter> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)');
    await ensurePgbisyncSchema(client);
  } finally {
    await client.end();
  }
  return new TransactionWriter({
    url,
    targetNode: nodeOfDatabase(url),
    sourceNode: 'src',
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
}

const rows = Array.from({ length: 10 }, (_, i) => insert(i + 1, String(i + 1)));

test('pieces of one source transaction commit as one target transaction, with the last piece', async () => {
  await using dbs = await createTestDatabases('pieces');
  const writer = await setup(dbs.db2);
  const [p1, p2, p3, p4] = pieces(1, rows, 3);
  try {
    await writer.open();
    // The first pieces are written (their statements succeed) but nothing is visible or counted.
    const early = await writer.apply([p1!, p2!]);
    assert.deepEqual(early, { applied: 0, skipped: 0, conflicts: 0 });
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 0);
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM pgbisync.apply_progress')).rows[0].n, 0);
    const done = await writer.apply([p3!, p4!]);
    assert.deepEqual(done, { applied: 1, skipped: 0, conflicts: 0 });
  } finally {
    await writer.close();
  }
  const applied = await dbs.sql2(
    `SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS txns,
            min((extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint)::text AS us FROM items`,
  );
  assert.deepEqual(applied.rows, [{ n: 10, txns: 1, us: String(T0_US + 1n) }]);
  const progress = await dbs.sql2(
    'SELECT next_offset::int AS next, commit_lsn::text AS lsn FROM pgbisync.apply_progress',
  );
  assert.deepEqual(progress.rows, [{ next: 110, lsn: '0/1001' }], 'after the whole source transaction');
});

test('a failure in a later piece rolls every piece back; read again from its first record it applies once', async () => {
  await using dbs = await createTestDatabases('pieces');
  const writer = await setup(dbs.db2);
  const bad = rows.map((r, i) => (i === 8 ? insert(9, 'x') : r));
  try {
    await writer.open();
    await assert.rejects(
      (async () => {
        for (const piece of pieces(1, bad, 3)) await writer.apply([piece]);
      })(),
      (error: unknown) => /invalid input syntax for type integer/.test(describeError(error)),
    );
  } finally {
    await writer.close();
  }
  assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 0, 'no piece committed');
  assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM pgbisync.apply_progress')).rows[0].n, 0);
  // The applier restarts from the stored position (none: the topic's start), i.e. the transaction's
  // first record, and gets the whole transaction again.
  const again = await setup2(dbs.db2);
  try {
    assert.equal(await again.open(), undefined);
    for (const piece of pieces(1, rows, 3)) await again.apply([piece]);
  } finally {
    await again.close();
  }
  const applied = await dbs.sql2('SELECT count(*)::int AS n, sum(n)::int AS total FROM items');
  assert.deepEqual(applied.rows, [{ n: 10, total: 55 }]);
});

test('a re-published transaction applied in pieces is rolled back whole at its last piece; only the position moves', async () => {
  await using dbs = await createTestDatabases('pieces');
  const writer = await setup(dbs.db2);
  try {
    await writer.open();
    for (const piece of pieces(5, rows, 4)) await writer.apply([piece]);
    // The capture restarted and published transaction 5 again, later in the topic, with other values
    // (as a changed source would have them if it were a different transaction; it is not: same LSN).
    const changed = rows.map((_, i) => insert(i + 1, String(100 + i)));
    const counts = await writer.apply(pieces(5, changed, 4, 200));
    assert.deepEqual(counts, { applied: 0, skipped: 1, conflicts: 0 });
  } finally {
    await writer.close();
  }
  const applied = await dbs.sql2('SELECT count(*)::int AS n, sum(n)::int AS total FROM items');
  assert.deepEqual(applied.rows, [{ n: 10, total: 55 }], 'the duplicate changed nothing');
  const progress = await dbs.sql2('SELECT next_offset::int AS next FROM pgbisync.apply_progress');
  assert.deepEqual(progress.rows, [{ next: 210 }], 'the position moved past the duplicate');
});

/** Another writer on a database `setup` already prepared. */
function setup2(url: string): TransactionWriter {
  return new TransactionWriter({
    url,
    targetNode: nodeOfDatabase(url),
    sourceNode: 'src',
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
}

test('pieces of a transaction the grouper abandoned are rolled back before its new first piece, or a whole one', async () => {
  await using dbs = await createTestDatabases('pieces');
  const writer = await setup(dbs.db2);
  const stale = rows.map((_, i) => insert(i + 1, String(1000 + i)));
  try {
    await writer.open();
    // Two pieces of transaction 1 (stale values), then transaction 1 again from a first piece.
    const [s1, s2] = pieces(1, stale, 3);
    await writer.apply([s1!, s2!]);
    for (const piece of pieces(1, rows, 4)) await writer.apply([piece]);
    // A piece of transaction 2, abandoned, then transaction 2 whole (it fits in one).
    const [t2] = pieces(2, [insert(50, '7'), insert(51, '7'), insert(52, '7')], 2);
    await writer.apply([t2!]);
    const { piece: _piece, ...whole } = pieces(2, [insert(60, '9')], 5)[0]!;
    assert.deepEqual(await writer.apply([whole]), { applied: 1, skipped: 0, conflicts: 0 });
  } finally {
    await writer.close();
  }
  const applied = await dbs.sql2('SELECT count(*)::int AS n, sum(n)::int AS total FROM items');
  assert.deepEqual(
    applied.rows,
    [{ n: 11, total: 55 + 9 }],
    'only the republished transaction 1 and the whole 2',
  );
});
