/**
 * A physical replication slot kept for its xmin alone: vacuum neither removes nor freezes the row
 * versions of transactions from that xmin on, so their commit timestamps stay (PostgreSQL truncates
 * commit timestamps only behind the cluster's oldest frozen xid, which cannot pass a slot's xmin).
 * PostgreSQL 18 keeps the dead rows its conflict detection needs the same way (`retain_dead_tuples`:
 * the `pg_conflict_detection` slot).
 *
 * Only a standby's hot-standby feedback sets a physical slot's xmin, so {@link setSlotXmin} opens a
 * replication connection, starts streaming from the server's current position, sends one feedback
 * message and ends the stream. The slot is made without reserving WAL and is never sent a flush
 * position, so it holds no WAL; the xmin stays after the connection ends, across restarts (saved at the
 * next checkpoint), until set again or the slot is dropped.
 *
 * Protocol: https://www.postgresql.org/docs/current/protocol-replication.html ('h' hot standby feedback).
 */
import { newPgClient } from '../client.ts';
import { formatLsn, parseLsn } from '../lsn.ts';
import { unixMsToPgTimestamp } from '../pg-time.ts';
import { quoteIdent } from '../sql-names.ts';
import type { Queryable } from '../table-catalog.ts';
import type { PgConnectionInternals } from './replication-connection.ts';

/** How long the one-message stream may take before the connection is dropped. */
const STREAM_TIMEOUT_MS = 10_000;

/**
 * Makes the physical slot `slot` unless it exists; true when it was made. It reserves no WAL
 * (`immediately_reserve` false) and holds no xmin until {@link setSlotXmin} gives it one.
 */
export async function ensureXminSlot(db: Queryable, slot: string): Promise<boolean> {
  const r = await db.query<{ made: boolean }>(
    `SELECT pg_create_physical_replication_slot($1, false) IS NOT NULL AS made
      WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
    [slot],
  );
  return r.rows.length > 0;
}

/** The slot's xmin as a full transaction id (xid8), or null when it holds none or does not exist. */
export async function readSlotXmin(db: Queryable, slot: string): Promise<bigint | null> {
  // The 32-bit xmin widened with the epoch of the current xid (an xmin is never from the future).
  const r = await db.query<{ x: string | null }>(
    `SELECT CASE WHEN s.xmin IS NULL THEN NULL ELSE (
              ((pg_current_xact_id()::text::bigint >> 32)
               - CASE WHEN s.xmin::text::bigint > (pg_current_xact_id()::text::bigint & 4294967295) THEN 1 ELSE 0 END) << 32
              | s.xmin::text::bigint)::text END AS x
       FROM pg_replication_slots s WHERE s.slot_name = $1`,
    [slot],
  );
  const x = r.rows[0]?.x;
  return x === undefined || x === null ? null : BigInt(x);
}

/** Sets the physical slot's xmin to the full transaction id `xid` (it may move either way). */
export async function setSlotXmin(
  url: string,
  slot: string,
  xid: bigint,
  applicationName: string,
): Promise<void> {
  const client = newPgClient({
    connectionString: url,
    application_name: applicationName,
    // biome-ignore lint/suspicious/noExplicitAny: `replication` is a startup parameter pg passes through untyped.
    ...({ replication: 'database' } as any),
  });
  await client.connect();
  let timer: NodeJS.Timeout | undefined;
  try {
    const system = await client.query<{ xlogpos: string }>('IDENTIFY_SYSTEM');
    const position = parseLsn(system.rows[0]!.xlogpos);
    const connection = (client as unknown as { connection: PgConnectionInternals }).connection;
    // The server reads the feedback and CopyDone once streaming started (a server that refused the
    // command ignores CopyData and CopyDone, as the protocol says, and the query fails).
    const streamed = client.query(
      `START_REPLICATION SLOT ${quoteIdent(slot)} PHYSICAL ${formatLsn(position)}`,
    );
    connection.sendCopyFromChunk(hotStandbyFeedback(xid, Date.now()));
    connection.endCopyFrom();
    await Promise.race([
      streamed,
      new Promise((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`setting the xmin of slot ${slot}: no answer within ${STREAM_TIMEOUT_MS} ms`)),
          STREAM_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await client.end().catch(() => undefined);
  }
}

/** 'h': send time, xmin and its epoch; no catalog xmin. */
export function hotStandbyFeedback(xid: bigint, nowMs: number): Buffer {
  const buf = Buffer.alloc(25);
  buf[0] = 0x68; // 'h'
  buf.writeBigInt64BE(unixMsToPgTimestamp(nowMs), 1);
  buf.writeUInt32BE(Number(xid & 0xffffffffn), 9);
  buf.writeUInt32BE(Number(xid >> 32n), 13);
  buf.writeUInt32BE(0, 17);
  buf.writeUInt32BE(0, 21);
  return buf;
}
