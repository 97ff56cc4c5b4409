/**
 * LSN (WAL position) as bigint: parsing and formatting in PostgreSQL's `X/X` text form (pg_lsn), the one
 * place the project converts between the two. https://www.postgresql.org/docs/current/datatype-pg-lsn.html
 */
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';

export const ZERO_LSN = 0n;
/** The largest LSN: an unsigned 64-bit WAL position. */
export const MAX_LSN = 0xffff_ffff_ffff_ffffn;

/**
 * Parses `X/X` (1 to 8 hex digits on each side, any case, as pg_lsn accepts). Throws MalformedInputError
 * naming the text on anything else.
 */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (match === null) {
    throw new MalformedInputError(`invalid LSN '${text}' (expected hex 'X/X' like '16/B374D848')`, {
      code: ErrorCode.PGOUTPUT_MALFORMED,
    });
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * Formats as PostgreSQL prints a pg_lsn (upper-case hex, no padding). A value outside 0..{@link MAX_LSN}
 * is a programming error, so it throws RangeError rather than producing text the server would reject.
 */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN ${lsn} is outside 0..2^64-1`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function compareLsn(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
