/** The benchmark's JSON document (bench/results/latest.json) and its printed table. */

import type { HugeTxnResult } from './huge-txn.ts';
import { type CpuBreakdown, totalCpu } from './replication.ts';
import type { ScenarioResult } from './scenario.ts';
import type { BenchSettings } from './settings.ts';
import type { SnapshotResult } from './snapshot.ts';
import type { SteadyResult } from './workload.ts';

export interface BenchResults {
  readonly oneWay?: ScenarioResult | undefined;
  /** One way with `capture.schemasEnabled: false`: records without schemas, naming them in a header. */
  readonly oneWaySchemaless?: ScenarioResult | undefined;
  readonly native?: ScenarioResult | undefined;
  /** The seed stack: Debezium PostgreSQL connector + Debezium JDBC sink on Kafka Connect, one way. */
  readonly debezium?: ScenarioResult | undefined;
  readonly twoWay?: ScenarioResult | undefined;
  readonly snapshot?: SnapshotResult | undefined;
  readonly hugeTxn?: HugeTxnResult | undefined;
  /** Scenarios that failed (by BENCH_ONLY name), with the error. */
  readonly failed?: Readonly<Record<string, string>>;
}

export interface Environment {
  readonly cpus: number;
  /** 1-minute load average at the start and the end: other work on the machine skews every figure. */
  readonly loadAverage: { readonly start: number; readonly end: number };
  readonly node: string;
  readonly postgres: string;
  readonly startedAt: string;
  readonly seconds: number;
}

const round = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n) ? null : Number(n.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? null : round(a / b, 3);

function lowestRate(s: ScenarioResult | undefined): SteadyResult | undefined {
  return s?.steady.reduce<SteadyResult | undefined>(
    (low, x) => (low === undefined || x.rate < low.rate ? x : low),
    undefined,
  );
}

function cpuFigures(cpu: CpuBreakdown | undefined) {
  if (cpu === undefined) return {};
  return Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round(v, 2)]));
}

/** Figures of a pgbisync scenario besides one-way's (latency at the lowest steady rate). */
function scenarioFigures(s: ScenarioResult) {
  const low = lowestRate(s);
  return {
    changesPerSec: round(s.bulk.changesPerSec),
    singleRowTxnsChangesPerSec: round(s.bulkSingle.changesPerSec),
    multiRowTxnsChangesPerSec: round(s.bulkMulti.changesPerSec),
    p50Ms: round(low?.p50Ms, 1),
    p95Ms: round(low?.p95Ms, 1),
    p99Ms: round(low?.p99Ms, 1),
    rssMb: round(s.peakRssMb),
    cpuSeconds: round(s.cpu.pgbisync, 2),
    pipelineCpuSeconds: round(totalCpu(s.cpu), 2),
    cpuByPart: cpuFigures(s.cpu),
    consistent: s.consistent,
  };
}

export function buildJson(
  settings: BenchSettings,
  env: Environment,
  r: BenchResults,
): Record<string, unknown> {
  const one = r.oneWay;
  const nat = r.native;
  const two = r.twoWay;
  const oneLow = lowestRate(one);
  const natLow = lowestRate(nat);
  const oneWay = one && {
    changesPerSec: round(one.bulk.changesPerSec),
    nativeChangesPerSec: round(nat?.bulk.changesPerSec),
    ratio: ratio(one.bulk.changesPerSec, nat?.bulk.changesPerSec),
    singleRowTxns: {
      changesPerSec: round(one.bulkSingle.changesPerSec),
      nativeChangesPerSec: round(nat?.bulkSingle.changesPerSec),
      ratio: ratio(one.bulkSingle.changesPerSec, nat?.bulkSingle.changesPerSec),
    },
    multiRowTxns: {
      changesPerSec: round(one.bulkMulti.changesPerSec),
      nativeChangesPerSec: round(nat?.bulkMulti.changesPerSec),
      ratio: ratio(one.bulkMulti.changesPerSec, nat?.bulkMulti.changesPerSec),
    },
    latencyRate: oneLow?.rate ?? null,
    p50Ms: round(oneLow?.p50Ms, 1),
    p95Ms: round(oneLow?.p95Ms, 1),
    p99Ms: round(oneLow?.p99Ms, 1),
    nativeP50Ms: round(natLow?.p50Ms, 1),
    nativeP95Ms: round(natLow?.p95Ms, 1),
    nativeP99Ms: round(natLow?.p99Ms, 1),
    p99Ratio: ratio(oneLow?.p99Ms, natLow?.p99Ms),
    steady: one.steady.map((s, i) => ({
      rate: s.rate,
      p50Ms: round(s.p50Ms, 1),
      p95Ms: round(s.p95Ms, 1),
      p99Ms: round(s.p99Ms, 1),
      nativeP50Ms: round(nat?.steady[i]?.p50Ms, 1),
      nativeP95Ms: round(nat?.steady[i]?.p95Ms, 1),
      nativeP99Ms: round(nat?.steady[i]?.p99Ms, 1),
      p99Ratio: ratio(s.p99Ms, nat?.steady[i]?.p99Ms),
    })),
    rssMb: round(one.peakRssMb),
    nativeRssMb: round(nat?.peakRssMb),
    rssRatio: ratio(one.peakRssMb, nat?.peakRssMb),
    cpuSeconds: round(one.cpu.pgbisync, 2),
    pipelineCpuSeconds: round(totalCpu(one.cpu), 2),
    nativeCpuSeconds: round(nat === undefined ? undefined : totalCpu(nat.cpu), 2),
    cpuRatio: ratio(one.cpu.pgbisync, nat === undefined ? undefined : totalCpu(nat.cpu)),
    pipelineCpuRatio: ratio(totalCpu(one.cpu), nat === undefined ? undefined : totalCpu(nat.cpu)),
    cpuByPart: cpuFigures(one.cpu),
    consistent: one.consistent,
  };
  const twoWay = two && {
    ...scenarioFigures(two),
    ratioToNativeOneWay: ratio(two.bulk.changesPerSec, nat?.bulk.changesPerSec),
    latencyRatePerSide: lowestRate(two)?.rate ?? null,
  };
  const sl = r.oneWaySchemaless;
  const oneWaySchemaless = sl && {
    ...scenarioFigures(sl),
    ratio: ratio(sl.bulk.changesPerSec, nat?.bulk.changesPerSec),
    latencyRate: lowestRate(sl)?.rate ?? null,
  };
  const debezium = debeziumJson(r);
  const s = r.snapshot;
  const snapshot = s && {
    rows: s.rows,
    rowsPerSec: round(s.rowsPerSec),
    copyPipeRowsPerSec: round(s.copyPipeRowsPerSec),
    ratio: round(s.ratio, 3),
    seconds: round(s.seconds, 2),
    copyPipeSeconds: round(s.copyPipeSeconds, 2),
    firstRowSeconds: round(s.firstRowSeconds, 2),
    tableMb: round(s.tableBytes / 2 ** 20, 1),
    rssMb: round(s.peakRssMb),
    cpuByPart: cpuFigures(s.cpu),
    consistent: s.consistent,
  };
  return {
    environment: env,
    settings: { ...settings, only: [...settings.only] },
    oneWay,
    oneWaySchemaless,
    debezium,
    twoWay,
    snapshot,
    hugeTxn: r.hugeTxn,
    failedScenarios: r.failed ?? {},
    targets: targets(r),
    scenarios: {
      oneWay: one,
      oneWaySchemaless: sl,
      native: nat,
      debezium: r.debezium,
      twoWay: two,
      snapshot: s,
    },
  };
}

/**
 * The seed stack's figures and pgbisync one-way's as ratios to them (`pgbisyncRatio`: pgbisync ÷ Debezium,
 * so above 1 is faster for throughput, below 1 is lower for latency, memory and CPU). `{ failed }` when
 * the scenario failed; undefined when it did not run.
 */
function debeziumJson(r: BenchResults): Record<string, unknown> | undefined {
  const failed = r.failed?.debezium;
  if (failed !== undefined) return { failed };
  const d = r.debezium;
  if (d === undefined) return undefined;
  const one = r.oneWay;
  const low = lowestRate(d);
  const oneLow = lowestRate(one);
  const oneCpu = one === undefined ? undefined : totalCpu(one.cpu);
  return {
    label: d.label,
    changesPerSec: round(d.bulk.changesPerSec),
    singleRowTxnsChangesPerSec: round(d.bulkSingle.changesPerSec),
    multiRowTxnsChangesPerSec: round(d.bulkMulti.changesPerSec),
    latencyRate: low?.rate ?? null,
    p50Ms: round(low?.p50Ms, 1),
    p95Ms: round(low?.p95Ms, 1),
    p99Ms: round(low?.p99Ms, 1),
    steady: d.steady.map((x) => ({
      rate: x.rate,
      achievedChangesPerSec: round(x.sourceChangesPerSec),
      samples: x.samples,
      p50Ms: round(x.p50Ms, 1),
      p95Ms: round(x.p95Ms, 1),
      p99Ms: round(x.p99Ms, 1),
      drainMs: round(x.drainMs),
    })),
    rssMb: round(d.peakRssMb),
    cpuSeconds: round(d.cpu.connect, 2),
    pipelineCpuSeconds: round(totalCpu(d.cpu), 2),
    cpuByPart: cpuFigures(d.cpu),
    consistent: d.consistent,
    pgbisyncRatio: {
      changesPerSec: ratio(one?.bulk.changesPerSec, d.bulk.changesPerSec),
      singleRowTxnsChangesPerSec: ratio(one?.bulkSingle.changesPerSec, d.bulkSingle.changesPerSec),
      multiRowTxnsChangesPerSec: ratio(one?.bulkMulti.changesPerSec, d.bulkMulti.changesPerSec),
      p50Ms: ratio(oneLow?.p50Ms, low?.p50Ms),
      p99Ms: ratio(oneLow?.p99Ms, low?.p99Ms),
      steady: d.steady.map((x, i) => ({
        rate: x.rate,
        p50Ms: ratio(one?.steady[i]?.p50Ms, x.p50Ms),
        p99Ms: ratio(one?.steady[i]?.p99Ms, x.p99Ms),
      })),
      rssMb: ratio(one?.peakRssMb, d.peakRssMb),
      cpuSeconds: ratio(one?.cpu.pgbisync, d.cpu.connect),
      pipelineCpuSeconds: ratio(oneCpu, totalCpu(d.cpu)),
    },
  };
}

interface Target {
  readonly name: string;
  readonly value: number | null;
  readonly target: string;
  readonly pass: boolean | null;
}

function targets(r: BenchResults): Target[] {
  const one = r.oneWay;
  const low = lowestRate(one);
  const t = (
    name: string,
    value: number | undefined,
    target: string,
    ok: (v: number) => boolean,
  ): Target => ({
    name,
    value: round(value, 3),
    target,
    pass: value === undefined || !Number.isFinite(value) ? null : ok(value),
  });
  const natRate = r.native?.bulk.changesPerSec;
  return [
    t('one-way changes/s', one?.bulk.changesPerSec, '>= 20000', (v) => v >= 20_000),
    t(
      'one-way / native changes/s',
      one && natRate ? one.bulk.changesPerSec / natRate : undefined,
      '>= 0.5',
      (v) => v >= 0.5,
    ),
    t(`p99 at ${low?.rate ?? '?'} changes/s (ms)`, low?.p99Ms, '< 250', (v) => v < 250),
    t('peak RSS one-way (MiB)', one?.peakRssMb, '< 300', (v) => v < 300),
    t('peak RSS two-way (MiB)', r.twoWay?.peakRssMb, '< 300', (v) => v < 300),
    t('peak RSS snapshot (MiB)', r.snapshot?.peakRssMb, '< 300', (v) => v < 300),
    t('peak RSS huge-txn (MiB)', r.hugeTxn?.pgbisync.peakRssMb, '< 300', (v) => v < 300),
    ...(r.oneWaySchemaless === undefined
      ? []
      : [
          t(
            'one-way schemaless changes/s',
            r.oneWaySchemaless.bulk.changesPerSec,
            '>= 20000',
            (v) => v >= 20_000,
          ),
          t(
            'one-way schemaless / native changes/s',
            natRate ? r.oneWaySchemaless.bulk.changesPerSec / natRate : undefined,
            '>= 0.5',
            (v) => v >= 0.5,
          ),
          t('peak RSS one-way schemaless (MiB)', r.oneWaySchemaless.peakRssMb, '< 300', (v) => v < 300),
        ]),
  ];
}

const int = (n: number | undefined) =>
  n === undefined || !Number.isFinite(n) ? '-' : Math.round(n).toLocaleString('en-US');
const fix = (n: number | undefined, d = 1) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));
const x = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`;
/** Latency percentiles and, after @, the rate the source achieved (a busy machine may fall short). */
const lat = (s: SteadyResult | undefined) =>
  s === undefined
    ? '-'
    : `${fix(s.p50Ms)} / ${fix(s.p95Ms)} / ${fix(s.p99Ms)} @${int(s.sourceChangesPerSec)}/s`;

export function formatTable(settings: BenchSettings, env: Environment, r: BenchResults): string {
  const one = r.oneWay;
  const nat = r.native;
  const dbz = r.debezium;
  const two = r.twoWay;
  const sl = r.oneWaySchemaless;
  const failed = r.failed ?? {};
  const rows: string[][] = [
    [
      '',
      'pgbisync 1-way',
      'native',
      '1-way/native',
      'schemaless 1-way',
      'schemaless/native',
      'debezium',
      '1-way/debezium',
      'pgbisync 2-way',
    ],
  ];
  /** A failed scenario's cells say so instead of showing '-'. */
  const or = (scenario: string, cell: string) => (failed[scenario] !== undefined ? 'FAILED' : cell);
  /** `schemaless`: the one-way-schemaless cell and its ratio to native ('' for none). */
  const add = (
    label: string,
    a: string,
    b: string,
    c: string,
    e: string,
    f: string,
    d: string,
    schemaless: readonly [string, string] = ['', ''],
  ) =>
    rows.push([
      label,
      or('one-way', a),
      or('native', b),
      c,
      or('one-way-schemaless', schemaless[0]),
      schemaless[1],
      or('debezium', e),
      f,
      or('two-way', d),
    ]);
  /** The schemaless scenario's cells of a throughput figure: the value and its ratio to native. */
  const slRate = (pick: (s: ScenarioResult) => number) =>
    [int(sl && pick(sl)), x(sl && pick(sl), nat && pick(nat))] as const;
  add(
    `bulk: ${int(settings.singleRowTxns)} single-row txns, changes/s`,
    int(one?.bulkSingle.changesPerSec),
    int(nat?.bulkSingle.changesPerSec),
    x(one?.bulkSingle.changesPerSec, nat?.bulkSingle.changesPerSec),
    int(dbz?.bulkSingle.changesPerSec),
    x(one?.bulkSingle.changesPerSec, dbz?.bulkSingle.changesPerSec),
    int(two?.bulkSingle.changesPerSec),
    slRate((s) => s.bulkSingle.changesPerSec),
  );
  add(
    `bulk: ${int(settings.multiRowTxns)} txns x ${int(settings.multiRowTxnRows)} rows, changes/s`,
    int(one?.bulkMulti.changesPerSec),
    int(nat?.bulkMulti.changesPerSec),
    x(one?.bulkMulti.changesPerSec, nat?.bulkMulti.changesPerSec),
    int(dbz?.bulkMulti.changesPerSec),
    x(one?.bulkMulti.changesPerSec, dbz?.bulkMulti.changesPerSec),
    int(two?.bulkMulti.changesPerSec),
    slRate((s) => s.bulkMulti.changesPerSec),
  );
  add(
    'bulk overall, changes/s',
    int(one?.bulk.changesPerSec),
    int(nat?.bulk.changesPerSec),
    x(one?.bulk.changesPerSec, nat?.bulk.changesPerSec),
    int(dbz?.bulk.changesPerSec),
    x(one?.bulk.changesPerSec, dbz?.bulk.changesPerSec),
    int(two?.bulk.changesPerSec),
    slRate((s) => s.bulk.changesPerSec),
  );
  const rates =
    one?.steady.map((s) => s.rate) ?? nat?.steady.map((s) => s.rate) ?? dbz?.steady.map((s) => s.rate) ?? [];
  for (const [i, rate] of rates.entries()) {
    const twoSteady = two?.steady.find((s) => s.rate === rate);
    add(
      `steady ${int(rate)}/s asked: p50 / p95 / p99 ms @done`,
      lat(one?.steady[i]),
      lat(nat?.steady[i]),
      x(one?.steady[i]?.p99Ms, nat?.steady[i]?.p99Ms),
      lat(dbz?.steady[i]),
      x(one?.steady[i]?.p99Ms, dbz?.steady[i]?.p99Ms),
      twoSteady === undefined ? '' : `${lat(twoSteady)} (asked per side, @ both)`,
      [lat(sl?.steady[i]), x(sl?.steady[i]?.p99Ms, nat?.steady[i]?.p99Ms)],
    );
  }
  const natCpu = nat === undefined ? undefined : totalCpu(nat.cpu);
  add(
    'CPU s, pgbisync process / native backends / Connect JVM',
    fix(one?.cpu.pgbisync),
    fix(natCpu),
    x(one?.cpu.pgbisync, natCpu),
    fix(dbz?.cpu.connect),
    x(one?.cpu.pgbisync, dbz?.cpu.connect),
    fix(two?.cpu.pgbisync),
    [fix(sl?.cpu.pgbisync), x(sl?.cpu.pgbisync, natCpu)],
  );
  const dbzCpu = dbz === undefined ? undefined : totalCpu(dbz.cpu);
  add(
    'CPU s, whole pipeline (+ Kafka + PG backends)',
    fix(one === undefined ? undefined : totalCpu(one.cpu)),
    fix(natCpu),
    x(one === undefined ? undefined : totalCpu(one.cpu), natCpu),
    fix(dbzCpu),
    x(one === undefined ? undefined : totalCpu(one.cpu), dbzCpu),
    fix(two === undefined ? undefined : totalCpu(two.cpu)),
    [fix(sl && totalCpu(sl.cpu)), x(sl && totalCpu(sl.cpu), natCpu)],
  );
  add(
    'peak RSS MiB (native: walsender + apply, private; dbz: JVM)',
    int(one?.peakRssMb),
    int(nat?.peakRssMb),
    x(one?.peakRssMb, nat?.peakRssMb),
    int(dbz?.peakRssMb),
    x(one?.peakRssMb, dbz?.peakRssMb),
    int(two?.peakRssMb),
    [int(sl?.peakRssMb), x(sl?.peakRssMb, nat?.peakRssMb)],
  );
  add(
    'databases identical afterwards',
    one === undefined ? '-' : String(one.consistent),
    nat === undefined ? '-' : String(nat.consistent),
    '',
    dbz === undefined ? '-' : String(dbz.consistent),
    '',
    two === undefined ? '-' : String(two.consistent),
    [sl === undefined ? '-' : String(sl.consistent), ''],
  );
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const out = [
    `pgbisync benchmark: ${env.cpus} CPUs, Node ${env.node}, ${env.postgres}; ${fix(env.seconds, 0)} s; load average ${fix(env.loadAverage.start, 2)} at start, ${fix(env.loadAverage.end, 2)} at end`,
    '',
    ...rows.map(line),
  ];
  if (dbz !== undefined) {
    out.push(
      '',
      `debezium: ${dbz.label} on Kafka Connect (upsert, deletes, batch.size 1000); pgbisync 1-way ÷ debezium: throughput ${x(one?.bulk.changesPerSec, dbz.bulk.changesPerSec)}, p50 ${x(lowestRate(one)?.p50Ms, lowestRate(dbz)?.p50Ms)}, p99 ${x(lowestRate(one)?.p99Ms, lowestRate(dbz)?.p99Ms)} at ${int(lowestRate(dbz)?.rate)}/s, peak RSS ${x(one?.peakRssMb, dbz.peakRssMb)}, pipeline CPU ${x(one === undefined ? undefined : totalCpu(one.cpu), dbzCpu)}`,
    );
  }
  for (const [scenario, error] of Object.entries(failed)) {
    out.push('', `scenario ${scenario} FAILED: ${error.split('\n')[0]}`);
  }
  const s = r.snapshot;
  if (s !== undefined) {
    out.push(
      '',
      `snapshot of ${int(s.rows)} rows (${fix(s.tableBytes / 2 ** 20, 0)} MiB): pgbisync ${int(s.rowsPerSec)} rows/s (${fix(s.seconds, 2)} s incl. start), COPY pipe ${int(s.copyPipeRowsPerSec)} rows/s (${fix(s.copyPipeSeconds, 2)} s): ${fix(s.ratio, 2)}x; peak RSS ${int(s.peakRssMb)} MiB; identical ${s.consistent}`,
    );
  }
  const h = r.hugeTxn;
  if (h !== undefined) {
    const rate = (seconds: number | undefined) => (seconds === undefined ? '-' : int(h.rows / seconds));
    out.push(
      '',
      `huge transactions of ${int(h.rows)} rows${h.payloadBytes > 0 ? ` (${int(h.payloadBytes)}-byte text each)` : ''}, rows/s (pgbisync / native): insert ${rate(h.pgbisync.insertSeconds)} / ${rate(h.native?.insertSeconds)}, update ${rate(h.pgbisync.updateSeconds)} / ${rate(h.native?.updateSeconds)}; pgbisync peak RSS ${int(h.pgbisync.peakRssMb)} MiB; identical ${h.checks.identical}, target transactions ${h.checks.targetTransactions}, conflicts ${h.checks.conflicts}; consistent ${h.consistent}`,
    );
    const k = h.kill;
    if (k !== undefined) {
      out.push(
        `  kill -9 during the update: ${fix(k.afterCommitSeconds, 2)} s after its source commit (target transaction open ${fix(k.targetTxnOpenSeconds, 2)} s), rows of it seen on db2 after the kill ${int(k.updatedRowsSeen)}; restart to applied ${fix(k.restartToAppliedSeconds, 2)} s; peak RSS of the killed process ${int(k.killedPeakRssMb ?? 0)} MiB, of the restarted one ${int(k.restartedPeakRssMb ?? 0)} MiB`,
      );
    }
  }
  out.push('', 'targets:');
  for (const t of targets(r)) {
    const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'MISS';
    out.push(`  ${verdict}  ${t.name}: ${t.value ?? '-'} (target ${t.target})`);
  }
  return out.join('\n');
}
