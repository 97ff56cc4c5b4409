/**
 * Initial copy of one table of `rows` rows from db1 to an empty db2:
 * - reference: `psql -c 'COPY snap TO STDOUT' | psql -c 'COPY snap FROM STDIN'` between the servers;
 * - pgbisync: `pgbisync run` on a fresh setup with snapshot 'initial' (the default), timed from spawning
 *   the process to the moment a marker row, committed on db1 after the snapshot started, is visible on
 *   db2 (the capture streams it after the last snapshot chunk, and the applier applies in topic order).
 * Both targets have the same primary key index.
 */
import { spawn } from 'node:child_process';
import { benchUrl, recreateBenchDatabase, sleep, waitForMarker, withClient } from './db.ts';
import type { PgbisyncProcess } from './pgbisync-process.ts';
import type { StackUrls } from './scenario.ts';

export interface SnapshotResult {
  readonly rows: number;
  /** Bytes of the table on db1 (pg_table_size, without indexes). */
  readonly tableBytes: number;
  readonly seconds: number;
  readonly rowsPerSec: number;
  readonly copyPipeSeconds: number;
  readonly copyPipeRowsPerSec: number;
  readonly ratio: number;
  /** From spawning `pgbisync run` to the first snapshot row visible on db2. */
  readonly firstRowSeconds: number;
  readonly cpu: Record<string, number>;
  readonly peakRssMb: number;
  readonly consistent: boolean;
}

export async function runSnapshot(
  urls: StackUrls,
  rows: number,
  make: (db1: string, db2: string) => PgbisyncProcess,
  log: (line: string) => void,
): Promise<SnapshotResult> {
  const db1 = benchUrl(urls.db1);
  const db2 = benchUrl(urls.db2);
  await Promise.all([recreateBenchDatabase(urls.db1), recreateBenchDatabase(urls.db2)]);
  const tableBytes = await withClient(db1, async (c) => {
    await c.query(
      'INSERT INTO snap SELECT g, g % 100, clock_timestamp(), bench_payload(g) FROM generate_series(1, $1::bigint) g',
      [rows],
    );
    await c.query('VACUUM ANALYZE snap');
    return Number((await c.query<{ b: string }>("SELECT pg_table_size('snap')::text AS b")).rows[0]!.b);
  });
  log(`  ${rows} rows on db1 (${(tableBytes / 2 ** 20).toFixed(0)} MiB)`);

  const copyPipeSeconds = await copyPipe(db1, db2);
  const copied = await count(db2);
  if (copied !== rows) throw new Error(`COPY pipe copied ${copied} rows, expected ${rows}`);
  log(`  COPY pipe: ${copyPipeSeconds.toFixed(2)} s, ${Math.round(rows / copyPipeSeconds)} rows/s`);
  await withClient(db2, async (c) => {
    await c.query('TRUNCATE snap');
    await c.query('CHECKPOINT');
  });

  const sut = make(db1, db2);
  let stopped = false;
  let polling: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling.then(() => sut.poll()).catch(() => undefined);
  }, 250);
  try {
    await sut.start();
    const result = await withClient(db2, (target) =>
      withClient(db1, async (source) => {
        // The marker must commit after the slot's consistent point, or it would be part of the snapshot:
        // wait for the first copied row (the slot exists and the snapshot is being read).
        while ((await target.query('SELECT 1 FROM snap LIMIT 1')).rowCount === 0) {
          if (!sut.alive) throw new Error(`pgbisync run exited; see ${sut.logPath}`);
          await sleep(5);
        }
        const firstRow = performance.now();
        await source.query('INSERT INTO marker (id) VALUES (1)');
        const seen = await Promise.race([waitForMarker(target, 1, 600_000, 20), sut.failure]);
        return { firstRow, seen };
      }),
    );
    clearInterval(timer);
    await polling;
    stopped = true;
    const figures = await sut.stop();
    const seconds = (result.seen - sut.spawnedAt) / 1000;
    const applied = await count(db2);
    const rowsPerSec = rows / seconds;
    const copyPipeRowsPerSec = rows / copyPipeSeconds;
    log(`  pgbisync: ${seconds.toFixed(2)} s, ${Math.round(rowsPerSec)} rows/s (${applied} rows on db2)`);
    return {
      rows,
      tableBytes,
      seconds,
      rowsPerSec,
      copyPipeSeconds,
      copyPipeRowsPerSec,
      ratio: rowsPerSec / copyPipeRowsPerSec,
      firstRowSeconds: (result.firstRow - sut.spawnedAt) / 1000,
      cpu: { ...figures.cpu },
      peakRssMb: figures.peakRssMb,
      consistent: applied === rows,
    };
  } finally {
    clearInterval(timer);
    await polling;
    if (!stopped) await sut.stop().catch((error: unknown) => log(`  stop failed: ${String(error)}`));
  }
}

async function count(url: string): Promise<number> {
  return withClient(url, async (c) =>
    Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM snap')).rows[0]!.n),
  );
}

/** `COPY TO STDOUT | COPY FROM STDIN` with two psql processes; seconds from spawn to exit. */
async function copyPipe(source: string, target: string): Promise<number> {
  const psql = (url: string, sql: string) => {
    const u = new URL(url);
    return `psql -X -q -v ON_ERROR_STOP=1 -h ${u.hostname} -p ${u.port} -U ${decodeURIComponent(u.username)} -d ${u.pathname.slice(1)} -c "${sql}"`;
  };
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        `${psql(source, 'COPY snap TO STDOUT')} | ${psql(target, 'COPY snap FROM STDIN')}`,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`COPY pipe exited with ${code}`)),
    );
  });
  return (performance.now() - t0) / 1000;
}
