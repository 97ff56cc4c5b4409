import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord, OutRecord, RecordConsumer } from '../kafka/records.ts';
import { COMMIT_LSN_HEADER, LAST_HEADER, LAST_VALUE, transactionEndHeaders } from '../kafka/wire-headers.ts';
import { RetryableError } from '../runtime/errors.ts';
import { FaultyConsumer, MemoryKafka } from '../testing/memory-kafka.ts';
import type { ApplyTransaction } from './apply-model.ts';
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

test('read from kafka in any fetch sizes, with a failed fetch and a restart after the last whole transaction, each transaction arrives whole and once', async () => {
  const kafka = new MemoryKafka();
  kafka.createTopic('pgbisync.a');
  /** Source transaction `txId` of rows `rows`, ended as our capture ends it. */
  const txn = (txId: string, commitLsn: bigint, rows: readonly number[]): OutRecord[] =>
    rows.map((row, i) => ({
      topic: 'pgbisync.a',
      partition: 0,
      key: Buffer.from(String(row)),
      value: Buffer.from(txId),
      ...(i === rows.length - 1 ? { headers: transactionEndHeaders(commitLsn) } : {}),
    }));
  const producer = kafka.producer();
  await producer.send([...txn('7', 0x100n, [1, 2, 3]), ...txn('8', 0x200n, [4, 5, 6])]);
  await producer.send(txn('9', 0x300n, [7]));

  const rowsOf = (r: InRecord): DecodedChange => ({
    change: { op: 'c', schema: 'public', table: 't', after: { id: r.key!.toString() } },
    lsn: r.offset,
    txId: r.value!.toString(),
    commitTimeUs: 1n,
    snapshot: false,
  });
  const applied: ApplyTransaction[] = [];
  /** Reads until the topic's end, as an applier does; returns the position after the last whole transaction. */
  const apply = async (consumer: RecordConsumer): Promise<bigint> => {
    const grouper = new TransactionGrouper('a', rowsOf, () => assert.fail('nothing is malformed'));
    try {
      for await (const batch of consumer.batches(AbortSignal.timeout(5_000))) {
        applied.push(...grouper.add(batch));
        if (batch.at(-1)!.offset === 6n) break;
      }
    } catch (error) {
      assert.ok(error instanceof RetryableError, 'the injected fetch failure');
    } finally {
      await consumer.close();
    }
    return (applied.at(-1)?.lastOffset ?? -1n) + 1n;
  };
  // Fetches of 2 records: the second completes transaction 7 and starts 8; the third fails.
  const resumeAt = await apply(
    new FaultyConsumer(kafka.consumer({ topics: ['pgbisync.a'], maxBatchRecords: 2 }), 3),
  );
  assert.equal(resumeAt, 3n, 'after transaction 7: the part of 8 already read is read again');
  await apply(
    kafka.consumer({
      topics: ['pgbisync.a'],
      startOffsets: [{ topic: 'pgbisync.a', partition: 0, offset: resumeAt }],
      maxBatchRecords: 1,
    }),
  );
  assert.deepEqual(ids(applied), [['1', '2', '3'], ['4', '5', '6'], ['7']]);
  assert.deepEqual(
    applied.map((t) => [t.commitLsn, t.lastOffset]),
    [
      [0x100n, 2n],
      [0x200n, 5n],
      [0x300n, 6n],
    ],
  );
});

test('a transaction larger than maxOpenRows is handed out in pieces as it arrives; only its last piece ends it', () => {
  const grouper = new TransactionGrouper('a', decode, () => assert.fail('nothing is malformed'), 2);
  // Seven rows of transaction 7 in batches of 3, 3 and 1 (the last with the end marker), then 8 whole.
  const first = grouper.add([record(10, '7'), record(11, '7'), record(12, '7')]);
  assert.deepEqual(ids(first), [['10', '11']], 'a piece leaves as soon as it is full, before the end marker');
  const middle = grouper.add([record(13, '7'), record(14, '7'), record(15, '7')]);
  assert.deepEqual(ids(middle), [
    ['12', '13'],
    ['14', '15'],
  ]);
  const done = grouper.add([record(16, '7', '0/3A0'), record(17, '8'), record(18, '8', '0/3B0')]);
  assert.deepEqual(ids(done), [['16'], ['17', '18']]);
  const pieces = [...first, ...middle, ...done];
  assert.deepEqual(
    pieces.map((t) => t.piece),
    ['first', 'middle', 'middle', 'last', undefined],
  );
  // Only the last piece knows the commit LSN (and may be skipped as already applied); the first one
  // names the transaction's first record.
  assert.deepEqual(
    pieces.map((t) => [t.commitLsn, t.lsnOrdered]),
    [
      [0n, false],
      [0n, false],
      [0n, false],
      [0x3a0n, true],
      [0x3b0n, true],
    ],
  );
  assert.equal(pieces[0]?.firstOffset, 10n);
  assert.equal(
    pieces[3]?.lastOffset,
    16n,
    'the position moves past the whole transaction with its last piece',
  );
});

test('snapshot chunks are never cut into pieces (the capture bounds them)', () => {
  const snapshotRow = (r: InRecord): DecodedChange => ({ ...decode(r), snapshot: true });
  const grouper = new TransactionGrouper('a', snapshotRow, () => assert.fail('nothing is malformed'), 2);
  assert.deepEqual(grouper.add([record(1, '0'), record(2, '0'), record(3, '0')]), []);
  const done = grouper.add([record(4, '0', '0/10')]);
  assert.deepEqual(ids(done), [['1', '2', '3', '4']]);
  assert.equal(done[0]?.piece, undefined);
});

/** A record of transaction `txId` at change LSN `lsn` (its own offset `offset`). */
function change(offset: number, txId: string, lsn: number, last?: string): InRecord {
  return { ...record(offset, txId, last), key: Buffer.from(String(lsn)) };
}
const byLsn = (r: InRecord): DecodedChange => ({
  change: { op: 'u', schema: 'public', table: 't', after: { id: r.key!.toString() } },
  lsn: BigInt(r.key!.toString()),
  txId: r.value!.toString(),
  commitTimeUs: 1n,
  snapshot: false,
});

test('a transaction published again from its start after a part of it drops that stale part (never glued)', () => {
  const grouper = new TransactionGrouper('a', byLsn, () => assert.fail('nothing is malformed'));
  // A capture died after sending changes 100 and 110 of transaction 7; restarted, it sent 7 whole.
  assert.deepEqual(grouper.add([change(1, '7', 100), change(2, '7', 110)]), []);
  const done = grouper.add([change(3, '7', 100), change(4, '7', 110), change(5, '7', 120, '0/200')]);
  assert.deepEqual(ids(done), [['100', '110', '120']]);
  assert.equal(done[0]?.firstOffset, 3n, 'the transaction starts at its republished first record');
});

test("on our topics a stale part of another transaction is dropped, not applied as one (a fenced capture's last send)", () => {
  const grouper = new TransactionGrouper('a', byLsn, () => assert.fail('nothing is malformed'));
  assert.deepEqual(ids(grouper.add([change(1, '6', 50, '0/60')])), [['50']]);
  // Part of transaction 7, then transaction 8 whole: 7's part never ends.
  assert.deepEqual(grouper.add([change(2, '7', 100), change(3, '7', 110)]), []);
  const done = grouper.add([change(4, '8', 130), change(5, '8', 140, '0/300')]);
  assert.deepEqual(ids(done), [['130', '140']]);
});

test('a transaction restarted after some of its pieces were handed out starts over with a first piece', () => {
  const grouper = new TransactionGrouper('a', byLsn, () => assert.fail('nothing is malformed'), 2);
  const first = grouper.add([change(1, '7', 100), change(2, '7', 110), change(3, '7', 120)]);
  assert.deepEqual(
    first.map((t) => t.piece),
    ['first'],
  );
  const again = grouper.add([
    change(4, '7', 100),
    change(5, '7', 110),
    change(6, '7', 120),
    change(7, '7', 130, '0/400'),
  ]);
  assert.deepEqual(
    again.map((t) => [t.piece, ...t.changes.map((c) => c.after?.id)]),
    [
      ['first', '100', '110'],
      ['last', '120', '130'],
    ],
  );
});

test('changes of one WAL record (a TRUNCATE of several tables, a multi-insert) share a position: not a restart', () => {
  const truncates = (r: InRecord): DecodedChange => ({
    ...byLsn(r),
    change: { op: 't', schema: 'public', table: r.key!.toString() },
  });
  const grouper = new TransactionGrouper(
    'a',
    (r) => ({ ...truncates(r), lsn: 100n }),
    () => assert.fail('nothing is malformed'),
  );
  const done = grouper.add([change(1, '7', 1), change(2, '7', 2, '0/500')]);
  assert.equal(done[0]?.changes.length, 2);
});

test('a transaction of large values is cut into pieces by the characters of its values too', () => {
  // Each change carries 1,000 characters: pieces of 3 changes once 2,500 are buffered (2,000-row
  // limit far away). Rows of 2 KB took 439 MiB in the 2,000,000-row bench with 10,000-row pieces.
  const wide = (r: InRecord): DecodedChange => {
    const d = decode(r);
    return { ...d, change: { ...d.change, after: { id: String(r.offset), pad: 'x'.repeat(1000) } } };
  };
  const grouper = new TransactionGrouper('a', wide, () => assert.fail('nothing is malformed'), 2000, 2500);
  const records = Array.from({ length: 8 }, (_, i) => record(10 + i, '7', i === 7 ? '0/1A0' : undefined));
  const done = grouper.add(records);
  assert.deepEqual(
    done.map((t) => [t.piece, t.changes.length]),
    [
      ['first', 3],
      ['middle', 3],
      ['last', 2],
    ],
  );
});
