import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pgTimestampToUnixUs, unixMsToPgTimestamp } from './pg-time.ts';

describe('pg-time', () => {
  const pgEpochMs = Date.UTC(2000, 0, 1);
  for (const [name, unixMs] of [
    ['the PostgreSQL epoch', pgEpochMs],
    ['the Unix epoch', 0],
    ['a day in 2026', Date.UTC(2026, 11, 24, 13, 5, 7, 891)],
  ] as const) {
    it(`converts ${name} both ways`, () => {
      const pgUs = unixMsToPgTimestamp(unixMs);
      assert.equal(pgUs, BigInt(unixMs - pgEpochMs) * 1000n);
      assert.equal(pgTimestampToUnixUs(pgUs), BigInt(unixMs) * 1000n);
    });
  }
});
