/**
 * The commit-timestamp horizon of a node: the commit time before which PostgreSQL truncated the commit
 * timestamps of transactions.
 *
 * Last-writer-wins reads a row's version time as `pg_xact_commit_timestamp(xmin)`. PostgreSQL keeps
 * commit timestamps only for xids from `oldestCommitTsXid` on: vacuum moves it up to the cluster's
 * oldest `datfrozenxid` (once every database froze `vacuum_freeze_min_age` xids, 50 million by default)
 * and truncates the older ones. A row committed before the horizon then reads as of unknown time (the
 * Unix epoch, ./policy.ts), so a change still on its way that is older than the row's true commit time,
 * yet newer than the epoch, would win against it. That takes a direction lagging behind the horizon of
 * its target: `status` warns about it (stampRiskWarning) and `run` logs it.
 *
 * The horizon is the commit time of the cluster's oldest `datfrozenxid` (what vacuum truncates to; a
 * database left half dropped, `datconnlimit` -2, does not count, as for vacuum), or of
 * the first of the following xids that has one (an aborted or unused xid has none). When the last
 * checkpoint's `oldest_commit_ts_xid` (`pg_control_checkpoint()`, superuser or pg_monitor rights; skipped
 * without them) is newer, the commit timestamps start where `track_commit_timestamp` was turned on and
 * nothing was truncated since: the rows before have always been of unknown time (ordered by the epoch
 * rule, by design), and there is no horizon.
 */
import type { Queryable } from '../pg/table-catalog.ts';

/** The words that mark the warning (the daemon logs it once while it lasts). */
export const STAMP_RISK = 'no longer keeps the commit times';

/** How many xids from the oldest kept one are looked at for a commit time. */
const PROBED_XIDS = 1000;

/**
 * The horizon of `db`'s server in ms since the Unix epoch, or null when there is none to tell
 * (`track_commit_timestamp` off, nothing truncated since it was turned on, or no commit time among the
 * first xids from the frozen one).
 */
export async function readCommitTsHorizonMs(db: Queryable): Promise<number | null> {
  const on = await db.query<{ on: string }>("SELECT current_setting('track_commit_timestamp') AS on");
  if (on.rows[0]?.on !== 'on') return null;
  let checkpointXid: string | null = null;
  try {
    const c = await db.query<{ x: string | null }>(
      'SELECT oldest_commit_ts_xid::text AS x FROM pg_control_checkpoint()',
    );
    checkpointXid = c.rows[0]?.x ?? null;
  } catch (error) {
    // 42501: not allowed to read the control file; the frozen xid alone still bounds the horizon.
    if ((error as { code?: string }).code !== '42501') throw error;
  }
  // 0: commit timestamps were off at the last checkpoint, turned on since: nothing truncated yet.
  if (checkpointXid === '0') return null;
  // The frozen xid, unless the checkpoint's oldest kept xid is newer (then nothing was truncated).
  const r = await db.query<{ ms: string | null }>(
    `WITH frozen AS (
       SELECT datfrozenxid AS x FROM pg_database WHERE datconnlimit <> -2 ORDER BY age(datfrozenxid) DESC LIMIT 1
     ), oldest AS (
       SELECT x::text::bigint AS x FROM frozen
        WHERE $1::text IS NULL OR age(x) <= age($1::text::xid)
     )
     SELECT (extract(epoch FROM ts) * 1000)::float8::text AS ms FROM (
       SELECT g, pg_xact_commit_timestamp((((oldest.x - 3 + g) % 4294967293) + 3)::text::xid) AS ts
         FROM oldest, generate_series(0, $2::int - 1) g
     ) probed WHERE ts IS NOT NULL ORDER BY g LIMIT 1`,
    [checkpointXid, PROBED_XIDS],
  );
  const ms = r.rows[0]?.ms;
  return ms === undefined || ms === null ? null : Number(ms);
}

/**
 * The warning for a direction whose target may hold rows of unknown time that a pending change would
 * wrongly replace: changes are pending (`kafkaLag` > 0) and the last applied source commit time is older
 * than the target's horizon, so a pending change may be too. Undefined otherwise (or when either is
 * unknown). Changes still in the source's slot (its capture down) count once they reach Kafka. A source
 * that writes again after an idle spell longer than the horizon's age also meets this test: `status`
 * then reads the first pending change's own commit time (../operate/pending-commit-time.ts) and drops
 * the warning when it is not older than the horizon.
 */
export function stampRiskWarning(
  source: string,
  target: string,
  kafkaLag: number,
  appliedCommitMs: number | null,
  targetHorizonMs: number | null,
): string | undefined {
  if (kafkaLag <= 0 || appliedCommitMs === null || targetHorizonMs === null) return undefined;
  if (appliedCommitMs >= targetHorizonMs) return undefined;
  const at = (ms: number) => new Date(ms).toISOString();
  return (
    `${target} ${STAMP_RISK} of transactions before ${at(targetHorizonMs)} ` +
    '(commit timestamps truncated by vacuum), while ' +
    `${source} -> ${target} has ${kafkaLag} records to apply, committed after ${at(appliedCommitMs)}: one older ` +
    `than a row of unknown time on ${target} would replace it; fix: let the direction catch up, then run ` +
    'pgbisync verify (and verify --repair on differences); keep directions from lagging behind vacuum_freeze_min_age xids'
  );
}
