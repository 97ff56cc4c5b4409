import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { COMMIT_LSN_HEADER, LAST_HEADER, LAST_VALUE } from '../kafka/wire-headers.ts';
import { type DecodedChange, TransactionGrouper } from './transaction-grouper.ts';

const NO_HEADERS: ReadonlyMap<string, string> = new Map();

/** A record of source transaction `txId`; the last one of a transaction carries our end marker. */
function record(offset: number, txId: string, last?: string): InRecord {
  return {
    topic: 'pgbisync.a',
    partition: 0,
    offset: BigInt(offset),
    key: Buffer.from(String(offset)),
    value: Buffer.from(txId),
    headers:
      last === undefined
        ? NO_HEADERS
        : new Map([
            [LAST_HEADER, LAST_VALUE],
            [COMMIT_LSN_HEADER, last],
          ]),
    timestampMs: 0,
  };
}

const decode = (r: InRecord): DecodedChange => ({
  change: { op: 'c', schema: 'public', table: 't', after: { id: String(r.offset) } },
  lsn: r.offset,
  txId: r.value!.toString(),
  commitTimeUs: 1n,
  snapshot: false,
});

const ids = (txns: readonly { changes: readonly { after?: Record<string, unknown> }[] }[]) =>
  txns.map((t) => t.changes.map((c) => c.after?.id));

test('a transaction spread over fetched batches is applied whole, once its end marker arrives', () => {
  const grouper = new TransactionGrouper('a', decode, () => assert.fail('nothing is malformed'));
  // The first batch after a restart can end in the middle of a transaction: nothing is complete yet.
  assert.deepEqual(grouper.add([record(10, '7'), record(11, '7')]), []);
  assert.deepEqual(grouper.add([record(12, '7')]), []);
  const done = grouper.add([record(13, '7', '0/1A0'), record(14, '8'), record(15, '8', '0/1B0')]);
  assert.deepEqual(ids(done), [
    ['10', '11', '12', '13'],
    ['14', '15'],
  ]);
  assert.deepEqual(
    done.map((t) => [t.commitLsn, t.lsnOrdered, t.lastOffset]),
    [
      [0x1a0n, true, 13n],
      [0x1b0n, true, 15n],
    ],
  );
});

test('a transaction cut short by a crash and published again in full is applied as one', () => {
  const grouper = new TransactionGrouper('a', decode, () => assert.fail('nothing is malformed'));
  // The capture died after its first request for transaction 7 was acknowledged; the restarted capture
  // published transaction 7 again from its start.
  assert.deepEqual(grouper.add([record(20, '7'), record(21, '7')]), []);
  const done = grouper.add([record(22, '7'), record(23, '7'), record(24, '7', '0/2A0')]);
  assert.deepEqual(ids(done), [['20', '21', '22', '23', '24']]);
});

test('records without our markers are grouped by source transaction id', () => {
  const grouper = new TransactionGrouper('a', decode, () => assert.fail('nothing is malformed'));
  assert.deepEqual(ids(grouper.add([record(1, '5'), record(2, '5'), record(3, '6')])), [['1', '2']]);
  const done = grouper.add([record(4, '7')]);
  assert.deepEqual(ids(done), [['3']]);
  assert.equal(done[0]?.lsnOrdered, false, 'without our commit LSN a transaction is never skipped by LSN');
});
