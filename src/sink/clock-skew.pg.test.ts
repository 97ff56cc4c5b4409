/**
 * Clock skew on real servers (../conflicts/clock-skew.ts). Node a's clock runs ahead: its version of a
 * row carries a commit time in b's future (made here with pg_replication_origin_xact_setup under an origin
 * that is not pgbisync's, so it reads as a's own local write at that time). b applies it, then updates
 * the row locally at once; the update, applied back to a, must win there too. It used to lose: b's clock
 * stamped its update before the version it replaced, so a kept its version and b the update.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { readClockOffset, skewMs, skewWarning } from '../conflicts/clock-skew.ts';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { ErrorCode, PgbisyncError } from '../runtime/errors.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import type { ApplyTransaction, RowChange } from './apply-model.ts';
import { TransactionWriter } from './transaction-writer.ts';

const AHEAD_MS = 1_500;

function txn(source: string, commitTimeUs: bigint, lsn: number, change: RowChange): ApplyTransaction {
  return {
    sourceNode: source,
    commitLsn: BigInt(lsn),
    commitTimeUs,
    lsnOrdered: true,
    snapshot: false,
    changes: [change],
    topic: `pgbisync.${source}`,
    partition: 0,
    lastOffset: BigInt(lsn),
  };
}

const upsert = (op: 'c' | 'u', v: string): RowChange => ({
  op,
  schema: 'public',
  table: 'item',
  after: { id: '1', v },
});

async function withClient<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await f(client);
  } finally {
    await client.end();
  }
}

const writer = (url: string, source: string, target: string, maxClockSkewMs = 5_000) =>
  new TransactionWriter({
    url,
    sourceNode: source,
    targetNode: target,
    policyFor: () => ({ policy: 'last-writer-wins' }),
    maxClockSkewMs,
  });

/** Commit time of the row's version, in microseconds. */
async function versionUs(url: string): Promise<bigint> {
  return await withClient(url, async (c) => {
    const r = await c.query<{ us: string }>(
      'SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us FROM item',
    );
    return BigInt(r.rows[0]!.us);
  });
}

test('a local write after an applied version from a clock running ahead wins on both nodes', async () => {
  await using dbs = await createTestDatabases('skew');
  const a = `${dbs.name}_a`;
  const b = `${dbs.name}_b`;
  for (const url of [dbs.db1, dbs.db2]) {
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY, v text NOT NULL)');
      await ensurePgbisyncSchema(c);
    });
  }
  // a writes the row with its clock AHEAD_MS ahead of b's (both servers share this host's clock).
  const futureUs = BigInt(Date.now() + AHEAD_MS) * 1000n;
  const futureIso = new Date(Number(futureUs / 1000n)).toISOString();
  await withClient(dbs.db1, async (c) => {
    await c.query(`SELECT pg_replication_origin_create('skewclock_${dbs.name}')`);
    await c.query(`SELECT pg_replication_origin_session_setup('skewclock_${dbs.name}')`);
    await c.query('BEGIN');
    await c.query("SELECT pg_replication_origin_xact_setup('0/1', $1::timestamptz)", [futureIso]);
    await c.query("INSERT INTO item VALUES (1, 'a')");
    await c.query('COMMIT');
    await c.query('SELECT pg_replication_origin_session_reset()');
    // Kept until the database's cleanup: a dropped origin's id is reused by the next one created.
  });
  assert.equal(await versionUs(dbs.db1), futureUs);

  // b applies it, then updates the row locally as soon as it sees it.
  const toB = writer(dbs.db2, a, b);
  const started = Date.now();
  try {
    await toB.open();
    await toB.apply([txn(a, futureUs, 0x100, upsert('c', 'a'))]);
  } finally {
    await toB.close();
  }
  const waitedMs = Date.now() - started;
  const local = await withClient(dbs.db2, async (c) => {
    await c.query("UPDATE item SET v = 'b' WHERE id = 1");
    return (await c.query<{ v: string }>('SELECT v FROM item')).rows[0]!.v;
  });
  assert.equal(local, 'b');
  const updateUs = await versionUs(dbs.db2);
  assert.ok(
    updateUs > futureUs,
    `b's update (${updateUs}) is stamped after the version it replaced (${futureUs})`,
  );
  assert.ok(waitedMs >= AHEAD_MS - 200, `the applier waited for b's clock (${waitedMs} ms)`);

  // b's update reaches a: it must replace a's version there too.
  const toA = writer(dbs.db1, b, a);
  try {
    await toA.open();
    await toA.apply([txn(b, updateUs, 0x200, upsert('u', 'b'))]);
  } finally {
    await toA.close();
  }
  const onA = await dbs.sql1('SELECT v FROM item');
  assert.deepEqual(onA.rows, [{ v: 'b' }], 'both nodes hold b');
  const conflict = await dbs.sql1('SELECT conflict_type, resolution FROM pgbisync.conflicts');
  assert.deepEqual(conflict.rows, [{ conflict_type: 'update_origin_differs', resolution: 'apply_remote' }]);
});

test('a commit time further ahead than conflicts.maxClockSkewMs blocks the direction (PGB4004), nothing applied', async () => {
  await using dbs = await createTestDatabases('skewmax');
  await withClient(dbs.db2, async (c) => {
    await c.query('CREATE TABLE item (id int PRIMARY KEY, v text NOT NULL)');
    await ensurePgbisyncSchema(c);
  });
  // Nodes named after the database: its cleanup drops their origins.
  const a = `${dbs.name}_a`;
  const b = `${dbs.name}_b`;
  const w = writer(dbs.db2, a, b, 1_000);
  try {
    await w.open();
    const farUs = BigInt(Date.now() + 60_000) * 1000n;
    await assert.rejects(w.apply([txn(a, farUs, 0x100, upsert('c', 'far'))]), (error: unknown) => {
      assert.ok(error instanceof PgbisyncError);
      assert.equal(error.code, ErrorCode.CLOCK_SKEW);
      assert.match(
        error.message,
        new RegExp(
          `^${a}'s transaction committed at .* is \\d+ ms ahead of ${b}'s clock, over conflicts\\.maxClockSkewMs=1000$`,
        ),
      );
      assert.match(error.hint ?? '', new RegExp(`synchronize the clocks of ${a} and ${b}`));
      return true;
    });
  } finally {
    await w.close();
  }
  assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM item')).rows[0].n, 0);
  // A commit time in the past is not delayed.
  const again = writer(dbs.db2, a, b, 1_000);
  try {
    await again.open();
    const started = Date.now();
    await again.apply([txn(a, BigInt(Date.now() - 5) * 1000n, 0x100, upsert('c', 'now'))]);
    assert.ok(Date.now() - started < 500);
  } finally {
    await again.close();
  }
});

test("a server's clock offset is measured as a range holding the host's own clock", async () => {
  // The test servers run on this host: their offset is 0, within the measured range.
  await using dbs = await createTestDatabases('clock');
  await withClient(dbs.db1, async (c) => {
    const o = await readClockOffset(c);
    assert.ok(o.lowMs <= 1 && o.highMs >= -1, JSON.stringify(o));
    assert.ok(o.highMs - o.lowMs < 1_000, JSON.stringify(o));
    assert.equal(skewMs(o, o), 0);
  });
  assert.equal(skewWarning('a', 'b', 400, 500), undefined);
  assert.match(
    skewWarning('a', 'b', 1_200, 500) ?? '',
    /^clock of a is 1200 ms ahead of b's \(over conflicts\.maxClockSkewMs=500\)/,
  );
  assert.match(skewWarning('a', 'b', -900, 500) ?? '', /^clock of a is 900 ms behind b's/);
});
