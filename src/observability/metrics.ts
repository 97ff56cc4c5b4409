/**
 * Prometheus metrics: names are constants here (one place to grep), labels are node / direction / table.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const METRIC = {
  eventsCaptured: 'pgbisync_events_captured_total',
  loopTransactionsDropped: 'pgbisync_loop_transactions_dropped_total',
  captureConfirmedLsn: 'pgbisync_capture_confirmed_lsn',
  transactionsApplied: 'pgbisync_transactions_applied_total',
  transactionsSkipped: 'pgbisync_transactions_skipped_total',
  rowsApplied: 'pgbisync_rows_applied_total',
  applyBatchTransactions: 'pgbisync_apply_batch_transactions',
  applyLagSeconds: 'pgbisync_apply_lag_seconds',
  deadLetters: 'pgbisync_dead_letters_total',
  staleRecordsDropped: 'pgbisync_stale_records_dropped_total',
  componentRestarts: 'pgbisync_component_restarts_total',
  takeovers: 'pgbisync_takeovers_total',
  conflicts: 'pgbisync_conflicts_total',
  slotRetainedWalBytes: 'pgbisync_slot_retained_wal_bytes',
  commitTimesKeptSeconds: 'pgbisync_commit_times_kept_seconds',
  kafkaLagRecords: 'pgbisync_kafka_lag_records',
  clockSkewSeconds: 'pgbisync_clock_skew_seconds',
} as const;

export class Metrics {
  readonly registry = new Registry();
  readonly eventsCaptured = this.#counter(METRIC.eventsCaptured, 'change events published to Kafka', [
    'node',
    'table',
  ]);
  readonly loopDropped = this.#counter(
    METRIC.loopTransactionsDropped,
    'transactions not published because pgbisync applied them (loop prevention)',
    ['node'],
  );
  readonly confirmedLsn = new Gauge({
    name: METRIC.captureConfirmedLsn,
    help: 'slot flush LSN confirmed to PostgreSQL (as a number)',
    labelNames: ['node'],
    registers: [this.registry],
  });
  readonly transactionsApplied = this.#counter(METRIC.transactionsApplied, 'source transactions applied', [
    'direction',
  ]);
  readonly transactionsSkipped = this.#counter(
    METRIC.transactionsSkipped,
    'source transactions skipped as already applied (duplicates)',
    ['direction'],
  );
  readonly rowsApplied = this.#counter(METRIC.rowsApplied, 'row changes applied', ['direction', 'table']);
  readonly conflicts = this.#counter(
    METRIC.conflicts,
    'conflicts resolved by the applier writing into the target (rows of pgbisync.conflicts)',
    ['direction'],
  );
  readonly slotRetainedWalBytes = new Gauge({
    name: METRIC.slotRetainedWalBytes,
    help: "WAL bytes the node's slot holds back: current WAL LSN minus the slot's confirmed flush LSN",
    labelNames: ['node'],
    registers: [this.registry],
  });
  readonly commitTimesKeptSeconds = new Gauge({
    name: METRIC.commitTimesKeptSeconds,
    help: "how far back the node's stamp slot keeps commit times (and dead rows) for last-writer-wins",
    labelNames: ['node'],
    registers: [this.registry],
  });
  readonly kafkaLagRecords = new Gauge({
    name: METRIC.kafkaLagRecords,
    help: "records on the source's topic not yet applied: end offset minus the applier's next offset",
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly clockSkewSeconds = new Gauge({
    name: METRIC.clockSkewSeconds,
    help: "how far the source server's clock runs ahead of the target's (negative: behind), as run measures it",
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly batchTransactions = new Histogram({
    name: METRIC.applyBatchTransactions,
    help: 'source transactions per pipelined apply batch',
    labelNames: ['direction'],
    buckets: [1, 2, 5, 10, 50, 100, 500, 1000],
    registers: [this.registry],
  });
  readonly applyLagSeconds = new Gauge({
    name: METRIC.applyLagSeconds,
    help: 'now minus the source commit time of the last applied transaction',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  /** By direction and error code (PGB3101 not an event, PGB3103 a table not synced, PGB3104 a forged header). */
  readonly deadLetters = this.#counter(METRIC.deadLetters, 'records sent to the dead-letter topic', [
    'direction',
    'code',
  ]);
  /**
   * By direction and reason (order: fits nowhere by total order; run: from an older capture run; part:
   * a transaction's start whose end never came): records of a capture that stopped mid-transaction or
   * was fenced off by a takeover, applied from the copy sent again.
   */
  readonly staleDropped = this.#counter(
    METRIC.staleRecordsDropped,
    'records dropped as stale parts of transactions (their transactions are applied from the copy sent again)',
    ['direction', 'reason'],
  );
  readonly restarts = this.#counter(METRIC.componentRestarts, 'component restarts after a failure', [
    'component',
  ]);
  readonly takeovers = this.#counter(
    METRIC.takeovers,
    'components this instance took over from another instance (whose lease came free)',
    ['component'],
  );

  #counter(name: string, help: string, labelNames: string[]): Counter {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}
