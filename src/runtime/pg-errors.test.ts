import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FatalError, RetryableError } from './errors.ts';
import { classifyPgError } from './pg-errors.ts';

test('transport failures are fatal and name the node url fix; a refused connection is retried', () => {
  const cases: [object, typeof FatalError | typeof RetryableError, RegExp, RegExp][] = [
    [
      { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', message: 'unable to verify the first certificate' },
      FatalError,
      /^connecting to node a: the server's TLS certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/,
      /sslrootcert=/,
    ],
    [
      {
        code: '28000',
        message: 'pg_hba.conf rejects connection for host "127.0.0.1", user "u", database "d", no encryption',
      },
      FatalError,
      /^connecting to node a: the server accepts this user over TLS only$/,
      /sslmode=verify-full/,
    ],
    [
      { code: '28P01', message: 'password authentication failed for user "u"' },
      FatalError,
      /authentication failed \(SQLSTATE 28P01\)/,
      /password/,
    ],
    [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, RetryableError, /failed$/, /running/],
  ];
  for (const [error, kind, message, hint] of cases) {
    const classified = classifyPgError(Object.assign(new Error(), error), 'connecting to node a');
    assert.ok(classified instanceof kind, `${JSON.stringify(error)} -> ${classified.name}`);
    assert.match(classified.message, message);
    assert.match(classified.hint ?? '', hint);
  }
});
