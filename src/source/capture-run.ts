/**
 * The run of a node's capture: a number each start of the capture takes, above every earlier run's of
 * the node, sent on the first record of each transaction (../kafka/wire-headers.ts RUN_HEADER). An
 * applier that read a run's records drops a transaction start from an older run: records of a capture
 * fenced off by a takeover that land after its successor's (docs/correctness.md).
 *
 * The number is the source's clock in microseconds, or one above the node's last run when that is
 * higher (a clock set back), kept in pgbisync.capture_runs on the source. Both would have to go back
 * for a run to come out lower than an earlier one (the data folder restored from a disk snapshot and
 * the clock set back): its transactions would then be dropped by appliers that read the earlier run.
 */
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';

const UNDEFINED_TABLE = '42P01';

/** Takes the next run of `node`'s capture on the node (its admin session). */
export async function takeCaptureRun(db: Queryable, node: string): Promise<bigint> {
  try {
    const r = await db.query<{ run: string }>(
      `INSERT INTO pgbisync.capture_runs AS c (node, run)
         VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
       ON CONFLICT (node) DO UPDATE SET run = greatest(c.run + 1, EXCLUDED.run)
       RETURNING run::text`,
      [node],
    );
    return BigInt(r.rows[0]!.run);
  } catch (error) {
    if ((error as { code?: unknown }).code !== UNDEFINED_TABLE) throw error;
    throw new BlockedError(
      `capture of node ${node}: pgbisync.capture_runs is missing (a schema older than this pgbisync)`,
      {
        code: ErrorCode.PG_PREREQUISITE,
        hint: 'run `pgbisync setup` (it brings the pgbisync schema up to date); the capture then starts',
        cause: error,
      },
    );
  }
}
