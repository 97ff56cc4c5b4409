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

/**
 * A change `id` of source transaction `txId` at WAL position `lsn`; `commitLsn` marks the last one;
 * `order` is its `transaction.total_order` (1 for the transaction's first change), absent for records
 * that carry none.
 */
function record(
  offset: number,
  id: string,
  txId: string,
  lsn: number,
  commitLsn?: string,
  order?: number,
  ours = false,
): InRecord {
  return {
    topic: 'pgbisync.a',
    partition: 0,
    offset: BigInt(offset),
    key: Buffer.from(id),
    value: Buffer.from(JSON.stringify({ id, txId, lsn, order, ours })),
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
  const v = JSON.parse(r.value!.toString()) as {
    id: string;
    txId: string;
    lsn: number;
    order?: number;
    ours: boolean;
    snapshot?: boolean;
  };
  return {
    change: { op: 'c', schema: 'public', table: 't', after: { id: v.id } },
    lsn: BigInt(v.lsn),
    txId: v.txId,
    commitTimeUs: 1n,
    snapshot: v.snapshot === true,
    ...(v.order === undefined ? {} : { totalOrder: BigInt(v.order) }),
    ...(v.ours ? { ours: true } : {}),
  };
};

/**
 * Change `n` (1-based, its total order) of transaction `txId`, at WAL position 0x100 * txId + n, as
 * pgbisync's capture writes it (its source.version tells it for ours).
 */
function change(offset: number, txId: number, n: number, commitLsn?: string): InRecord {
  return record(offset, `t${txId}.${n}`, String(txId), 0x100 * txId + n, commitLsn, n, true);
}

/** The tombstone after a delete; `commitLsn` marks it as its transaction's last record. */
function tombstone(offset: number, commitLsn?: string): InRecord {
  const marked = change(offset, 0, 0, commitLsn);
  return { ...marked, value: null };
}

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

// A capture fenced off by a takeover (frozen, or cut off from the node but not from Kafka) sends, once it
// runs again, what its producer still held: the middle or the end of a transaction whose first records
// it had sent before. Those land after its successor's records, where a transaction's first change is
// its first record (total order 1) and each next one follows it (order + 1): what does not fit there is
// a stale record. Applied, the end of a transaction alone moves the applier's position to that
// transaction's commit LSN, and the successor's whole copy of it is then skipped as applied: its first
// changes are lost.

test("a fenced capture's late end of a transaction its successor has not sent again yet is dropped", () => {
  assert.deepEqual(
    grouped([
      // The former owner: transaction 7 whole, then the first change of 9 before it froze.
      change(1, 7, 1),
      change(2, 7, 2, '0/7ff'),
      change(3, 9, 1),
      // Its successor starts again at 7 (the slot had not been told 7 was acknowledged).
      change(4, 7, 1),
      change(5, 7, 2, '0/7ff'),
      // The former owner wakes and sends the rest of 9 it held.
      change(6, 9, 2),
      change(7, 9, 3, '0/9ff'),
      // The successor's copy of 9.
      change(8, 9, 1),
      change(9, 9, 2),
      change(10, 9, 3, '0/9ff'),
    ]),
    [
      ['t7.1,t7.2', '7ff', 2n],
      ['t7.1,t7.2', '7ff', 5n],
      ['t9.1,t9.2,t9.3', '9ff', 10n],
    ],
  );
});

test("a fenced capture's late tombstone that ended a transaction closes nothing", () => {
  assert.deepEqual(
    grouped([
      change(1, 7, 1, '0/7ff'),
      // The former owner had sent 9's delete; its tombstone, the transaction's last record, comes late.
      change(2, 9, 1),
      change(3, 7, 1, '0/7ff'),
      tombstone(4, '0/9ff'),
      change(5, 9, 1),
      tombstone(6, '0/9ff'),
    ]),
    [
      ['t7.1', '7ff', 1n],
      ['t7.1', '7ff', 3n],
      ['t9.1', '9ff', 6n],
    ],
  );
});

test("a fenced capture's late changes inside its successor's copy of the same transaction are dropped", () => {
  assert.deepEqual(
    grouped([
      change(1, 6, 1, '0/6ff'),
      change(2, 9, 1),
      change(3, 9, 2),
      // The former owner's changes 4 and 5 of 9 (it had sent 1-3 before it froze), then the
      // successor's 3 to 5.
      change(4, 9, 4),
      change(5, 9, 5),
      change(6, 9, 3),
      change(7, 9, 4),
      change(8, 9, 5, '0/9ff'),
    ]),
    [
      ['t6.1', '6ff', 1n],
      ['t9.1,t9.2,t9.3,t9.4,t9.5', '9ff', 8n],
    ],
  );
});

test("a fenced capture's late change of another transaction does not cut the open one", () => {
  assert.deepEqual(
    grouped([
      change(1, 6, 1, '0/6ff'),
      change(2, 7, 1),
      change(3, 7, 2),
      change(4, 9, 2),
      change(5, 7, 3, '0/7ff'),
    ]),
    [
      ['t6.1', '6ff', 1n],
      ['t7.1,t7.2,t7.3', '7ff', 5n],
    ],
  );
});

test('the end of a transaction read first, before any marked record, is not applied alone', () => {
  // An applier that starts (or restarts) where the former owner's late records begin.
  assert.deepEqual(
    grouped([
      change(1, 9, 2),
      change(2, 9, 3, '0/9ff'),
      change(3, 9, 1),
      change(4, 9, 2),
      change(5, 9, 3, '0/9ff'),
    ]),
    [['t9.1,t9.2,t9.3', '9ff', 5n]],
  );
});

test("a stale part read first after a start is dropped at the next transaction's first record", () => {
  // The capture was killed after the first change of 9; the applier, started again after 7, reads the
  // part, then its successor's copies of 8 (sent, not yet confirmed to the slot) and 9. No record had
  // told the topic's kind yet: the part was closed Debezium-style by 8's first record and applied.
  assert.deepEqual(
    grouped([
      change(1, 9, 1),
      change(2, 8, 1),
      change(3, 8, 2, '0/8ff'),
      change(4, 9, 1),
      change(5, 9, 2, '0/9ff'),
    ]),
    [
      ['t8.1,t8.2', '8ff', 3n],
      ['t9.1,t9.2', '9ff', 5n],
    ],
  );
});

test("a snapshot chunk is applied whatever total orders its events carry (they count on across a table's chunks)", () => {
  const snapshotEvent = (offset: number, n: number, last?: string): InRecord => {
    const r = change(offset, 5, n, last);
    const v = JSON.parse(r.value!.toString()) as Record<string, unknown>;
    return { ...r, value: Buffer.from(JSON.stringify({ ...v, snapshot: true })) };
  };
  assert.deepEqual(
    grouped([
      snapshotEvent(1, 501),
      snapshotEvent(2, 502, '0/5ff'),
      snapshotEvent(3, 503),
      snapshotEvent(4, 504, '0/5ff'),
    ]),
    [
      ['t5.501,t5.502', '5ff', 2n],
      ['t5.503,t5.504', '5ff', 4n],
    ],
  );
});

test('a change that does not decode is set aside; the rest of its transaction is applied, wherever it stood', () => {
  const bad = new Set(['t7.2', 't8.1']);
  const malformed: string[] = [];
  const grouper = new TransactionGrouper(
    'a',
    (r) => {
      if (bad.has(r.key!.toString())) throw new Error('not a change event');
      return decode(r);
    },
    (r) => malformed.push(r.key!.toString()),
  );
  const out = grouper
    .add([
      change(1, 7, 1),
      change(2, 7, 2),
      change(3, 7, 3, '0/7ff'),
      change(4, 8, 1),
      change(5, 8, 2),
      change(6, 8, 3, '0/8ff'),
    ])
    .map((t) => [t.changes.map((c) => c.after?.id).join(','), t.commitLsn.toString(16), t.lastOffset]);
  assert.deepEqual(out, [
    ['t7.1,t7.3', '7ff', 3n],
    ['t8.2,t8.3', '8ff', 6n],
  ]);
  assert.deepEqual(malformed, ['t7.2', 't8.1']);
});
