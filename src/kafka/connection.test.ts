import assert from 'node:assert/strict';
import { test } from 'node:test';
import { baseOptions, retryDelayMs } from './connection.ts';

test('retriable Kafka errors are retried soon at first, then backing off, over at least the old 5 s window', () => {
  const options = baseOptions({ brokers: ['127.0.0.1:9092'], clientId: 't' });
  const retries = options.retries as number;
  const delay = options.retryDelay as (c: object, op: string, attempt: number, r: number, e: Error) => number;
  const delays = Array.from({ length: retries }, (_, i) =>
    delay({}, 'initProducerId', i + 1, retries, new Error('x')),
  );
  assert.deepEqual(delays, [100, 200, 400, 800, 1_600, 2_000]);
  // The library's fixed delay was 1 s between five retries: a broker restart had 5 s to come back.
  assert.ok(delays.reduce((a, b) => a + b, 0) >= 5_000);
  assert.equal(retryDelayMs(20), 2_000);
});
