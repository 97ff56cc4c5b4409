import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockedError, ErrorCode, FatalError, MalformedInputError, RetryableError } from './errors.ts';
import { supervise } from './supervisor.ts';

const untilAborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });

test('a component failing with a retryable error is restarted; abort stops everything', async () => {
  let runs = 0;
  const restarts: string[] = [];
  const controller = new AbortController();
  const done = supervise(
    [
      {
        name: 'flaky',
        run: async (signal) => {
          runs++;
          if (runs < 3) throw new RetryableError('broker gone', { code: ErrorCode.KAFKA });
          controller.abort();
          await untilAborted(signal);
        },
      },
      { name: 'steady', run: untilAborted },
    ],
    controller.signal,
    { onRestart: (name) => restarts.push(name) },
  );
  await done;
  assert.equal(runs, 3);
  assert.deepEqual(restarts, ['flaky', 'flaky']);
});

test('a fatal error stops every component and rejects with it', async () => {
  const stopped: string[] = [];
  const fatal = new FatalError('bad password', { code: ErrorCode.PG_AUTH });
  await assert.rejects(
    supervise(
      [
        { name: 'bad', run: async () => Promise.reject(fatal) },
        { name: 'other', run: untilAborted },
      ],
      new AbortController().signal,
      { onStopped: (name) => stopped.push(name) },
    ),
    (error) => error === fatal,
  );
  assert.deepEqual(stopped.sort(), ['bad', 'other']);
});

test('a blocked component is reported as blocked and retried while the others run on', async () => {
  let runs = 0;
  const blocked: string[] = [];
  const restarts: string[] = [];
  let otherRunning = false;
  const controller = new AbortController();
  await supervise(
    [
      {
        name: 'apply a->b',
        run: async (signal) => {
          runs++;
          if (runs < 3)
            throw new BlockedError('column t.c does not exist', { code: ErrorCode.SCHEMA_MISMATCH });
          assert.ok(otherRunning, 'the other component kept running while this one was blocked');
          controller.abort();
          await untilAborted(signal);
        },
      },
      {
        name: 'apply b->a',
        run: async (signal) => {
          otherRunning = true;
          await untilAborted(signal);
        },
      },
    ],
    controller.signal,
    { onBlocked: (name) => blocked.push(name), onRestart: (name) => restarts.push(name) },
  );
  assert.equal(runs, 3);
  assert.deepEqual(blocked, ['apply a->b', 'apply a->b']);
  assert.deepEqual(restarts, []);
});

test('a transaction that lost a race with a local write is retried at once, without backoff', async () => {
  let runs = 0;
  const delays: number[] = [];
  const controller = new AbortController();
  await supervise(
    [
      {
        name: 'apply a->b',
        run: async (signal) => {
          runs++;
          if (runs <= 4) {
            throw new RetryableError('deleted meanwhile (SQLSTATE 40001)', {
              code: ErrorCode.APPLY_CONCURRENT,
            });
          }
          if (runs === 5) throw new RetryableError('broker gone', { code: ErrorCode.KAFKA });
          controller.abort();
          await untilAborted(signal);
        },
      },
    ],
    controller.signal,
    { onRestart: (_, __, delayMs) => delays.push(delayMs) },
  );
  assert.equal(runs, 6);
  // Four immediate retries, then the first real failure starts the backoff at its minimum.
  assert.deepEqual(delays, [50, 50, 50, 50, 500]);
});

test('input one stream cannot read blocks that stream only (malformed bytes, a type without mapping); other fatal errors stop all', async () => {
  const blocked: { name: string; code: string }[] = [];
  let otherRuns = 0;
  const controller = new AbortController();
  let malformedRuns = 0;
  let unmappedRuns = 0;
  await supervise(
    [
      {
        name: 'capture a',
        run: async () => {
          malformedRuns++;
          throw new MalformedInputError('pgoutput: unknown message tag 0x5a', {
            code: ErrorCode.PGOUTPUT_MALFORMED,
          });
        },
      },
      {
        name: 'apply x->b',
        run: async () => {
          unmappedRuns++;
          throw new FatalError('no PostgreSQL mapping for Connect schema io.example.Thing', {
            code: ErrorCode.TYPE_UNSUPPORTED,
          });
        },
      },
      {
        name: 'apply b->a',
        run: async (signal) => {
          otherRuns++;
          setTimeout(() => controller.abort(), 1200);
          await untilAborted(signal);
        },
      },
    ],
    controller.signal,
    { onBlocked: (name, error) => blocked.push({ name, code: error.code }) },
  );
  assert.equal(otherRuns, 1, 'the other direction ran on, never restarted');
  assert.ok(malformedRuns >= 2 && unmappedRuns >= 2, 'both blocked streams were retried');
  assert.deepEqual(blocked.find((b) => b.name === 'capture a')?.code, ErrorCode.PGOUTPUT_MALFORMED);
  assert.deepEqual(blocked.find((b) => b.name === 'apply x->b')?.code, ErrorCode.TYPE_UNSUPPORTED);
});

test('a signal aborted before supervise starts (SIGTERM during start-up) stops it at once', async () => {
  const controller = new AbortController();
  controller.abort();
  let runs = 0;
  const outcome = await Promise.race([
    supervise(
      [
        {
          name: 'kafka-less',
          run: async () => {
            runs++;
            throw new RetryableError('no broker', { code: ErrorCode.KAFKA });
          },
        },
      ],
      controller.signal,
    ).then(() => 'stopped'),
    new Promise((resolve) => setTimeout(() => resolve('still running after 2 s'), 2_000).unref()),
  ]);
  assert.equal(outcome, 'stopped');
  assert.equal(runs, 0);
});
