import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { transactionEndHeaders } from '../kafka/wire-headers.ts';
import { BlockedError } from '../runtime/errors.ts';
import { chunks } from './applier.ts';
import type { ApplyTransaction } from './apply-model.ts';
import { checkWireVersion } from './record-guard.ts';

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

test('a record of a newer or unreadable wire version blocks the direction, naming it; older ones pass', () => {
  const record = (offset: bigint, headers: [string, string][]): InRecord => ({
    topic: 'pgbisync.a',
    partition: 0,
    offset,
    key: null,
    value: Buffer.from('{}'),
    headers: new Map(headers),
    timestampMs: 0,
  });
  const current = [
    record(1n, []), // a capture from before the header: version 1
    record(2n, Object.entries(transactionEndHeaders(0x10n))),
    record(3n, [['pgbisync.wire', '1']]),
    record(4n, [['pgbisync.wire', '2']]), // strings whose encoding the schema names
    record(5n, [['pgbisync.wire', '3']]), // the source identity on a transaction's end
    record(6n, [['pgbisync.wire', '4']]), // a row batch of the initial copy
    record(7n, [['pgbisync.wire', '5']]), // the capture run on a transaction's first record
  ];
  checkWireVersion(current, 'a', 'b');
  for (const value of ['6', 'two', '']) {
    assert.throws(
      () => checkWireVersion([...current, record(8n, [['pgbisync.wire', value]]), record(9n, [])], 'a', 'b'),
      (error: unknown) => {
        assert.ok(error instanceof BlockedError, `wire '${value}'`);
        assert.equal(error.code, 'PGB3102');
        assert.equal(
          error.message,
          `applying a -> b: record pgbisync.a[0]@8 has wire version '${value}' (header pgbisync.wire); this pgbisync reads versions up to 5`,
        );
        assert.match(error.hint ?? '', /resumes from the same record/);
        return true;
      },
    );
  }
});
