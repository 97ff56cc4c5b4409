/**
 * Maps PostgreSQL failures to pgbisync's error classes by SQLSTATE (Debezium treats class 28,
 * authentication, as permanent). Pure: the caller decides what to do with the result.
 */
import { BlockedError, ErrorCode, FatalError, PgbisyncError, RetryableError } from './errors.ts';

/** Node's TLS verification failures (tls.TLSSocket's error codes): the server's certificate is not trusted. */
export const TLS_CERT_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

interface PgLikeError {
  code?: string;
}

/**
 * ` (SQLSTATE xxxxx)` when the code is one: PostgreSQL's message (the cause) does not show it. A system
 * error's code (ECONNREFUSED) is already in its message.
 */
function sqlstateNote(sqlstate: string): string {
  return /^[0-9A-Z]{5}$/.test(sqlstate) ? ` (SQLSTATE ${sqlstate})` : '';
}

/**
 * `where` says what was being done, on which node (`connecting to node db1`, `applying db1 -> db2`); the
 * new error's message adds only the classification, and PostgreSQL's own message stays in the cause.
 */
export function classifyPgError(error: unknown, where: string): PgbisyncError {
  if (error instanceof PgbisyncError) return error;
  const e = (error ?? {}) as PgLikeError;
  const sqlstate = typeof e.code === 'string' ? e.code : '';
  // Transport: retrying cannot help, the node url must change (docs/security.md).
  if (TLS_CERT_CODES.has(sqlstate)) {
    return new FatalError(`${where}: the server's TLS certificate is not trusted (${sqlstate})`, {
      code: ErrorCode.PG_CONNECTION,
      hint: "set sslrootcert=<the CA file that signed the server's certificate> (with sslmode=verify-full) in the node url",
      cause: error,
    });
  }
  if (sqlstate === '28000' && /no encryption/.test(String((error as { message?: unknown }).message))) {
    return new FatalError(`${where}: the server accepts this user over TLS only`, {
      code: ErrorCode.PG_AUTH,
      hint: "add sslmode=verify-full&sslrootcert=<the server's CA file> to the node url",
      cause: error,
    });
  }
  if (sqlstate.startsWith('28')) {
    return new FatalError(`${where}: authentication failed${sqlstateNote(sqlstate)}`, {
      code: ErrorCode.PG_AUTH,
      hint: 'check the user and password in the node url (or the env var it references)',
      cause: error,
    });
  }
  if (sqlstate === '3D000') {
    return new FatalError(`${where}: the database named in the node url does not exist`, {
      code: ErrorCode.PG_CONNECTION,
      hint: 'create the database or fix the database name in the node url',
      cause: error,
    });
  }
  if (sqlstate.startsWith('42') || sqlstate.startsWith('55') || sqlstate.startsWith('22')) {
    return new FatalError(`${where}: the server refused the statement${sqlstateNote(sqlstate)}`, {
      code: ErrorCode.PG_PREREQUISITE,
      cause: error,
    });
  }
  // Connection refused / reset, admin shutdown (57P01), too many connections (53300): try again later.
  return new RetryableError(`${where}: failed${sqlstateNote(sqlstate)}`, {
    code: ErrorCode.PG_CONNECTION,
    hint: 'check that the server is running and reachable at the node url',
    cause: error,
  });
}

/**
 * Like {@link classifyPgError}, for a transaction the applier wrote: SQL the target rejects (a value it
 * cannot take, a constraint, a missing object or privilege, a rule the statement does not support:
 * classes 22, 23, 42, 0A) blocks that stream until
 * an operator fixes the target; it would fail the same way on every retry, but the other streams go on.
 */
export function classifyApplyError(error: unknown, where: string): PgbisyncError {
  if (error instanceof PgbisyncError) return error;
  const e = (error ?? {}) as PgLikeError;
  const sqlstate = typeof e.code === 'string' ? e.code : '';
  const klass = sqlstate.slice(0, 2);
  if (klass === '40') {
    // Deadlock (40P01) or serialization failure (40001, also raised by the upsert when a local delete
    // raced it): the transaction rolled back whole and succeeds when applied again.
    return new RetryableError(
      `${where}: a local transaction on the same rows aborted it${sqlstateNote(sqlstate)}`,
      {
        code: ErrorCode.APPLY_CONCURRENT,
        hint: 'a local transaction wrote the same rows at the same moment; the applier applies the transaction again',
        cause: error,
      },
    );
  }
  if (klass === '22' || klass === '23' || klass === '42') {
    const missing = sqlstate === '42P01' || sqlstate === '42703';
    return new BlockedError(`${where}: the target rejected the transaction${sqlstateNote(sqlstate)}`, {
      code: missing ? ErrorCode.SCHEMA_MISMATCH : ErrorCode.APPLY_REJECTED,
      hint: 'make the target table accept the change (or fix the source row); the stream retries and resumes from the same event',
      cause: error,
    });
  }
  if (klass === '0A') {
    // Feature not supported: in practice a rule on the target table, which INSERT ... ON CONFLICT and
    // data-modifying WITH queries refuse (an ON UPDATE rule, or one set to fire on replicas). Retrying
    // cannot help, and it is not the connection.
    return new BlockedError(
      `${where}: the target does not support a statement the applier uses${sqlstateNote(sqlstate)}`,
      {
        code: ErrorCode.APPLY_REJECTED,
        hint: 'a rule on the target table is the usual cause (`pgbisync doctor` names it): do its work in a trigger instead and drop the rule; the stream retries and resumes from the same event',
        cause: error,
      },
    );
  }
  return classifyPgError(error, where);
}
