import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunks } from './applier.ts';
import type { ApplyTransaction } from './apply-model.ts';

const txn = (rows: number): ApplyTransaction => ({
  sourceNode: 'a',
  commitLsn: 1n,
  commitTimeUs: 1n,
  lsnOrdered: true,
  snapshot: false,
  changes: Array.from({ length: rows }, () => ({ op: 'c' as const, schema: 'public', table: 't' })),
  topic: 't',
  partition: 0,
  lastOffset: 0n,
});

test('chunks bound transactions and rows, never splitting a transaction', () => {
  const sizes = (txns: ApplyTransaction[], maxTxns: number, maxRows: number) =>
    [...chunks(txns, maxTxns, maxRows)].map((c) => c.map((t) => t.changes.length));
  assert.deepEqual(sizes([txn(1), txn(1), txn(1)], 2, 100), [[1, 1], [1]]);
  assert.deepEqual(sizes([txn(3), txn(3), txn(3)], 10, 6), [[3, 3], [3]]);
  assert.deepEqual(sizes([txn(50), txn(1)], 10, 10), [[50], [1]]);
  assert.deepEqual(sizes([], 10, 10), []);
});
