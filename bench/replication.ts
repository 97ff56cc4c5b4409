/** What the scenario runner needs from a replication under test (pgbisync, native or Debezium). */

export interface CpuBreakdown {
  /** CPU seconds per part, e.g. { pgbisync: 12.1, kafka: 5.3, postgres: 8.0 }. */
  readonly [part: string]: number;
}

export interface ReplicationUnderTest {
  readonly label: string;
  /** Creates what it needs and starts replicating (returns once started; liveness is checked by markers). */
  start(): Promise<void>;
  /** Samples CPU and memory of its processes; called periodically and around every phase. */
  poll(): Promise<void>;
  /** CPU seconds spent so far, per part, since start(). */
  cpu(): CpuBreakdown;
  /**
   * False when the target may show a change before earlier changes of other tables (each table applied
   * on its own); the workload then also waits for each table's last row (bench/workload.ts). Default true.
   */
  readonly keepsCommitOrder?: boolean;
  /** Rejects if the replication dies on its own (so a phase fails instead of waiting for a marker). */
  readonly failure?: Promise<never>;
  /** Stops and removes what start() created; returns the final figures. */
  stop(): Promise<ReplicationFigures>;
}

export interface ReplicationFigures {
  readonly cpu: CpuBreakdown;
  /**
   * Peak resident memory of the replication's own process(es), MiB: VmHWM of the pgbisync process; for
   * native replication the largest sum of private memory (RssAnon + RssFile, without shared buffers)
   * of its walsender and apply worker seen by the periodic samples.
   */
  readonly peakRssMb: number;
}

export function subtractCpu(after: CpuBreakdown, before: CpuBreakdown): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [part, value] of Object.entries(after)) out[part] = value - (before[part] ?? 0);
  return out;
}

export function totalCpu(cpu: CpuBreakdown): number {
  return Object.values(cpu).reduce((a, b) => a + b, 0);
}
