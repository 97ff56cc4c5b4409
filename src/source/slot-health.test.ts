import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import { judgeSlot, type SlotHealth, slotLoss } from './slot-health.ts';

const MB = 1024 * 1024;
const healthy: SlotHealth = {
  node: 'a',
  slot: 'pgbisync_a',
  exists: true,
  active: true,
  walStatus: 'reserved',
  safeWalBytes: null,
  maxSlotWalKeepBytes: null,
  invalidationReason: null,
  retainedWalBytes: 1000,
  confirmedFlushLsn: '0/1000',
  streamed: true,
  resyncRequestedAt: null,
};

test('judgeSlot: lost, close to lost, or fine', () => {
  const cases: [string, Partial<SlotHealth>, 'ok' | 'warn' | 'lost', RegExp | undefined][] = [
    ['streaming, no limit', {}, 'ok', undefined],
    ['not created yet (first start)', { exists: false, walStatus: null, streamed: false }, 'ok', undefined],
    ['extended: past max_wal_size, within the limit', { walStatus: 'extended' }, 'ok', undefined],
    ['plenty of safe WAL left', { safeWalBytes: 900 * MB, maxSlotWalKeepBytes: 1024 * MB }, 'ok', undefined],
    [
      'little safe WAL left',
      { safeWalBytes: 100 * MB, maxSlotWalKeepBytes: 1024 * MB },
      'warn',
      /can take 100 MB more WAL before max_slot_wal_keep_size \(1024 MB\) invalidates it/,
    ],
    ['past the limit', { walStatus: 'unreserved', safeWalBytes: -5 * MB }, 'warn', /wal_status unreserved/],
    [
      'gone after streaming',
      { exists: false, walStatus: null },
      'lost',
      /replication slot pgbisync_a is gone .* changes made on a since it was lost cannot be captured/,
    ],
    [
      'invalidated (PostgreSQL 15, 16: no reason)',
      { walStatus: 'lost', active: false },
      'lost',
      /invalidated by the server \(wal_status lost\): it held more WAL than max_slot_wal_keep_size/,
    ],
    [
      'invalidated, reason given (17+)',
      { walStatus: 'lost', invalidationReason: 'idle_timeout' },
      'lost',
      /\(wal_status lost, invalidation_reason idle_timeout\): it stayed inactive longer/,
    ],
    [
      'gone, resync asked for',
      { exists: false, walStatus: null, resyncRequestedAt: '2026-01-01T00:00:00+00:00' },
      'lost',
      /is gone .*\(a resync was requested at 2026-01-01T00:00:00\+00:00\)/,
    ],
    [
      'resync under way on a new slot',
      { streamed: false, resyncRequestedAt: '2026-01-01T00:00:00+00:00' },
      'warn',
      /re-copy of a's tables requested at 2026-01-01T00:00:00\+00:00, not finished/,
    ],
  ];
  for (const [name, change, kind, text] of cases) {
    const verdict = judgeSlot({ ...healthy, ...change });
    assert.equal(verdict.kind, kind, name);
    if (verdict.kind === 'lost') {
      assert.ok(verdict.error instanceof BlockedError, name);
      assert.equal(verdict.error.code, ErrorCode.SLOT_LOST, name);
      assert.match(verdict.error.message, /^capture of node a: /, name);
      assert.match(verdict.error.hint ?? '', /^run `pgbisync resync a`: /, name);
      assert.match(verdict.error.message, text!, name);
    }
    if (verdict.kind === 'warn') assert.match(verdict.problem, text!, name);
  }
});

test('slotLoss: a missing slot is a loss only once the capture streamed from one', () => {
  assert.equal(slotLoss({ exists: false, walStatus: null, streamed: false }), undefined);
  assert.equal(slotLoss({ exists: false, walStatus: null, streamed: true }), 'missing');
  assert.equal(slotLoss({ exists: true, walStatus: 'lost', streamed: false }), 'invalidated');
  assert.equal(slotLoss({ exists: true, walStatus: 'unreserved', streamed: true }), undefined);
});
