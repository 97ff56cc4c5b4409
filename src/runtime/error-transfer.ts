/**
 * Errors across a worker thread's boundary. Structured clone keeps an Error's message and stack but
 * drops its class, `code`, `hint` and most of its cause chain, and the supervisor (which error is fatal,
 * blocked, a race to retry at once) and the operator's report (the fix, the causes) depend on those. An
 * error crosses as plain data and is rebuilt as the same pgbisync error class on the other side.
 */
import { BlockedError, type ErrorCode, FatalError, MalformedInputError, RetryableError } from './errors.ts';

export interface TransferredError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  /** pgbisync's ErrorCode, or a driver's own code (pg's SQLSTATE, a system error's ENOENT). */
  readonly code?: string;
  readonly hint?: string;
  /** Other own fields with primitive values (pg's detail, table, constraint...), kept for the logs. */
  readonly fields?: Readonly<Record<string, string | number | boolean>>;
  readonly cause?: TransferredError;
}

const CLASSES = { RetryableError, FatalError, BlockedError, MalformedInputError } as const;
/** Causes kept below the error itself (the operator's report prints five levels). */
const MAX_CAUSES = 8;
const OWN_HANDLED = new Set(['name', 'message', 'stack', 'code', 'hint', 'cause']);

export function toTransferable(error: unknown, depth = 0): TransferredError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const fields: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(error)) {
    if (OWN_HANDLED.has(key)) continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      fields[key] = value;
  }
  const code = (error as { code?: unknown }).code;
  const hint = (error as { hint?: unknown }).hint;
  return {
    name: error.name,
    message: error.message,
    ...(error.stack !== undefined ? { stack: error.stack } : {}),
    ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code) } : {}),
    ...(typeof hint === 'string' ? { hint } : {}),
    ...(Object.keys(fields).length > 0 ? { fields } : {}),
    ...(error.cause !== undefined && depth < MAX_CAUSES
      ? { cause: toTransferable(error.cause, depth + 1) }
      : {}),
  };
}

export function fromTransferable(t: TransferredError): Error {
  const cause = t.cause === undefined ? undefined : fromTransferable(t.cause);
  const Class = Object.hasOwn(CLASSES, t.name) ? CLASSES[t.name as keyof typeof CLASSES] : undefined;
  let error: Error;
  if (Class !== undefined && t.code !== undefined) {
    error = new Class(t.message, {
      code: t.code as ErrorCode,
      ...(t.hint !== undefined ? { hint: t.hint } : {}),
      ...(cause !== undefined ? { cause } : {}),
    });
  } else {
    error = new Error(t.message, cause === undefined ? undefined : { cause });
    error.name = t.name;
    if (t.code !== undefined) Object.assign(error, { code: t.code });
    if (t.hint !== undefined) Object.assign(error, { hint: t.hint });
  }
  if (t.fields !== undefined) Object.assign(error, t.fields);
  if (t.stack !== undefined) error.stack = t.stack;
  return error;
}
