/**
 * Keeps the lag gauges of `pgbisync run` current: every interval it reads what `pgbisync status` reads
 * (each source slot's retained WAL, each direction's Kafka lag) and sets
 * pgbisync_slot_retained_wal_bytes{node} and pgbisync_kafka_lag_records{direction}. A failed sample is
 * logged and the gauges keep their last value; the sync itself never depends on it.
 */
import type { Config } from '../config/schema.ts';
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
  while (!signal.aborted) {
    try {
      const report = await readStatus(config);
      for (const d of report.directions) {
        metrics.slotRetainedWalBytes.set({ node: d.source }, d.slot.retainedWalBytes);
        metrics.kafkaLagRecords.set({ direction: `${d.source}->${d.target}` }, d.kafkaLag);
      }
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
