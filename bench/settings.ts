/**
 * Sizes and rates of `npm run bench`, from the environment. BENCH_SCALE (default 1) multiplies every
 * count; each count can also be set on its own (BENCH_SINGLE_TXNS, BENCH_MULTI_TXNS, BENCH_MULTI_ROWS,
 * BENCH_SNAPSHOT_ROWS, BENCH_WARMUP_TXNS, BENCH_STEADY_RATES=1000,5000 or none, BENCH_STEADY_SECONDS,
 * BENCH_TWO_WAY_STEADY_RATE, BENCH_HUGE_ROWS, BENCH_HUGE_PAYLOAD: bytes of text per row of the huge-txn
 * insert, default 0). BENCH_HUGE_KILL=1 makes huge-txn SIGKILL `pgbisync run` mid-way through applying the
 * update, restart it and check that the update was applied exactly once (bench/huge-txn.ts). The defaults keep the whole run at a few minutes on 2 cores and copy a
 * 1,000,000-row table; BENCH_SCALE=4 gives the bulk sizes of the issue (200,000 single-row transactions
 * and 1,000 transactions of 1,000 rows; the snapshot table then has 4,000,000 rows).
 */

export interface BenchSettings {
  /** Bulk phase, part 1: single-row INSERT transactions, committed as fast as the source takes them. */
  readonly singleRowTxns: number;
  /** Bulk phase, part 2: this many transactions of `multiRowTxnRows` rows each. */
  readonly multiRowTxns: number;
  readonly multiRowTxnRows: number;
  /** Steady phase: fixed rates in changes/s (one change per transaction), each for `steadySeconds`. */
  readonly steadyRates: readonly number[];
  readonly steadySeconds: number;
  /** Steady rate used per side in the two-way run (both nodes write at this rate at once). */
  readonly twoWaySteadyRate: number;
  /** Rows of the table copied by the snapshot comparison. */
  readonly snapshotRows: number;
  /** Rows of the huge-txn scenario's one-transaction insert and update (BENCH_HUGE_ROWS). */
  readonly hugeRows: number;
  /** Bytes of text per row in the huge-txn insert (BENCH_HUGE_PAYLOAD; default 0: a short text). */
  readonly hugePayloadBytes: number;
  /** SIGKILL pgbisync while it applies the huge update, restart it, check exactly once (BENCH_HUGE_KILL=1). */
  readonly hugeKill: boolean;
  /** Single-row transactions applied before measuring (JIT warm-up, first Kafka fetches). */
  readonly warmupTxns: number;
  /** Write a V8 CPU profile of each pgbisync process into bench/results/prof/. */
  readonly cpuProfile: boolean;
  /**
   * Run only these scenarios (comma list of one-way,one-way-schemaless,native,debezium,two-way,snapshot,
   * huge-txn);
   * default all. one-way-schemaless is one-way with `capture.schemasEnabled: false`.
   */
  readonly only: ReadonlySet<string>;
  /**
   * BENCH_PGBISYNC_CONFIG: a JSON object merged into the config the bench writes for pgbisync (objects
   * merged key by key, anything else replaced), to measure other settings, e.g.
   * `{"kafka":{"compression":"none"},"apply":{"maxBatchRows":2000}}`. Default {}.
   */
  readonly pgbisyncConfig: Readonly<Record<string, unknown>>;
}

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}: not a non-negative number: ${raw}`);
  return value;
}

export const SCENARIOS = [
  'one-way',
  'one-way-schemaless',
  'native',
  'debezium',
  'two-way',
  'snapshot',
  'huge-txn',
] as const;

export function readSettings(): BenchSettings {
  const scale = num('BENCH_SCALE', 1);
  const scaled = (name: string, base: number) => Math.max(1, Math.round(num(name, base * scale)));
  const rates = (process.env.BENCH_STEADY_RATES ?? '1000,5000')
    .split(',')
    .map((r) => Number(r.trim()))
    .filter((r) => Number.isFinite(r) && r > 0);
  const only = new Set(
    (process.env.BENCH_ONLY ?? SCENARIOS.join(','))
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
  for (const s of only) {
    if (!(SCENARIOS as readonly string[]).includes(s)) {
      throw new Error(`BENCH_ONLY: unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
    }
  }
  return {
    singleRowTxns: scaled('BENCH_SINGLE_TXNS', 50_000),
    multiRowTxns: scaled('BENCH_MULTI_TXNS', 250),
    multiRowTxnRows: Math.max(1, Math.round(num('BENCH_MULTI_ROWS', 1_000))),
    steadyRates: rates,
    steadySeconds: num('BENCH_STEADY_SECONDS', 10),
    twoWaySteadyRate: num('BENCH_TWO_WAY_STEADY_RATE', 1_000),
    snapshotRows: scaled('BENCH_SNAPSHOT_ROWS', 1_000_000),
    warmupTxns: scaled('BENCH_WARMUP_TXNS', 5_000),
    hugeRows: scaled('BENCH_HUGE_ROWS', 1_000_000),
    hugePayloadBytes: Math.round(num('BENCH_HUGE_PAYLOAD', 0)),
    hugeKill: process.env.BENCH_HUGE_KILL === '1',
    cpuProfile: process.env.BENCH_CPU_PROF === '1',
    only,
    pgbisyncConfig: configOverrides(process.env.BENCH_PGBISYNC_CONFIG),
  };
}

function configOverrides(raw: string | undefined): Record<string, unknown> {
  if (raw === undefined || raw.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new Error(`BENCH_PGBISYNC_CONFIG: not JSON (${error instanceof Error ? error.message : error})`);
  }
  if (!isPlainObject(value)) {
    throw new Error(`BENCH_PGBISYNC_CONFIG: expected a JSON object of config keys, got ${raw}`);
  }
  return value;
}

/** `base` with `overrides` merged in: objects key by key, anything else (arrays too) replaced. */
export function mergeConfig(
  base: Readonly<Record<string, unknown>>,
  overrides: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? mergeConfig(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
