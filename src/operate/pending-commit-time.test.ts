import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commitTimeMs } from './pending-commit-time.ts';

const event = (source: unknown) => ({ before: null, after: { id: 1 }, source, op: 'c', ts_ms: 1 });

test('the commit time of a change event: source.ts_us, else source.ts_ms, with or without its schema', () => {
  const us = { ts_ms: 1_764_400_000_123, ts_us: 1_764_400_000_123_456 };
  assert.equal(commitTimeMs(Buffer.from(JSON.stringify(event(us)))), 1_764_400_000_123.456);
  assert.equal(
    commitTimeMs(Buffer.from(JSON.stringify({ schema: {}, payload: event({ ts_ms: 1_764_400_000_123 }) }))),
    1_764_400_000_123,
  );
});

test('a record that is not a change event has no commit time', () => {
  assert.equal(commitTimeMs(Buffer.from('not json')), null);
  assert.equal(commitTimeMs(Buffer.from('null')), null);
  assert.equal(commitTimeMs(Buffer.from(JSON.stringify(event(null)))), null);
  assert.equal(commitTimeMs(Buffer.from(JSON.stringify({ id: 1 }))), null);
});
