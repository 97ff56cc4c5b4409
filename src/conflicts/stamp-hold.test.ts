import assert from 'node:assert/strict';
import { test } from 'node:test';
import { candidateMark, chooseHold, marksFrom, type XidMark } from './stamp-hold.ts';

const marks: XidMark[] = [
  { atMs: 1_000, xid: 100n },
  { atMs: 2_000, xid: 200n },
  { atMs: 3_000, xid: 300n },
];
const ALWAYS = { minAgeXids: 0n, maxAgeXids: 1_000_000n };

test('the candidate is the newest mark not later than the watermark, else the oldest', () => {
  assert.equal(candidateMark(marks, 2_500)?.xid, 200n);
  assert.equal(candidateMark(marks, 2_000)?.xid, 200n);
  assert.equal(candidateMark(marks, 999)?.xid, 100n, 'older than every mark');
  assert.equal(candidateMark(marks, undefined)?.xid, 100n, 'unknown');
  assert.equal(candidateMark(marks, Number.POSITIVE_INFINITY)?.xid, 300n);
  assert.equal(candidateMark([], 2_000), undefined);
});

test('a candidate younger than the minimum age is not held: the slot lets vacuum go on', () => {
  const limits = { minAgeXids: 250n, maxAgeXids: 1_000_000n };
  assert.deepEqual(chooseHold(marks, 2_500, null, 400n, limits), { hold: null, capped: false }, 'age 200');
  assert.deepEqual(chooseHold(marks, 2_500, 150n, 400n, limits), { hold: null, capped: false }, 'released');
  assert.deepEqual(chooseHold(marks, 1_500, null, 400n, limits), { hold: 100n, capped: false }, 'age 300');
  assert.deepEqual(chooseHold(marks, 2_500, null, 500n, limits), { hold: 200n, capped: false }, 'age 300');
});

test('a needed hold takes the candidate and only moves forward', () => {
  assert.deepEqual(chooseHold(marks, 2_500, null, 400n, ALWAYS), { hold: 200n, capped: false });
  assert.deepEqual(chooseHold(marks, 2_500, 100n, 400n, ALWAYS), { hold: 200n, capped: false });
  assert.deepEqual(chooseHold(marks, 1_500, 250n, 400n, ALWAYS), { hold: 250n, capped: false }, 'never back');
  assert.deepEqual(chooseHold(marks, undefined, null, 400n, ALWAYS), { hold: 100n, capped: false });
  assert.deepEqual(
    chooseHold([], undefined, 150n, 400n, ALWAYS),
    { hold: 150n, capped: false },
    'no mark yet',
  );
});

test('while the watermark is unknown or older than every mark, the slot keeps what it holds', () => {
  const young = { minAgeXids: 1_000n, maxAgeXids: 1_000_000n };
  assert.deepEqual(chooseHold(marks, 500, 50n, 400n, ALWAYS), { hold: 50n, capped: false }, 'not moved on');
  assert.deepEqual(
    chooseHold(marks, undefined, 50n, 400n, young),
    { hold: 50n, capped: false },
    'not let go',
  );
  assert.deepEqual(chooseHold(marks, 500, null, 400n, young), { hold: null, capped: false });
  assert.deepEqual(
    chooseHold(marks, 2_500, 50n, 400n, young),
    { hold: null, capped: false },
    'known: let go',
  );
});

test('a hold older than the age limit goes to the oldest mark within it', () => {
  const limits = { minAgeXids: 0n, maxAgeXids: 160n };
  assert.deepEqual(chooseHold(marks, 1_000, 100n, 350n, limits), { hold: 200n, capped: true });
  assert.deepEqual(
    chooseHold(marks, 1_000, 100n, 1_000n, limits),
    { hold: 1_000n, capped: true },
    'none young enough',
  );
});

test('marks before the candidate are let go', () => {
  assert.deepEqual(
    marksFrom(marks, 200n).map((m) => m.xid),
    [200n, 300n],
  );
  assert.equal(marksFrom(marks, undefined).length, 3);
});
