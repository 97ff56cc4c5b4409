/**
 * Huge transactions (issue: bounded memory): one source transaction inserting `rows` rows of a 5-column
 * table, then one updating all of them, replicated db1 -> db2 by pgbisync and, in the same run, by native
 * logical replication. Each is timed from the source commit to the moment a marker committed right
 * after it is visible on db2 (the whole transaction applied: both keep commit order). pgbisync's peak
 * RSS is the run process's VmHWM over the whole scenario: what a transaction of this size costs it.
 *
 * Afterwards db2 must equal db1, the table's rows must share one xmin (the update was one target
 * transaction) and, for pgbisync, pgbisync.conflicts must hold nothing for the table (no change of it was
 * applied over itself). With `kill` (BENCH_HUGE_KILL=1), pgbisync is SIGKILLed mid-way through applying
 * the update and restarted (killDuringUpdate): those checks then prove it was applied exactly once.
 */
import type pg from 'pg';
import { benchUrl, recreateBenchDatabase, sleep, tableDigest, waitForMarker, withClient } from './db.ts';
import { PgbisyncProcess } from './pgbisync-process.ts';
import type { ReplicationUnderTest } from './replication.ts';
import type { StackUrls } from './scenario.ts';

export interface HugeTxnFigures {
  readonly insertSeconds: number;
  readonly updateSeconds: number;
  readonly peakRssMb: number;
}

export interface HugeTxnResult {
  readonly rows: number;
  /** Bytes of the text column per inserted row (0: a short text). */
  readonly payloadBytes: number;
  readonly pgbisync: HugeTxnFigures;
  readonly native: HugeTxnFigures | undefined;
  readonly checks: HugeTxnChecks;
  /** Present with BENCH_HUGE_KILL=1. */
  readonly kill: HugeTxnKill | undefined;
  /** Every check of pgbisync's run passed. */
  readonly consistent: boolean;
}

export interface HugeTxnChecks {
  /** db2 equals db1 (row count and content hash). */
  readonly identical: boolean;
  /** Distinct xmin of the table's rows on db2: 1 when the update was applied as one target transaction. */
  readonly targetTransactions: number;
  /** Rows of pgbisync.conflicts on db2 for the table (pgbisync only). */
  readonly conflicts: number | undefined;
}

export interface HugeTxnKill {
  /** Seconds from the update's source commit to the SIGKILL. */
  readonly afterCommitSeconds: number;
  /** How long pgbisync's target transaction on db2 had been open (rows written, not committed). */
  readonly targetTxnOpenSeconds: number;
  /** Rows with the update's values on db2 once the killed process's session had ended (must be 0). */
  readonly updatedRowsSeen: number;
  /** Seconds from the restart to the update's marker on db2. */
  readonly restartToAppliedSeconds: number;
  /** Peak RSS (VmHWM, MiB) of the killed process and of the restarted one (pgbisync.peakRssMb: the larger). */
  readonly killedPeakRssMb?: number;
  readonly restartedPeakRssMb?: number;
}

const TABLE = 'huge';
/** Bound on one transaction's commit-to-marker wait (a 5,000,000-row update killed and applied again). */
const APPLY_TIMEOUT_MS = 3_600_000;
/** The session of pgbisync's applier of db1's changes on db2 (src/sink/transaction-writer.ts). */
const APPLIER = 'pgbisync-apply-db1';

/** The text column's value for row g: `bytes` characters (whole md5 digests of g), or a short text. */
function payload(bytes: number): string {
  return bytes <= 0 ? "'row ' || g" : `left(repeat(md5(g::text), ${Math.ceil(bytes / 32)}), ${bytes})`;
}

export async function runHugeTxn(
  urls: StackUrls,
  rows: number,
  payloadBytes: number,
  kill: boolean,
  pgbisync: (db1: string, db2: string) => PgbisyncProcess,
  native: ((db1: string, db2: string) => ReplicationUnderTest) | undefined,
  log: (line: string) => void,
): Promise<HugeTxnResult> {
  const mine = await measure(urls, rows, payloadBytes, pgbisync, log, kill);
  const theirs = native === undefined ? undefined : await measure(urls, rows, payloadBytes, native, log);
  const { checks } = mine;
  return {
    rows,
    payloadBytes,
    pgbisync: mine.figures,
    native: theirs?.figures,
    checks,
    kill: mine.kill,
    consistent:
      checks.identical &&
      checks.targetTransactions === 1 &&
      checks.conflicts === 0 &&
      (mine.kill === undefined || mine.kill.updatedRowsSeen === 0),
  };
}

async function measure(
  urls: StackUrls,
  rows: number,
  payloadBytes: number,
  make: (db1: string, db2: string) => ReplicationUnderTest,
  log: (line: string) => void,
  kill = false,
): Promise<{ figures: HugeTxnFigures; checks: HugeTxnChecks; kill: HugeTxnKill | undefined }> {
  const db1 = benchUrl(urls.db1);
  const db2 = benchUrl(urls.db2);
  await Promise.all([recreateBenchDatabase(urls.db1), recreateBenchDatabase(urls.db2)]);
  const sut = make(db1, db2);
  const pgbisync = sut instanceof PgbisyncProcess ? sut : undefined;
  let polling: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling.then(() => sut.poll()).catch(() => undefined);
  }, 250);
  let stopped = false;
  try {
    await sut.start();
    const timed = await withClient(db2, (target) =>
      withClient(db1, async (source) => {
        // Streaming before the clock starts: a first marker crossed.
        await source.query('INSERT INTO marker (id) VALUES (1)');
        await applied(target, sut, 1, 300_000, 20);
        /**
         * Runs `sql` as one transaction, then a marker; seconds from its commit to the marker on db2.
         * `meanwhile` runs after the commit, before waiting for the marker.
         */
        const transaction = async (
          sql: string,
          marker: number,
          meanwhile?: (committed: number) => Promise<void>,
        ): Promise<number> => {
          await source.query(sql);
          const committed = performance.now();
          await source.query('INSERT INTO marker (id) VALUES ($1)', [marker]);
          await meanwhile?.(committed);
          return ((await applied(target, sut, marker)) - committed) / 1000;
        };
        const insertSeconds = await transaction(
          `INSERT INTO ${TABLE} SELECT g, g % 1000, g * 7, ${payload(payloadBytes)}, now() FROM generate_series(1, ${rows}) g`,
          2,
        );
        log(
          `  ${sut.label}: insert of ${rows} rows in one transaction applied in ${insertSeconds.toFixed(2)} s`,
        );
        await sleep(500);
        let killed: HugeTxnKill | undefined;
        const updateSeconds = await transaction(
          `UPDATE ${TABLE} SET a = a + 1, b = b + 1`,
          3,
          kill && pgbisync !== undefined
            ? async (committed) => {
                killed = await killDuringUpdate(pgbisync, target, committed, 3, insertSeconds / 2, log);
              }
            : undefined,
        );
        log(
          `  ${sut.label}: update of ${rows} rows in one transaction applied in ${updateSeconds.toFixed(2)} s`,
        );
        const xmins = await target.query<{ n: number }>(
          `SELECT count(DISTINCT xmin::text::bigint)::int AS n FROM ${TABLE}`,
        );
        const conflicts =
          pgbisync === undefined
            ? undefined
            : (
                await target.query<{ n: number }>(
                  'SELECT count(*)::int AS n FROM pgbisync.conflicts WHERE table_name = $1',
                  [`public.${TABLE}`],
                )
              ).rows[0]!.n;
        const checks: HugeTxnChecks = {
          identical: (await tableDigest(source, TABLE)) === (await tableDigest(target, TABLE)),
          targetTransactions: xmins.rows[0]!.n,
          conflicts,
        };
        log(`  ${sut.label}: checks ${JSON.stringify(checks)}`);
        return { insertSeconds, updateSeconds, checks, killed };
      }),
    );
    clearInterval(timer);
    await polling;
    stopped = true;
    const figures = await sut.stop();
    const [killedPeak, restartedPeak] = pgbisync?.processPeaksRssMb ?? [];
    const killFigures =
      timed.killed === undefined
        ? undefined
        : { ...timed.killed, killedPeakRssMb: killedPeak, restartedPeakRssMb: restartedPeak };
    log(
      `  ${sut.label}: peak RSS ${Math.round(figures.peakRssMb)} MiB${killFigures === undefined ? '' : ` (killed process ${Math.round(killedPeak ?? 0)}, restarted ${Math.round(restartedPeak ?? 0)})`}`,
    );
    return {
      figures: {
        insertSeconds: timed.insertSeconds,
        updateSeconds: timed.updateSeconds,
        peakRssMb: figures.peakRssMb,
      },
      checks: timed.checks,
      kill: killFigures,
    };
  } finally {
    clearInterval(timer);
    await polling;
    if (!stopped) await sut.stop().catch((error: unknown) => log(`  stop failed: ${String(error)}`));
  }
}

/** performance.now() of the poll that saw marker `id` on db2; rejects if the replication dies first. */
function applied(
  target: pg.Client,
  sut: ReplicationUnderTest,
  id: number,
  timeoutMs = APPLY_TIMEOUT_MS,
  pollMs = 50,
): Promise<number> {
  return Promise.race([waitForMarker(target, id, timeoutMs, pollMs), ...(sut.failure ? [sut.failure] : [])]);
}

/**
 * SIGKILLs `pgbisync run` while it applies the update, restarts it and waits for the update's marker.
 *
 * When: once pgbisync's applier session on db2 holds an xid (it has written rows of the update's
 * pieces into its open target transaction; nothing else of pgbisync writes there meanwhile) in a
 * transaction open for `openSeconds` (half the insert's apply time, about as long as the update's: the
 * kill falls about mid-way). Then a reader on db2 must see none of the update, read once the killed
 * session has ended (PostgreSQL notices the closed socket at once when it waits between pieces, after
 * its statement otherwise): its transaction is then rolled back, not merely invisible.
 */
async function killDuringUpdate(
  sut: PgbisyncProcess,
  target: pg.Client,
  committed: number,
  marker: number,
  openSeconds: number,
  log: (line: string) => void,
): Promise<HugeTxnKill> {
  const deadline = performance.now() + APPLY_TIMEOUT_MS;
  let open: { pid: number; seconds: number } | undefined;
  for (;;) {
    const r = await target.query<{ pid: number; seconds: number }>(
      `SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)::float8 AS seconds FROM pg_stat_activity
        WHERE application_name = $1 AND backend_xid IS NOT NULL`,
      [APPLIER],
    );
    open = r.rows[0];
    if (open !== undefined && open.seconds >= openSeconds) break;
    if ((await target.query('SELECT 1 FROM marker WHERE id = $1', [marker])).rowCount === 1) {
      throw new Error('the update was applied before the kill');
    }
    if (!sut.alive) throw new Error('pgbisync run died before the kill');
    if (performance.now() > deadline) throw new Error(`no open target transaction of ${APPLIER} on db2`);
    await sleep(250);
  }
  await sut.kill();
  const killed = performance.now();
  const afterCommitSeconds = (killed - committed) / 1000;
  log(
    `  ${sut.label}: SIGKILL ${afterCommitSeconds.toFixed(2)} s after the update's commit, its target transaction open ${open.seconds.toFixed(2)} s`,
  );
  while ((await target.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [open.pid])).rowCount === 1) {
    if (performance.now() > deadline) throw new Error(`the killed applier's session ${open.pid} did not end`);
    await sleep(100);
  }
  // The insert wrote b = id * 7, the update b + 1.
  const seen = await target.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${TABLE} WHERE b <> id * 7`);
  const updatedRowsSeen = seen.rows[0]!.n;
  log(`  ${sut.label}: rows of the update on db2 after the kill: ${updatedRowsSeen}`);
  const restarted = performance.now();
  await sut.restart();
  const restartToAppliedSeconds = ((await applied(target, sut, marker)) - restarted) / 1000;
  log(`  ${sut.label}: update applied ${restartToAppliedSeconds.toFixed(2)} s after the restart`);
  return { afterCommitSeconds, targetTxnOpenSeconds: open.seconds, updatedRowsSeen, restartToAppliedSeconds };
}
