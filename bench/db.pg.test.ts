/**
 * The bench's load generators do what the report says they do: the steady writer's changes are one row
 * each (an update that scanned the table and matched several rows, or none, made the writers' rate a
 * measure of table scans and hid the backlog behind them, docs/performance.md, twenty-sixth session).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTestDatabases } from '../src/testing/test-databases.ts';
import { PROCEDURES_SQL, TABLES_SQL } from './db.ts';

test('bench_steady: every change is one row (2 inserts, 2 updates, 1 delete in 5), numbered once', async () => {
  await using dbs = await createTestDatabases('bench');
  await dbs.sql1(TABLES_SQL);
  await dbs.sql1(PROCEDURES_SQL);
  const r = await dbs.sql1('CALL bench_steady($1, $2, $3, $4)', [5_000, 1, 1_000, 1_000]);
  const changes = Number(r.rows[0]?.changes);
  // A loaded CI machine writes fewer; 100 changes hold 40 updates, enough to catch one that wrote two rows.
  assert.ok(changes >= 100, `the writer wrote ${changes} changes in 1 s`);
  const rows = await dbs.sql1(
    `SELECT count(*)::int AS n, count(DISTINCT seq)::int AS seqs, min(id)::int AS first, max(id)::int AS last
       FROM steady`,
  );
  const { n, seqs, first, last } = rows.rows[0] as { n: number; seqs: number; first: number; last: number };
  const inserts = Math.floor(changes / 5) * 2 + Math.min(changes % 5, 2);
  const deletes = Math.floor(changes / 5);
  // Inserts add ids in order, deletes take the oldest: what is left is exactly the ids between.
  assert.equal(n, inserts - deletes);
  assert.equal(first, 1_000 + deletes);
  assert.equal(last, 1_000 + inserts - 1);
  // Each change numbers the one row it wrote: no two rows share a number.
  assert.equal(seqs, n, `${n - seqs} rows share their seq with another (an update wrote several rows)`);
});
