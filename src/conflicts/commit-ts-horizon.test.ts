import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STAMP_RISK, stampRiskWarning } from './commit-ts-horizon.ts';

const horizon = Date.parse('2026-12-01T00:00:00Z');

test('a direction with pending changes from before its target horizon is warned about', () => {
  const w = stampRiskWarning('a', 'b', 12, horizon - 60_000, horizon);
  assert.ok(w !== undefined);
  assert.ok(w.startsWith(`b ${STAMP_RISK} of transactions before 2026-12-01T00:00:00.000Z`), w);
  assert.match(w, /a -> b has 12 records to apply, committed after 2026-11-30T23:59:00\.000Z/);
  assert.match(w, /fix: let the direction catch up, then run pgbisync verify/);
});

test('no warning without pending changes, past the horizon, or when either time is unknown', () => {
  assert.equal(stampRiskWarning('a', 'b', 0, horizon - 60_000, horizon), undefined, 'nothing pending');
  assert.equal(stampRiskWarning('a', 'b', 5, horizon, horizon), undefined, 'applied up to the horizon');
  assert.equal(stampRiskWarning('a', 'b', 5, horizon + 1, horizon), undefined, 'applied past it');
  assert.equal(stampRiskWarning('a', 'b', 5, null, horizon), undefined, 'nothing applied yet');
  assert.equal(stampRiskWarning('a', 'b', 5, horizon - 1, null), undefined, 'no horizon');
});
