import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockedError, describeError, ErrorCode, errorChain, FatalError, RetryableError } from './errors.ts';
import { classifyApplyError, classifyPgError } from './pg-errors.ts';

test('errorChain lists the error and its causes, outermost first, with their hints', () => {
  const driver = new Error('connect ECONNREFUSED 127.0.0.1:1');
  const wrapped = new RetryableError('connecting to node b: failed', {
    code: ErrorCode.PG_CONNECTION,
    hint: 'start the server',
    cause: driver,
  });
  const outer = new FatalError('setup', { code: ErrorCode.PG_CONNECTION, cause: wrapped });
  assert.deepEqual(errorChain(outer), [
    { message: 'setup', hint: undefined },
    { message: 'connecting to node b: failed', hint: 'start the server' },
    { message: 'connect ECONNREFUSED 127.0.0.1:1', hint: undefined },
  ]);
  assert.equal(describeError(outer), 'setup: connecting to node b: failed: connect ECONNREFUSED 127.0.0.1:1');
});

test('describeError ends at a cause that is not an Error, skips empty messages, survives a cycle', () => {
  assert.equal(describeError(new Error('outer', { cause: 'a string' })), 'outer: a string');
  assert.equal(describeError(new Error('outer', { cause: new Error('') })), 'outer');
  assert.equal(describeError(42), '42');
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  Object.assign(a, { cause: b });
  assert.equal(errorChain(a).length, 5);
});

test("a classified PostgreSQL error names what was done; PostgreSQL's words are only in its cause", () => {
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
  const cases = [
    [
      classifyPgError(
        pgError('28P01', 'password authentication failed for user "x"'),
        'connecting to node b',
      ),
      FatalError,
      ErrorCode.PG_AUTH,
    ],
    [
      classifyPgError(pgError('3D000', 'database "nope" does not exist'), 'connecting to node b'),
      FatalError,
      ErrorCode.PG_CONNECTION,
    ],
    [
      classifyPgError(pgError('42501', 'permission denied for table t'), 'repairing public.t on b'),
      FatalError,
      ErrorCode.PG_PREREQUISITE,
    ],
    [
      classifyPgError(new Error('connect ECONNREFUSED 127.0.0.1:1'), 'connecting to node b'),
      RetryableError,
      ErrorCode.PG_CONNECTION,
    ],
    [
      classifyApplyError(pgError('40P01', 'deadlock detected'), 'applying a -> b'),
      RetryableError,
      ErrorCode.APPLY_CONCURRENT,
    ],
    [
      classifyApplyError(
        pgError('23502', 'null value in column "v" violates not-null constraint'),
        'applying a -> b',
      ),
      BlockedError,
      ErrorCode.APPLY_REJECTED,
    ],
    [
      classifyApplyError(
        pgError(
          '0A000',
          'INSERT with ON CONFLICT clause cannot be used with table that has INSERT or UPDATE rules',
        ),
        'applying a -> b',
      ),
      BlockedError,
      ErrorCode.APPLY_REJECTED,
    ],
    [
      classifyApplyError(pgError('42P01', 'relation "t" does not exist'), 'applying a -> b'),
      BlockedError,
      ErrorCode.SCHEMA_MISMATCH,
    ],
  ] as const;
  for (const [error, Class, code] of cases) {
    const cause = error.cause as Error;
    assert.ok(error instanceof Class, `${error.message}: ${error.name}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, /^(connecting to node b|repairing public\.t on b|applying a -> b): /);
    assert.ok(!error.message.includes(cause.message), `"${error.message}" repeats its cause`);
    assert.equal(describeError(error), `${error.message}: ${cause.message}`);
  }
});

test('a system error code is not shown as a SQLSTATE (its message holds it already)', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  assert.equal(classifyPgError(refused, 'connecting to node b').message, 'connecting to node b: failed');
  const shutdown = Object.assign(new Error('terminating connection due to administrator command'), {
    code: '57P01',
  });
  assert.equal(
    classifyPgError(shutdown, 'connecting to node b').message,
    'connecting to node b: failed (SQLSTATE 57P01)',
  );
});
