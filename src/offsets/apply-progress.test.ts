import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import {
  ApplyProgress,
  PROGRESS_STATEMENT,
  type ProgressOf,
  positionsWrite,
  withProgress,
} from './apply-progress.ts';

const txn = (commitLsn: bigint, lastOffset: bigint, more: Partial<ProgressOf> = {}): ProgressOf => ({
  topic: 'pgbisync.a',
  partition: 0,
  lastOffset,
  commitLsn,
  lsnOrdered: true,
  snapshot: false,
  commitTimeUs: 1000n + lastOffset,
  ...more,
});

/** A target whose apply_progress row of source `a` is at offset 10, commit LSN 0/100, with `more` columns. */
const storedRow = (more: Record<string, string> = {}) =>
  ({
    query: async () => ({
      rows: [
        { topic: 'pgbisync.a', kafka_partition: 0, next_offset: '10', commit_lsn: '0/100', us: '7', ...more },
      ],
    }),
  }) as unknown as Queryable;
const storedAt100 = storedRow();

describe('ApplyProgress', () => {
  it('continues from the stored row', async () => {
    const progress = new ApplyProgress('a');
    assert.deepEqual(await progress.read(storedAt100), {
      topic: 'pgbisync.a',
      partition: 0,
      nextOffset: 10n,
      commitLsn: 0x100n,
      commitTimeUs: 7n,
    });
    assert.equal(progress.lastCommitLsn, 0x100n);
    // The first write requires the row to hold the stored position.
    assert.deepEqual(progress.nextWrite(txn(0x101n, 12n)), [
      'pgbisync.a',
      0,
      '13',
      '0/101',
      'pgbisync.a',
      0,
      '10',
      false,
      false,
      '7',
      null,
      null,
      null,
      null,
      '1012',
    ]);
  });

  it('keeps the newest capture run read: returned by read, written with each position', async () => {
    const progress = new ApplyProgress('a');
    const stored = storedRow({ capture_run: '42' });
    assert.equal((await progress.read(stored))?.captureRun, 42n);
    assert.equal(progress.nextWrite(txn(0x101n, 12n, { captureRun: 43n })).at(-2), '43');
    assert.equal(progress.nextWrite(txn(0x102n, 13n)).at(-2), null);
  });

  const skipCases: { name: string; txn: ProgressOf; skipped: boolean }[] = [
    { name: 'a re-published transaction (same commit LSN) is skipped', txn: txn(0x100n, 11n), skipped: true },
    { name: 'an earlier commit LSN is skipped', txn: txn(0xffn, 11n), skipped: true },
    { name: 'a later commit LSN is applied', txn: txn(0x101n, 11n), skipped: false },
    {
      name: 'snapshot chunks share one LSN: never skipped by it',
      txn: txn(0x100n, 11n, { snapshot: true }),
      skipped: false,
    },
    {
      name: "foreign topics' LSNs do not order transactions: never skipped by them",
      txn: txn(0x100n, 11n, { lsnOrdered: false }),
      skipped: false,
    },
  ];
  for (const c of skipCases) {
    it(c.name, async () => {
      const progress = new ApplyProgress('a');
      await progress.read(storedAt100);
      assert.equal(progress.alreadyApplied(c.txn), c.skipped);
    });
  }

  it("a foreign topic's LSN is stored only raised, and orders nothing", async () => {
    const progress = new ApplyProgress('a');
    await progress.read(storedAt100);
    const foreign = txn(0x200n, 11n, { lsnOrdered: false });
    assert.equal(progress.nextWrite(foreign)[3], '0/200');
    progress.queued(foreign);
    assert.equal(progress.alreadyApplied(txn(0x150n, 12n)), false);
    assert.equal(progress.nextWrite(txn(0x50n, 12n, { lsnOrdered: false }))[3], '0/100');
  });

  it('a queued transaction makes later ones up to its commit LSN duplicates; snapshots do not', () => {
    const progress = new ApplyProgress('a');
    assert.equal(progress.alreadyApplied(txn(0x200n, 1n)), false, 'no row: nothing was applied');
    progress.queued(txn(0x200n, 1n));
    assert.equal(progress.alreadyApplied(txn(0x200n, 2n)), true);
    assert.equal(progress.alreadyApplied(txn(0x201n, 2n)), false);
    progress.queued(txn(0x300n, 3n, { snapshot: true }));
    assert.equal(progress.lastCommitLsn, 0x200n);
  });

  it('each write requires the position the previous one leaves; the first one, no row', () => {
    const progress = new ApplyProgress('a');
    assert.deepEqual(progress.nextWrite(txn(0x10n, 4n)), [
      'pgbisync.a',
      0,
      '5',
      '0/10',
      null,
      null,
      null,
      true,
      false,
      null,
      null,
      null,
      null,
      null,
      '1004',
    ]);
    // No row was stored: until a transaction is known to have committed, the row may still be missing.
    assert.deepEqual(progress.nextWrite(txn(0x20n, 9n, { topic: 'pgbisync.b', partition: 2 })), [
      'pgbisync.b',
      2,
      '10',
      '0/20',
      'pgbisync.a',
      0,
      '5',
      true,
      false,
      '1004',
      null,
      null,
      null,
      null,
      '1009',
    ]);
    progress.committed();
    assert.deepEqual(progress.nextWrite(txn(0x30n, 10n, { topic: 'pgbisync.b', partition: 2 })), [
      'pgbisync.b',
      2,
      '11',
      '0/30',
      'pgbisync.b',
      2,
      '10',
      false,
      false,
      '1009',
      null,
      null,
      null,
      null,
      '1010',
    ]);
  });

  it("the parts of a split snapshot chunk hold the offset; each requires the part before's commit time", async () => {
    const progress = new ApplyProgress('a');
    await progress.read(storedAt100);
    const chunk = (us: bigint) => txn(0x200n, 20n, { snapshot: true, firstOffset: 10n, commitTimeUs: us });
    const first = progress.holdWrite(chunk(50n));
    const second = progress.holdWrite(chunk(60n));
    const last = progress.nextWrite(chunk(70n));
    // The offset stays at 10 until the last part; the chain is the commit time each part leaves: a
    // part that failed leaves the row at the time before it, and every later part fails with it.
    assert.deepEqual([first[2], first[6], first[9]], ['10', '10', '7']);
    assert.deepEqual([second[2], second[6], second[9]], ['10', '10', '50']);
    assert.deepEqual([last[2], last[6], last[9]], ['21', '10', '60']);
  });

  it("a snapshot before the last commit LSN restarts it: the source's positions went back", async () => {
    const progress = new ApplyProgress('a');
    await progress.read(storedAt100);
    // A new slot on a server whose WAL positions are behind what was applied from the old one.
    const snapshot = txn(0x50n, 11n, { snapshot: true });
    assert.equal(progress.alreadyApplied(snapshot), false);
    assert.equal(progress.nextWrite(snapshot)[8], true, 'the stored commit LSN restarts too');
    progress.queued(snapshot);
    assert.equal(progress.lastCommitLsn, 0x50n);
    assert.equal(progress.alreadyApplied(txn(0x60n, 12n)), false, 'what the new slot streams is applied');
    assert.equal(progress.alreadyApplied(txn(0x50n, 12n)), true);
    // A snapshot after it (the usual case: the server's current position) changes nothing.
    progress.queued(txn(0x900n, 13n, { snapshot: true }));
    assert.equal(progress.lastCommitLsn, 0x50n);
    const after = progress.nextWrite(txn(0x900n, 14n, { snapshot: true }));
    assert.equal(after[8], false);
    assert.equal(
      after[3],
      '0/50',
      'nor does it raise the stored commit LSN (a snapshot read again is newer)',
    );
  });
});

describe('a source whose WAL went back on its timeline', () => {
  it("blocks at a transaction the LSN rule calls re-sent but committed after the watermark's, beyond the clock slack", async () => {
    const progress = new ApplyProgress('a', 5_000);
    const stored = storedRow({ watermark_us: '9000000' });
    await progress.read(stored);
    assert.equal(progress.alreadyApplied(txn(0x90n, 11n, { commitTimeUs: 8_000_000n })), true, 're-sent');
    assert.equal(
      progress.alreadyApplied(txn(0x90n, 11n, { commitTimeUs: 14_000_000n })),
      true,
      'within the slack',
    );
    assert.throws(
      () => progress.alreadyApplied(txn(0x90n, 11n, { commitTimeUs: 14_000_001n })),
      (error: unknown) => {
        assert.ok(error instanceof BlockedError);
        assert.equal(error.code, ErrorCode.SOURCE_WENT_BACK);
        assert.match(error.hint ?? '', /pgbisync resync a --new-slot/);
        return true;
      },
    );
    // Applied past the watermark: the new one's commit time is the one compared with from then on.
    progress.queued(txn(0x200n, 12n, { commitTimeUs: 20_000_000n }));
    assert.equal(progress.nextWrite(txn(0x210n, 13n, { commitTimeUs: 21_000_000n })).at(-1), '21000000');
    assert.throws(
      () => progress.alreadyApplied(txn(0x150n, 13n, { commitTimeUs: 26_000_000n })),
      BlockedError,
    );
  });
});

describe('progress statements', () => {
  it("the progress write follows a statement's own parameters", () => {
    const text = withProgress('WITH i AS (SELECT $1, $2, $3, $4, $5) SELECT 1', 5);
    assert.match(
      text,
      /^WITH pgbisync_origin AS \(SELECT pg_replication_origin_xact_setup\(\$9::pg_lsn, \$1/,
    );
    assert.match(
      text,
      /\$12::bigint\)\s+AND \(\$15::bigint IS NULL OR .* = \$15::bigint\)\s+THEN EXCLUDED\.next_offset/,
    );
    assert.match(text, /,\ni AS \(SELECT \$1, \$2, \$3, \$4, \$5\) SELECT 1$/);
    assert.match(PROGRESS_STATEMENT, /pg_replication_origin_xact_setup\(\$6::pg_lsn, \$1::timestamptz\)/);
  });

  it('the positions of other topics are arrays, offsets as decimal text', () => {
    const write = positionsWrite('a', [
      { topic: 'x', partition: 0, nextOffset: 5n },
      { topic: 'y', partition: 1, nextOffset: 9_007_199_254_740_993n },
    ]);
    assert.deepEqual(write.values, ['a', ['x', 'y'], [0, 1], ['5', '9007199254740993']]);
    assert.match(write.text, /greatest\(a\.next_offset, EXCLUDED\.next_offset\)/);
  });
});
