/**
 * Huge transactions (issue: bounded memory): one source transaction inserting `rows` rows of a 5-column
 * table, then one updating all of them, replicated db1 -> db2 by pgbisync and, in the same run, by native
 * logical replication. Each is timed from the source commit to the moment a marker committed right
 * after it is visible on db2 (the whole transaction applied: both keep commit order). pgbisync's peak
 * RSS is the run process's VmHWM over the whole scenario: what a transaction of this size costs it.
 */
import { benchUrl, recreateBenchDatabase, sleep, tableDigest, waitForMarker, withClient } from './db.ts';
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
  /** db2 equals db1 after pgbisync's run. */
  readonly consistent: boolean;
}

const TABLE = 'huge';

/** The text column's value for row g: `bytes` characters (whole md5 digests of g), or a short text. */
function payload(bytes: number): string {
  return bytes <= 0 ? "'row ' || g" : `left(repeat(md5(g::text), ${Math.ceil(bytes / 32)}), ${bytes})`;
}

export async function runHugeTxn(
  urls: StackUrls,
  rows: number,
  payloadBytes: number,
  pgbisync: (db1: string, db2: string) => ReplicationUnderTest,
  native: ((db1: string, db2: string) => ReplicationUnderTest) | undefined,
  log: (line: string) => void,
): Promise<HugeTxnResult> {
  const mine = await measure(urls, rows, payloadBytes, pgbisync, log);
  const theirs = native === undefined ? undefined : await measure(urls, rows, payloadBytes, native, log);
  return { rows, payloadBytes, pgbisync: mine.figures, native: theirs?.figures, consistent: mine.consistent };
}

async function measure(
  urls: StackUrls,
  rows: number,
  payloadBytes: number,
  make: (db1: string, db2: string) => ReplicationUnderTest,
  log: (line: string) => void,
): Promise<{ figures: HugeTxnFigures; consistent: boolean }> {
  const db1 = benchUrl(urls.db1);
  const db2 = benchUrl(urls.db2);
  await Promise.all([recreateBenchDatabase(urls.db1), recreateBenchDatabase(urls.db2)]);
  const sut = make(db1, db2);
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
        await Promise.race([waitForMarker(target, 1, 300_000, 20), ...(sut.failure ? [sut.failure] : [])]);
        /** Runs `sql` as one transaction, then a marker; seconds from its commit to the marker on db2. */
        const transaction = async (sql: string, marker: number): Promise<number> => {
          await source.query(sql);
          const committed = performance.now();
          await source.query('INSERT INTO marker (id) VALUES ($1)', [marker]);
          const seen = await Promise.race([
            waitForMarker(target, marker, 1_800_000, 50),
            ...(sut.failure ? [sut.failure] : []),
          ]);
          return (seen - committed) / 1000;
        };
        const insertSeconds = await transaction(
          `INSERT INTO ${TABLE} SELECT g, g % 1000, g * 7, ${payload(payloadBytes)}, now() FROM generate_series(1, ${rows}) g`,
          2,
        );
        log(
          `  ${sut.label}: insert of ${rows} rows in one transaction applied in ${insertSeconds.toFixed(2)} s`,
        );
        await sleep(500);
        const updateSeconds = await transaction(`UPDATE ${TABLE} SET a = a + 1, b = b + 1`, 3);
        log(
          `  ${sut.label}: update of ${rows} rows in one transaction applied in ${updateSeconds.toFixed(2)} s`,
        );
        const consistent = (await tableDigest(source, TABLE)) === (await tableDigest(target, TABLE));
        return { insertSeconds, updateSeconds, consistent };
      }),
    );
    clearInterval(timer);
    await polling;
    stopped = true;
    const figures = await sut.stop();
    log(`  ${sut.label}: peak RSS ${Math.round(figures.peakRssMb)} MiB`);
    return {
      figures: {
        insertSeconds: timed.insertSeconds,
        updateSeconds: timed.updateSeconds,
        peakRssMb: figures.peakRssMb,
      },
      consistent: timed.consistent,
    };
  } finally {
    clearInterval(timer);
    await polling;
    if (!stopped) await sut.stop().catch((error: unknown) => log(`  stop failed: ${String(error)}`));
  }
}
