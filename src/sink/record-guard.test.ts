import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { transactionEndHeaders } from '../kafka/wire-headers.ts';
import { ErrorCode, type MalformedInputError } from '../runtime/errors.ts';
import { RecordGuard } from './record-guard.ts';
import type { DecodedChange } from './transaction-grouper.ts';

const guard = new RecordGuard({ sourceNode: 'a', targetNode: 'b', tables: ['public.t', 'app.orders'] });

function record(offset: number, headers: Record<string, string> = {}): InRecord {
  return {
    topic: 'pgbisync.a',
    partition: 0,
    offset: BigInt(offset),
    key: Buffer.from('k'),
    value: Buffer.from('v'),
    headers: new Map(Object.entries(headers)),
    timestampMs: 0,
  };
}

const change = (schema: string, table: string): DecodedChange => ({
  change: { op: 'c', schema, table, after: { id: '1' } },
  lsn: 1n,
  txId: '1',
  commitTimeUs: 1n,
  snapshot: false,
});

test('admit passes synced tables and refuses others, pgbisync.* first of all', () => {
  const ok = change('app', 'orders');
  assert.equal(guard.admit(ok, record(0)), ok);
  const refused: [DecodedChange, RegExp][] = [
    [change('public', 'secret'), /names table public\.secret, which is not synced/],
    [change('pgbisync', 'apply_progress'), /pgbisync's own table pgbisync\.apply_progress/],
    [change('public', 'T'), /names table public\.T/],
    [change('public.t', 'x'), /names table public\.t\.x/],
  ];
  for (const [c, message] of refused) {
    assert.throws(
      () => guard.admit(c, record(3)),
      (e: MalformedInputError) =>
        e.code === ErrorCode.EVENT_FOREIGN_TABLE && message.test(e.message) && /@3/.test(e.message),
    );
  }
  // pgbisync's own tables stay refused even when a config names them.
  const lax = new RecordGuard({ sourceNode: 'a', targetNode: 'b', tables: ['pgbisync.tombstones'] });
  assert.throws(() => lax.admit(change('pgbisync', 'tombstones'), record(0)), /pgbisync's own table/);
});

test('screen hands records with forged headers over and keeps their offsets as inert records', () => {
  const records = [record(0), record(1, { 'pgbisync.dlq.error': 'x' }), record(2, transactionEndHeaders(5n))];
  const rejected: [bigint, string][] = [];
  const out = guard.screen(records, (r, e) => rejected.push([r.offset, e.code]));
  assert.deepEqual(rejected, [[1n, ErrorCode.EVENT_FORGED_HEADER]]);
  assert.deepEqual(
    out.map((r) => [r.offset, r.value === null, r.headers.size]),
    [
      [0n, false, 0],
      [1n, true, 0],
      [2n, false, 3],
    ],
  );
  const clean = [record(0), record(1)];
  assert.equal(
    guard.screen(clean, () => assert.fail('nothing is forged')),
    clean,
  );
});
