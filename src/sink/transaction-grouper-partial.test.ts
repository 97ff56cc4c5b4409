/**
 * A capture that stops mid-transaction leaves the transaction's first records in the topic without its
 * end marker: killed (its successor then sends the transaction again from its start), or frozen and
 * fenced off by a takeover (on waking it sends what it had buffered, after its successor's newer
 * transactions). Either way the part must never be applied on its own or glued to another transaction:
 * applied after newer ones, its old row versions would replace them (same source: no conflict check).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { COMMIT_LSN_HEADER, LAST_HEADER, LAST_VALUE } from '../kafka/wire-headers.ts';
import { type DecodedChange, TransactionGrouper } from './transaction-grouper.ts';

/** A change `id` of source transaction `txId` at WAL position `lsn`; `commitLsn` marks the last one. */
function record(offset: number, id: string, txId: string, lsn: number, commitLsn?: string): InRecord {
  return {
    topic: 'pgbisync.a',
    partition: 0,
    offset: BigInt(offset),
    key: Buffer.from(id),
    value: Buffer.from(JSON.stringify({ id, txId, lsn })),
    headers:
      commitLsn === undefined
        ? new Map()
        : new Map([
            [LAST_HEADER, LAST_VALUE],
            [COMMIT_LSN_HEADER, commitLsn],
          ]),
    timestampMs: 0,
  };
}

const decode = (r: InRecord): DecodedChange => {
  const v = JSON.parse(r.value!.toString()) as { id: string; txId: string; lsn: number };
  return {
    change: { op: 'c', schema: 'public', table: 't', after: { id: v.id } },
    lsn: BigInt(v.lsn),
    txId: v.txId,
    commitTimeUs: 1n,
    snapshot: false,
  };
};

const grouped = (records: InRecord[]) => {
  const grouper = new TransactionGrouper('a', decode, () => assert.fail('nothing is malformed'));
  return grouper
    .add(records)
    .map((t) => [t.changes.map((c) => c.after?.id).join(','), t.commitLsn.toString(16), t.lastOffset]);
};

test('a part of a transaction sent again from its start is dropped, the re-send applied once', () => {
  assert.deepEqual(
    grouped([
      record(1, 'x1', '7', 0x100),
      record(2, 'x2', '7', 0x110),
      // The capture was killed; its successor sends transaction 7 again.
      record(3, 'x1', '7', 0x100),
      record(4, 'x2', '7', 0x110),
      record(5, 'x3', '7', 0x120, '0/130'),
    ]),
    [['x1,x2,x3', '130', 5n]],
  );
});

test('a stale part arriving after newer transactions is dropped, not applied alone or with the next one', () => {
  assert.deepEqual(
    grouped([
      record(1, 'x1', '7', 0x100),
      record(2, 'x2', '7', 0x110),
      record(3, 'x3', '7', 0x120, '0/130'),
      record(4, 'y1', '8', 0x140),
      record(5, 'y2', '8', 0x150, '0/160'),
      // The fenced former owner wakes and sends the first records of transaction 7 it had buffered.
      record(6, 'x1', '7', 0x100),
      record(7, 'x2', '7', 0x110),
      // Its successor's next transactions: a multi-record one and a one-record one.
      record(8, 'z1', '9', 0x170),
      record(9, 'z2', '9', 0x180, '0/190'),
      record(10, 'x1', '7', 0x100),
      record(11, 'w1', '10', 0x1a0, '0/1b0'),
    ]),
    [
      ['x1,x2,x3', '130', 3n],
      ['y1,y2', '160', 5n],
      ['z1,z2', '190', 9n],
      ['w1', '1b0', 11n],
    ],
  );
});

test('changes of one WAL record (a multi-insert) are not taken for a re-send', () => {
  assert.deepEqual(
    grouped([record(1, 'r1', '7', 0x100), record(2, 'r2', '7', 0x100), record(3, 'r3', '7', 0x100, '0/130')]),
    [['r1,r2,r3', '130', 3n]],
  );
});
