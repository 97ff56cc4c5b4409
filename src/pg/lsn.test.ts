import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import { compareLsn, formatLsn, MAX_LSN, maxLsn, parseLsn, ZERO_LSN } from './lsn.ts';

// [text as PostgreSQL prints it, value]
const CANONICAL: readonly (readonly [string, bigint])[] = [
  ['0/0', ZERO_LSN],
  ['0/1', 1n],
  ['0/FFFFFFFF', 0xffff_ffffn],
  ['1/0', 0x1_0000_0000n],
  ['16/B374D848', 0x16_b374_d848n],
  ['FFFFFFFF/FFFFFFFF', MAX_LSN],
];

// [accepted text, value]: pg_lsn input takes any case and leading zeros.
const ACCEPTED: readonly (readonly [string, bigint])[] = [
  ['16/b374d848', 0x16_b374_d848n],
  ['00000016/0000000A', 0x16_0000_000an],
  ['0/00000000', 0n],
  ['ffffffff/ffffffff', MAX_LSN],
];

const INVALID: readonly string[] = [
  '',
  '0',
  '/',
  '0/',
  '/0',
  '0//0',
  '0/0/0',
  '123456789/0',
  '0/123456789',
  'G/0',
  '0/0x1',
  '0x1/0',
  '-1/0',
  '+1/0',
  ' 0/0',
  '0/0 ',
  '0 /0',
  '0/0\n',
  '１/0',
];

describe('parseLsn / formatLsn', () => {
  for (const [text, value] of CANONICAL) {
    it(`round-trips ${text}`, () => {
      assert.equal(parseLsn(text), value);
      assert.equal(formatLsn(value), text);
    });
  }

  for (const [text, value] of ACCEPTED) {
    it(`parses ${text}`, () => {
      assert.equal(parseLsn(text), value);
      assert.equal(parseLsn(formatLsn(value)), value);
    });
  }

  for (const text of INVALID) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseLsn(text),
        (error: unknown) =>
          error instanceof MalformedInputError &&
          error.code === ErrorCode.PGOUTPUT_MALFORMED &&
          error.message.startsWith(`invalid LSN '${text}'`),
      );
    });
  }

  it('refuses to format values outside 0..2^64-1', () => {
    assert.throws(() => formatLsn(-1n), RangeError);
    assert.throws(() => formatLsn(MAX_LSN + 1n), RangeError);
  });
});

describe('compareLsn / maxLsn', () => {
  // Ordered: each is less than the next. Compares as unsigned 64-bit, across the high/low boundary.
  const ORDERED = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 0x16_b374_d848n, MAX_LSN - 1n, MAX_LSN];

  it('orders LSNs numerically', () => {
    for (const [i, a] of ORDERED.entries()) {
      for (const [j, b] of ORDERED.entries()) {
        assert.equal(compareLsn(a, b), Math.sign(i - j), `${formatLsn(a)} vs ${formatLsn(b)}`);
        assert.equal(maxLsn(a, b), i >= j ? a : b);
      }
    }
  });

  it('sorts with compareLsn as comparator', () => {
    const shuffled = [3, 0, 6, 2, 1, 5, 4].map((i) => ORDERED[i]!);
    assert.deepEqual(shuffled.sort(compareLsn), ORDERED);
  });
});
