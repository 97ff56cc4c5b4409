import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseHold, marksFrom, type XidMark } from './stamp-hold.ts';

const marks: XidMark[] = [
  { atMs: 1_000, xid: 100n },
  { atMs: 2_000, xid: 200n },
  { atMs: 3_000, xid: 300n },
];
const AGE = 1_000_000n;

test('a slot without an xmin holds the oldest mark until the watermark is known', () => {
  assert.deepEqual(chooseHold(marks, undefined, null, 400n, AGE), { hold: 100n, capped: false });
  assert.deepEqual(chooseHold([], undefined, null, 400n, AGE), { hold: null, capped: false });
});

test('the hold is the newest mark not later than the watermark, and only moves forward', () => {
  assert.deepEqual(chooseHold(marks, 2_500, 100n, 400n, AGE), { hold: 200n, capped: false });
  assert.deepEqual(chooseHold(marks, 2_000, 100n, 400n, AGE), { hold: 200n, capped: false });
  assert.deepEqual(
    chooseHold(marks, 999, 100n, 400n, AGE),
    { hold: 100n, capped: false },
    'no mark old enough',
  );
  assert.deepEqual(chooseHold(marks, 1_500, 250n, 400n, AGE), { hold: 250n, capped: false }, 'never back');
  assert.deepEqual(
    chooseHold(marks, undefined, 150n, 400n, AGE),
    { hold: 150n, capped: false },
    'unknown: stays',
  );
  assert.deepEqual(chooseHold(marks, Number.POSITIVE_INFINITY, 100n, 400n, AGE), {
    hold: 300n,
    capped: false,
  });
});

test('a hold older than the age limit goes to the oldest mark within it', () => {
  assert.deepEqual(chooseHold(marks, 1_000, 100n, 350n, 160n), { hold: 200n, capped: true });
  assert.deepEqual(
    chooseHold(marks, 1_000, 100n, 1_000n, 160n),
    { hold: 1_000n, capped: true },
    'no mark young enough',
  );
});

test('marks before the hold are let go', () => {
  assert.deepEqual(
    marksFrom(marks, 200n).map((m) => m.xid),
    [200n, 300n],
  );
  assert.equal(marksFrom(marks, null).length, 3);
});
