/**
 * Capture runs on our topics (`pgbisync.run` on each transaction's first record): a capture fenced off
 * by a takeover may have records land after its successor's, and what the total order alone cannot tell
 * apart, the run does. A late transaction start inside the successor's copy of another transaction made
 * the grouper drop that copy (taken for a stale part); a late whole transaction was applied, and its
 * commit LSN then made the applier skip what the successor sent next below it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { COMMIT_LSN_HEADER, firstOfRun, LAST_HEADER, LAST_VALUE } from '../kafka/wire-headers.ts';
import { type DecodedChange, TransactionGrouper } from './transaction-grouper.ts';

/**
 * Change `n` (its total order) of transaction `txId` at WAL position 0x100 * txId + n, as the capture
 * of run `run` writes it: the run on the first change, the end headers on the last (`commitLsn`).
 */
function change(offset: number, run: bigint, txId: number, n: number, commitLsn?: string): InRecord {
  const headers: Record<string, string> = n === 1 ? firstOfRun(undefined, run) : {};
  if (commitLsn !== undefined)
    Object.assign(headers, { [LAST_HEADER]: LAST_VALUE, [COMMIT_LSN_HEADER]: commitLsn });
  return {
    topic: 'pgbisync.a',
    partition: 0,
    offset: BigInt(offset),
    key: Buffer.from(`t${txId}.${n}`),
    value: Buffer.from(JSON.stringify({ txId, n })),
    headers: new Map(Object.entries(headers)),
    timestampMs: 0,
  };
}

const decode = (r: InRecord): DecodedChange => {
  const v = JSON.parse(r.value!.toString()) as { txId: number; n: number };
  return {
    change: { op: 'u', schema: 'public', table: 't', after: { id: `t${v.txId}.${v.n}` } },
    lsn: BigInt(0x100 * v.txId + v.n),
    txId: String(v.txId),
    commitTimeUs: 1n,
    snapshot: false,
    totalOrder: BigInt(v.n),
    ours: true,
  };
};

/** What the grouper drops, `reason:records` each time (metric pgbisync_stale_records_dropped_total). */
let stale: string[] = [];

/** What the grouper hands out: the changes, commit LSN, last offset and capture run of each. */
function grouped(records: InRecord[], storedRun?: bigint) {
  stale = [];
  const grouper = new TransactionGrouper(
    'a',
    decode,
    () => assert.fail('nothing is malformed'),
    Number.POSITIVE_INFINITY,
    Number.POSITIVE_INFINITY,
    storedRun,
    (reason, n) => stale.push(`${reason}:${n}`),
  );
  return grouper
    .add(records)
    .map((t) => [
      t.changes.map((c) => c.after?.id).join(','),
      t.commitLsn.toString(16),
      t.lastOffset,
      t.captureRun,
    ]);
}

test("a fenced capture's late transaction start inside its successor's copy of another one is dropped; the copy is applied", () => {
  assert.deepEqual(
    grouped([
      change(1, 1n, 4, 1, '0/401'),
      // Run 2 took over and sends transaction 5 again, whole; run 1's first change of transaction 6
      // lands in the middle of it, then the rest of 6.
      change(2, 2n, 5, 1),
      change(3, 1n, 6, 1),
      change(4, 2n, 5, 2, '0/502'),
      change(5, 1n, 6, 2, '0/602'),
      change(6, 2n, 6, 1),
      change(7, 2n, 6, 2, '0/602'),
    ]),
    [
      ['t4.1', '401', 1n, 1n],
      ['t5.1,t5.2', '502', 4n, 2n],
      ['t6.1,t6.2', '602', 7n, 2n],
    ],
  );
  assert.deepEqual(stale, ['run:1', 'order:1']);
});

test("a fenced capture's late whole transaction after its successor's records is dropped, not applied ahead of what the successor sends", () => {
  assert.deepEqual(
    grouped([
      change(1, 2n, 5, 1, '0/501'),
      // Run 1's transaction 7, whole, lands late: applied, its commit LSN would make the applier skip
      // transaction 6, which run 2 sends next (run 1 had not completed it).
      change(2, 1n, 7, 1),
      change(3, 1n, 7, 2, '0/702'),
      change(4, 2n, 6, 1, '0/601'),
    ]),
    [
      ['t5.1', '501', 1n, 2n],
      ['t6.1', '601', 4n, 2n],
    ],
  );
  assert.deepEqual(stale, ['run:1', 'order:1']);
});

test('an applier started again knows the newest run from its stored position', () => {
  assert.deepEqual(
    grouped([change(1, 1n, 7, 1), change(2, 1n, 7, 2, '0/702'), change(3, 3n, 8, 1, '0/801')], 2n),
    [['t8.1', '801', 3n, 3n]],
  );
  assert.deepEqual(stale, ['run:1', 'order:1']);
});

test('a buffered start sent again from its start is dropped as a stale part, counted', () => {
  assert.deepEqual(
    grouped([change(1, 1n, 5, 1), change(2, 1n, 5, 2), change(3, 2n, 5, 1), change(4, 2n, 5, 2, '0/502')]),
    [['t5.1,t5.2', '502', 4n, 2n]],
  );
  assert.deepEqual(stale, ['part:2']);
});
