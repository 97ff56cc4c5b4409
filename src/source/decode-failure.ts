/**
 * A slot PostgreSQL cannot decode past one change: the walsender reports the same ERROR at the same
 * position on every START_REPLICATION (logical decoding is deterministic: the same WAL under the same
 * historic catalog gives the same result). Seen in the torture test as `could not map filenumber
 * "base/..." to relation OID` (the decoder found no relation for a change's relfilenode in its historic
 * catalog snapshot); a publication row filter that raises an error (division by zero) does the same.
 * Restarting cannot help, so after {@link SAME_FAILURES_TO_BLOCK} identical failures with the slot's
 * confirmed position unchanged, the capture is blocked (PGB2006) with the fix instead of restarting
 * forever; a blocked capture is still retried, so a cause the operator removes lets it resume.
 *
 * Only errors the server sent (an ErrorResponse with a SQLSTATE) count, and not those of classes that
 * are transient by nature: connection loss (08), operator intervention such as a shutdown or a
 * cancelled walsender (57), resources (53), rollback and recovery conflicts (40).
 *
 * The filenumber error has a known cause, a PostgreSQL bug (seen on 18.4 and 15.20; pgsql-hackers, Nov
 * 2025: "the snapshot builder does not track transactions in BUILDING_SNAPSHOT"): a catalog change
 * (a TRUNCATE, any table's) that commits while a slot is being created, with an older transaction still
 * open when the creation moves on, is missing from the slot's historic catalog, and a later write to the
 * relation's new file cannot be decoded, on every attempt. A slot that hit it before confirming anything
 * beyond its creation's consistent point lost nothing yet: it is replaced (dropped, a new one made, the
 * node's tables copied again as `pgbisync resync` does) without an operator; see {@link isSlotCreationBug}.
 */
import { BlockedError, ErrorCode, RetryableError } from '../runtime/errors.ts';

/** Identical walsender failures at one position before the capture is blocked. */
export const SAME_FAILURES_TO_BLOCK = 3;

const TRANSIENT_CLASSES = new Set(['08', '57', '53', '40']);

/** The ErrorResponse PostgreSQL sent, found in `error` or its causes; undefined for any other failure. */
export function serverError(error: unknown): { code: string; message: string } | undefined {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const x = e as { code?: unknown; severity?: unknown; message?: unknown; cause?: unknown };
    // node-postgres' DatabaseError: the fields of an ErrorResponse (severity is sent with every one).
    if (typeof x.code === 'string' && /^[0-9A-Z]{5}$/.test(x.code) && typeof x.severity === 'string') {
      return { code: x.code, message: String(x.message) };
    }
    e = x.cause;
  }
  return undefined;
}

/** What one failed stream attempt saw: PostgreSQL's error and the slot's confirmed position then. */
export interface StreamFailure {
  readonly code: string;
  readonly message: string;
  readonly confirmedLsn: string | null;
}

/**
 * Counts the consecutive identical failures of one node's stream. Lives across the capture's attempts
 * (one per node); any other outcome (a different error, progress of the slot) starts the count over.
 */
export class RepeatedFailures {
  #last: StreamFailure | undefined;
  #count = 0;

  /** Records a failure; returns how many identical ones in a row it makes (1 for a new one). */
  record(f: StreamFailure): number {
    const same =
      this.#last !== undefined &&
      this.#last.code === f.code &&
      this.#last.message === f.message &&
      this.#last.confirmedLsn === f.confirmedLsn;
    this.#count = same ? this.#count + 1 : 1;
    this.#last = f;
    return this.#count;
  }

  /** The stream delivered something, or failed otherwise: the next failure is a first one. */
  reset(): void {
    this.#last = undefined;
    this.#count = 0;
  }
}

/** Is this server error one that restarting may cure (see the module comment)? */
export function transientServerError(code: string): boolean {
  return TRANSIENT_CLASSES.has(code.slice(0, 2));
}

/** PGB2006 for `node`'s capture, after `count` identical failures at `f.confirmedLsn`. */
export function undecodableSlotError(
  node: string,
  slot: string,
  f: StreamFailure,
  count: number,
  cause: unknown,
): BlockedError {
  return new BlockedError(
    `capture of node ${node}: PostgreSQL cannot decode replication slot ${slot} past ${f.confirmedLsn ?? 'its start'}: its walsender failed ${count} times in a row at that position with "${f.message}" (SQLSTATE ${f.code})`,
    {
      code: ErrorCode.SLOT_UNDECODABLE,
      hint: `if the cause can be removed on ${node} (an expression in a publication row filter that fails, for one), remove it: the capture retries every few seconds. Otherwise the slot cannot stream past that change: \`pgbisync resync ${node} --new-slot\` drops it, makes a new one and re-copies ${node}'s rows and remembered deletes to the other nodes under last-writer-wins while the other directions run on`,
      cause,
    },
  );
}

/**
 * PostgreSQL's "could not map filenumber" (15: "filenode") error of a relation the decoder's historic
 * catalog lacks: the signature of the slot-creation bug in the module comment.
 */
export function isSlotCreationBug(f: { readonly code: string; readonly message: string }): boolean {
  return f.code === 'XX000' && /^could not map file(number|node) ".*" to relation OID$/.test(f.message);
}

/** Replacements of a fresh slot hit by that bug, per slot and process, before the capture is blocked. */
export const MAX_FRESH_SLOT_REPLACEMENTS = 3;

/** The capture's message when it replaces such a slot (a retryable failure: the next attempt copies). */
export function freshSlotReplacedError(
  node: string,
  slot: string,
  f: StreamFailure,
  cause: unknown,
): RetryableError {
  return new RetryableError(
    `capture of node ${node}: replication slot ${slot} cannot be decoded ("${f.message}", SQLSTATE ${f.code}): PostgreSQL missed a catalog change committed while the slot was being created. Nothing was confirmed from it since its consistent point ${f.confirmedLsn ?? ''}, so nothing is lost: it was dropped, and the capture makes a new one and copies ${node}'s tables again`,
    { code: ErrorCode.SLOT_UNDECODABLE, cause },
  );
}
