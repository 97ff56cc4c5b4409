/**
 * One replication scenario: fresh bench databases, the replication started, a liveness check and a
 * warm-up, then the measured phases (bulk single-row, bulk multi-row, steady rates), then a check that
 * both databases hold the same rows. CPU is read around every phase.
 */
import type pg from 'pg';
import { benchUrl, connect, recreateBenchDatabase, tableDigest } from './db.ts';
import { type CpuBreakdown, type ReplicationUnderTest, subtractCpu } from './replication.ts';
import type { BenchSettings } from './settings.ts';
import {
  type BulkResult,
  bulkMulti,
  bulkSingle,
  type Side,
  type SteadyResult,
  steady,
  waitLive,
} from './workload.ts';

export interface StackUrls {
  /** Server URLs (any database) of db1 and db2. */
  readonly db1: string;
  readonly db2: string;
}

export interface ScenarioResult {
  readonly label: string;
  /** 1: writes on db1 only; 2: both nodes write at once. */
  readonly writingSides: number;
  readonly liveAfterMs: number;
  readonly bulkSingle: BulkResult & { readonly cpu: CpuBreakdown };
  readonly bulkMulti: BulkResult & { readonly cpu: CpuBreakdown };
  /** Both bulk parts together: changes / end-to-end seconds. */
  readonly bulk: { readonly changes: number; readonly seconds: number; readonly changesPerSec: number };
  readonly steady: readonly (SteadyResult & { readonly cpu: CpuBreakdown })[];
  /** CPU over all measured phases. */
  readonly cpu: CpuBreakdown;
  readonly peakRssMb: number;
  /** Every replicated table is identical on both nodes at the end. */
  readonly consistent: boolean;
}

const REPLICATED_TABLES = ['bulk', 'steady', 'marker'];
const POLL_INTERVAL_MS = 250;
const OFFSET = { single: 1e12, multi: 2e12, steady: 3e12, warmup: 9e12 } as const;
const SIDE_BASE = 1e13;

export async function runScenario(
  urls: StackUrls,
  settings: BenchSettings,
  writingSides: 1 | 2,
  make: (db1: string, db2: string) => ReplicationUnderTest,
  log: (line: string) => void,
): Promise<ScenarioResult> {
  const db1 = benchUrl(urls.db1);
  const db2 = benchUrl(urls.db2);
  await Promise.all([recreateBenchDatabase(urls.db1), recreateBenchDatabase(urls.db2)]);
  const sut = make(db1, db2);
  const clients: pg.Client[] = [];
  const open = async (url: string) => {
    const c = await connect(url);
    clients.push(c);
    return c;
  };
  let polling: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling.then(() => sut.poll()).catch(() => undefined);
  }, POLL_INTERVAL_MS);
  let stopped = false;
  try {
    await sut.start();
    // Writers commit with synchronous_commit on (PostgreSQL's default). The dev stack's servers default
    // to off, and then a walsender sees a commit only when the WAL writer flushes it (wal_writer_delay,
    // 200 ms): that, not the replication, would dominate commit-to-visible latency.
    const generator = async (url: string) => {
      const c = await open(url);
      await c.query('SET synchronous_commit = on');
      return c;
    };
    const side = async (name: string, source: string, target: string, base: number): Promise<Side> => ({
      name,
      generator: await generator(source),
      extraGenerators: [await generator(source)],
      probe: await open(target),
      pollers: [await open(target), await open(target)],
      base,
      keepsCommitOrder: sut.keepsCommitOrder ?? true,
    });
    const sides: Side[] = [await side('db1->db2', db1, db2, 0)];
    if (writingSides === 2) sides.push(await side('db2->db1', db2, db1, SIDE_BASE));
    const guarded = <T>(p: Promise<T>): Promise<T> =>
      sut.failure === undefined ? p : Promise.race([p, sut.failure]);
    const liveAfterMs = await guarded(waitLive(sides));
    log(`  live after ${Math.round(liveAfterMs)} ms; warm-up`);
    await guarded(bulkSingle(sides, settings.warmupTxns, OFFSET.warmup));
    const measure = async <T>(name: string, phase: () => Promise<T>): Promise<T & { cpu: CpuBreakdown }> => {
      await polling;
      await sut.poll();
      const before = sut.cpu();
      const result = await guarded(phase());
      await polling;
      await sut.poll();
      const cpu = subtractCpu(sut.cpu(), before);
      log(`  ${name}: ${summary(result)}`);
      return { ...result, cpu };
    };
    await sut.poll();
    const cpuStart = sut.cpu();
    const single = await measure('bulk single-row', () =>
      bulkSingle(sides, settings.singleRowTxns, OFFSET.single),
    );
    const multi = await measure('bulk multi-row', () =>
      bulkMulti(sides, settings.multiRowTxns, settings.multiRowTxnRows, OFFSET.multi),
    );
    const rates = writingSides === 2 ? [settings.twoWaySteadyRate] : settings.steadyRates;
    const steadies: (SteadyResult & { cpu: CpuBreakdown })[] = [];
    for (const [i, rate] of rates.entries()) {
      steadies.push(
        await measure(`steady ${rate}/s`, () =>
          steady(sides, rate, settings.steadySeconds, OFFSET.steady + i * 1e11),
        ),
      );
    }
    const cpu = subtractCpu(sut.cpu(), cpuStart);
    clearInterval(timer);
    await polling;
    stopped = true;
    const figures = await sut.stop();
    const consistent = await compareTables(sides[0]!.generator, sides[0]!.probe, log);
    const bulkChanges = single.changes + multi.changes;
    const bulkSeconds = single.seconds + multi.seconds;
    return {
      label: sut.label,
      writingSides,
      liveAfterMs,
      bulkSingle: single,
      bulkMulti: multi,
      bulk: { changes: bulkChanges, seconds: bulkSeconds, changesPerSec: bulkChanges / bulkSeconds },
      steady: steadies,
      cpu,
      peakRssMb: figures.peakRssMb,
      consistent,
    };
  } finally {
    clearInterval(timer);
    await polling;
    if (!stopped) await sut.stop().catch((error: unknown) => log(`  stop failed: ${String(error)}`));
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Compares the replicated tables on db1 (`a`) and db2 (`b`); logs any difference. */
async function compareTables(a: pg.Client, b: pg.Client, log: (line: string) => void): Promise<boolean> {
  let same = true;
  for (const table of REPLICATED_TABLES) {
    const [x, y] = await Promise.all([tableDigest(a, table), tableDigest(b, table)]);
    if (x !== y) {
      same = false;
      log(`  MISMATCH ${table}: db1 ${x}, db2 ${y}`);
    }
  }
  return same;
}

function summary(result: unknown): string {
  const r = result as Partial<BulkResult & SteadyResult>;
  if (r.p99Ms !== undefined) {
    return `${Math.round(r.sourceChangesPerSec ?? 0)} changes/s written, p50 ${r.p50Ms?.toFixed(1)} ms, p95 ${r.p95Ms?.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms (${r.samples} samples), drained ${Math.round(r.drainMs ?? 0)} ms after`;
  }
  return `${r.changes} changes in ${r.seconds?.toFixed(2)} s (source done at ${r.sourceSeconds?.toFixed(2)} s): ${Math.round(r.changesPerSec ?? 0)} changes/s`;
}
