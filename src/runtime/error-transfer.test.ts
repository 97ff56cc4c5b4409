import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromTransferable, toTransferable } from './error-transfer.ts';
import { BlockedError, ErrorCode, FatalError, MalformedInputError, RetryableError } from './errors.ts';

/** Through a structured clone, as a worker thread's message goes. */
const across = (error: unknown) => fromTransferable(structuredClone(toTransferable(error)));

test('each pgbisync error class comes back as itself, with its code, hint and stack', () => {
  for (const Class of [RetryableError, FatalError, BlockedError, MalformedInputError]) {
    const sent = new Class('it failed', { code: ErrorCode.APPLY_REJECTED, hint: 'fix the target' });
    const got = across(sent);
    assert.ok(got instanceof Class, `${Class.name} rebuilt as ${got.constructor.name}`);
    assert.equal(got.name, Class.name);
    assert.equal(got.message, 'it failed');
    assert.equal((got as RetryableError).code, ErrorCode.APPLY_REJECTED);
    assert.equal((got as RetryableError).hint, 'fix the target');
    assert.equal(got.stack, sent.stack);
  }
});

test("the cause chain and a driver error's own fields cross too; other values become errors", () => {
  const driver = Object.assign(new Error('database "nope" does not exist'), {
    code: '3D000',
    severity: 'FATAL',
    position: 7,
    query: { text: 'not a primitive' },
  });
  const sent = new FatalError('capture db1: database "nope" does not exist', {
    code: ErrorCode.PG_CONNECTION,
    cause: driver,
  });
  const got = across(sent);
  assert.ok(got instanceof FatalError);
  const cause = got.cause as Error & Record<string, unknown>;
  assert.ok(cause instanceof Error);
  assert.equal(cause.message, 'database "nope" does not exist');
  assert.equal(cause.code, '3D000');
  assert.equal(cause.severity, 'FATAL');
  assert.equal(cause.position, 7);
  assert.equal(cause.query, undefined, 'objects are not carried');

  const thrown = across('a string was thrown');
  assert.ok(thrown instanceof Error);
  assert.equal(thrown.message, 'a string was thrown');
  // A class name without a pgbisync code is not trusted as that class.
  const plain = across(Object.assign(new Error('x'), { name: 'FatalError' }));
  assert.ok(!(plain instanceof FatalError));
  assert.equal(plain.name, 'FatalError');
});
