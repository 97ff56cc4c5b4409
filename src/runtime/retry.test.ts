import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, FatalError, RetryableError } from './errors.ts';
import { retryTransient } from './retry.ts';

const transient = () => new RetryableError('node a unreachable', { code: ErrorCode.PG_CONNECTION });

test('a transient failure is tried again with growing delays until the step succeeds', async () => {
  let calls = 0;
  const delays: number[] = [];
  const result = await retryTransient(
    async () => {
      calls++;
      if (calls < 4) throw transient();
      return 'up';
    },
    {
      signal: new AbortController().signal,
      minDelayMs: 1,
      maxDelayMs: 3,
      onRetry: (_e, d) => delays.push(d),
    },
  );
  assert.equal(result, 'up');
  assert.equal(calls, 4);
  assert.deepEqual(delays, [1, 2, 3]);
});

test('a fatal failure is not retried', async () => {
  let calls = 0;
  const fatal = new FatalError('wal_level is replica', { code: ErrorCode.PG_PREREQUISITE });
  await assert.rejects(
    retryTransient(
      async () => {
        calls++;
        throw fatal;
      },
      { signal: new AbortController().signal, minDelayMs: 1 },
    ),
    (e) => e === fatal,
  );
  assert.equal(calls, 1);
});

test('an abort ends the waiting with the last transient failure', async () => {
  const controller = new AbortController();
  const failure = transient();
  const running = retryTransient(
    async () => {
      throw failure;
    },
    { signal: controller.signal, minDelayMs: 60_000 },
  );
  setTimeout(() => controller.abort(), 10);
  await assert.rejects(running, (e) => e === failure);
});
