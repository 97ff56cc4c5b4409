import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import {
  isSlotCreationBug,
  RepeatedFailures,
  SAME_FAILURES_TO_BLOCK,
  serverError,
  transientServerError,
  undecodableSlotError,
} from './decode-failure.ts';

/** What node-postgres makes of an ErrorResponse (a DatabaseError carries severity and code). */
const pgError = (code: string, message: string) =>
  Object.assign(new Error(message), { code, severity: 'ERROR' });

test('serverError finds the ErrorResponse under the wrappers, and nothing in other failures', () => {
  const wrapped = new RetryableError('streaming from replication slot s failed', {
    code: ErrorCode.PG_CONNECTION,
    cause: pgError('XX000', 'could not map filenumber "base/1/2" to relation OID'),
  });
  assert.deepEqual(serverError(wrapped), {
    code: 'XX000',
    message: 'could not map filenumber "base/1/2" to relation OID',
  });
  // A socket error has a code but no severity; pgbisync's own errors have PGB codes.
  assert.equal(serverError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), undefined);
  assert.equal(serverError(new Error('x')), undefined);
  assert.equal(serverError(undefined), undefined);
});

test('connection, shutdown, resource and rollback classes are transient; decoding errors are not', () => {
  for (const code of ['08006', '57P01', '57014', '53200', '40001'])
    assert.equal(transientServerError(code), true, code);
  for (const code of ['XX000', '22012', '58P01', '42704'])
    assert.equal(transientServerError(code), false, code);
});

test('only the same error at the same slot position counts up; anything else starts over', () => {
  const f = new RepeatedFailures();
  const at = (lsn: string, message = 'could not map filenumber') => ({
    code: 'XX000',
    message,
    confirmedLsn: lsn,
  });
  assert.equal(f.record(at('0/10')), 1);
  assert.equal(f.record(at('0/10')), 2);
  // The slot moved: progress, so a new count.
  assert.equal(f.record(at('0/20')), 1);
  assert.equal(f.record(at('0/20', 'another error')), 1);
  assert.equal(f.record(at('0/20', 'another error')), 2);
  f.reset();
  assert.equal(f.record(at('0/20', 'another error')), 1);
  for (let i = 2; i <= SAME_FAILURES_TO_BLOCK; i++) assert.equal(f.record(at('0/20', 'another error')), i);
});

test('the blocked error names node, slot, position and PostgreSQL message, and the fix', () => {
  const e = undecodableSlotError(
    'n2',
    'pgbisync_n2',
    { code: 'XX000', message: 'boom', confirmedLsn: '0/16B3748' },
    3,
    new Error('x'),
  );
  assert.equal(e.code, ErrorCode.SLOT_UNDECODABLE);
  assert.match(
    e.message,
    /capture of node n2: PostgreSQL cannot decode replication slot pgbisync_n2 past 0\/16B3748: its walsender failed 3 times in a row at that position with "boom" \(SQLSTATE XX000\)/,
  );
  assert.match(e.hint ?? '', /`pgbisync resync n2 --new-slot` drops it/);
});

test("the slot-creation bug's signature: PostgreSQL 16+ and 15 wordings, nothing else", () => {
  assert.equal(
    isSlotCreationBug({ code: 'XX000', message: 'could not map filenumber "base/5/16384" to relation OID' }),
    true,
  );
  assert.equal(
    isSlotCreationBug({ code: 'XX000', message: 'could not map filenode "base/5/16384" to relation OID' }),
    true,
  );
  assert.equal(isSlotCreationBug({ code: '22012', message: 'division by zero' }), false);
  assert.equal(
    isSlotCreationBug({ code: 'XX000', message: 'cache lookup failed for relation 16384' }),
    false,
  );
});
