/**
 * The torture history's in-doubt commits (./workload.ts): a COMMIT whose answer was lost is decided by
 * the transaction's own marker row, not by its transaction id, which a crash that lost the WAL using it
 * gives again to another transaction (long seed 11 counted such a reused id's commit as its own).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { createTestDatabases } from '../src/testing/test-databases.ts';
import { COMMIT_MARKERS, COMMIT_MARKERS_DDL, History } from './workload.ts';

interface Committed {
  readonly xid: string;
  readonly token: string;
  readonly us: string;
}

async function commitWithMarker(url: string): Promise<Committed> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('BEGIN');
    const xid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    const token = randomUUID();
    await c.query(`INSERT INTO ${COMMIT_MARKERS} VALUES ($1)`, [token]);
    await c.query('COMMIT');
    const us = await c.query<{ us: string }>(
      'SELECT (extract(epoch FROM pg_xact_commit_timestamp($1::xid8::xid)) * 1000000)::bigint::text AS us',
      [xid],
    );
    return { xid, token, us: us.rows[0]!.us };
  } finally {
    await c.end();
  }
}

test('an in-doubt commit counts as committed only when its own marker is there', async () => {
  await using dbs = await createTestDatabases('torture_history');
  await dbs.sql1(COMMIT_MARKERS_DDL);
  const dir = mkdtempSync(join(tmpdir(), 'torture-history-'));
  try {
    const history = new History(join(dir, 'history.jsonl'));
    const mine = await commitWithMarker(dbs.db1);
    const other = await commitWithMarker(dbs.db1);
    const open = new pg.Client({ connectionString: dbs.db1 });
    await open.connect();
    try {
      await open.query('BEGIN');
      const openXid = (await open.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      const future = (BigInt(openXid) + 1_000_000n).toString();
      const inDoubt = (xid: string, token: string) => ({ node: 'n1', xid, token, writes: [], truncated: [] });
      history.inDoubt.push(
        inDoubt(mine.xid, mine.token),
        // The id committed, but another transaction had it: this one's marker is not there.
        inDoubt(other.xid, randomUUID()),
        // An id the server has not reached (its WAL lost in a crash): did not commit.
        inDoubt(future, randomUUID()),
        // Still in progress: asked again later.
        inDoubt(openXid, randomUUID()),
      );
      assert.equal(await history.resolveInDoubt(() => dbs.db1), 1);
      assert.deepEqual(
        history.transactions.map((t) => ({ xid: t.xid, us: t.us.toString() })),
        [{ xid: mine.xid, us: mine.us }],
      );
      await open.query('ROLLBACK');
      assert.equal(await history.resolveInDoubt(() => dbs.db1), 0);
      assert.equal(history.transactions.length, 1);
      assert.equal(history.counts.committed, 1);
    } finally {
      await open.end();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
