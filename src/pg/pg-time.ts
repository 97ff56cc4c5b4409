/**
 * PostgreSQL's epoch. Timestamps in the replication protocol (pgoutput Begin/Commit times, the standby
 * status update's clock) count microseconds since 2000-01-01 00:00 UTC, not since the Unix epoch.
 * https://www.postgresql.org/docs/current/protocol-replication.html
 */

/** Microseconds from the Unix epoch (1970-01-01) to PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

/** A protocol timestamp (µs since 2000-01-01) as µs since the Unix epoch. */
export function pgTimestampToUnixUs(pgUs: bigint): bigint {
  return pgUs + PG_EPOCH_OFFSET_US;
}

/** Milliseconds since the Unix epoch (`Date.now()`) as a protocol timestamp (µs since 2000-01-01). */
export function unixMsToPgTimestamp(unixMs: number): bigint {
  return BigInt(unixMs) * 1000n - PG_EPOCH_OFFSET_US;
}
