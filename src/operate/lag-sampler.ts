/**
 * Keeps the lag gauges of `pgbisync run` current: every interval it reads what `pgbisync status` reads
 * (each source slot's retained WAL, each direction's Kafka lag) and sets
 * pgbisync_slot_retained_wal_bytes{node}, pgbisync_kafka_lag_records{direction} and
 * pgbisync_clock_skew_seconds{direction} (logging a warning while clocks differ by more than
 * conflicts.maxClockSkewMs, and while a direction has changes pending from before its target's
 * commit-timestamp horizon, ../conflicts/commit-ts-horizon.ts). A failed sample is
 * logged and the gauges keep their last value; the sync itself never depends on it.
 */
import type { Config } from '../config/schema.ts';
import { STAMP_RISK } from '../conflicts/commit-ts-horizon.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { sleep } from '../runtime/sleep.ts';
import { readStatus } from './status.ts';

export const LAG_SAMPLE_INTERVAL_MS = 10_000;

export async function sampleLag(
  config: Config,
  metrics: Metrics,
  log: Logger,
  signal: AbortSignal,
  intervalMs = LAG_SAMPLE_INTERVAL_MS,
): Promise<void> {
  let failing = false;
  let warnedSkew = false;
  let warnedStamps = false;
  while (!signal.aborted) {
    try {
      const report = await readStatus(config);
      for (const d of report.directions) {
        metrics.slotRetainedWalBytes.set({ node: d.source }, d.slot.retainedWalBytes);
        metrics.kafkaLagRecords.set({ direction: `${d.source}->${d.target}` }, d.kafkaLag);
        metrics.clockSkewSeconds.set({ direction: `${d.source}->${d.target}` }, d.clockSkewMs / 1000);
      }
      const skewed = report.directions.flatMap((d) => d.warnings.filter((w) => w.startsWith('clock of ')));
      if (skewed.length > 0 && !warnedSkew) log.warn({ warnings: skewed }, 'node clocks differ');
      if (skewed.length === 0 && warnedSkew) log.info('node clocks agree again');
      warnedSkew = skewed.length > 0;
      const atRisk = report.directions.flatMap((d) => d.warnings.filter((w) => w.includes(STAMP_RISK)));
      if (atRisk.length > 0 && !warnedStamps)
        log.warn({ warnings: atRisk }, "a direction lags behind its target's commit-timestamp horizon");
      if (atRisk.length === 0 && warnedStamps)
        log.info('no direction lags behind a commit-timestamp horizon now');
      warnedStamps = atRisk.length > 0;
      if (failing) log.info('lag sampling works again');
      failing = false;
    } catch (error) {
      if (!failing)
        log.warn({ err: error }, 'could not sample slot and Kafka lag; the gauges keep their last value');
      failing = true;
    }
    await sleep(intervalMs, signal);
  }
}
