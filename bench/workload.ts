/**
 * The workload, the same for every replication under test. A "side" is one direction: a generator
 * connection on the source writes, a probe connection on the target watches. In the two-way run both
 * sides write at once, on disjoint key and sequence ranges (no conflicts).
 *
 * End-to-end time of a bulk phase runs from just before the first source commit to the first poll of
 * the target that sees the phase's marker row, committed on the source after the phase's last
 * transaction: both pgbisync and native replication apply in source commit order, so the marker is
 * visible only once everything before it is.
 *
 * Steady-phase latency is commit-to-visible per change: `src_ts` is the source clock when the change was
 * written (the procedure commits right after), and a probe per writer polls the target every POLL_MS
 * for rows of that writer whose `seq` it has not seen, taking the target's statement_timestamp() as the moment they were visible
 * (same machine, same clock). The poll interval adds up to POLL_MS (plus the poll's own time) to each
 * sample. Inserts and updates are sampled; a row changed again or deleted before a poll saw it keeps
 * only its latest change; deletes are not sampled.
 *
 * A target that does not apply in source commit order across tables (the Debezium JDBC sink: one topic
 * per table, each table's buffer flushed on its own) can show the marker before rows written earlier in
 * other tables. For such a side (`keepsCommitOrder: false`) a phase ends only once the marker AND the
 * last row the phase wrote into each of its tables are visible: the last bulk key, and for the steady
 * phase the highest `seq` each writer left on the source (one topic partition per table keeps the order
 * within a table, so everything earlier in that table is visible then too).
 */
import type pg from 'pg';
import { sleep, waitForMarker } from './db.ts';

export interface Side {
  readonly name: string;
  /** On the source node. */
  readonly generator: pg.Client;
  /** More connections on the source node: the steady phase spreads high rates over them. */
  readonly extraGenerators: readonly pg.Client[];
  /** On the target node. */
  readonly probe: pg.Client;
  /**
   * More connections on the target node, one per steady-phase writer: each writer's poller has its own
   * (queries on one connection would queue behind each other and behind the marker's).
   */
  readonly pollers: readonly pg.Client[];
  /** Keys and sequence numbers of this side start here (sides never collide). */
  readonly base: number;
  /** False when the target may show a change before earlier changes of other tables (see above). */
  readonly keepsCommitOrder: boolean;
}

export interface BulkResult {
  readonly changes: number;
  readonly transactions: number;
  /** First source commit to the marker seen on every target. */
  readonly seconds: number;
  /** How long the sources took to commit the phase. */
  readonly sourceSeconds: number;
  readonly changesPerSec: number;
}

export interface SteadyResult {
  /** Requested rate per side, changes/s. */
  readonly rate: number;
  readonly sides: number;
  readonly changes: number;
  /** Achieved source rate summed over sides. */
  readonly sourceChangesPerSec: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** From the end of the source load to its marker being visible on the target. */
  readonly drainMs: number;
}

const POLL_MS = 5;
const MARKER_TIMEOUT_MS = 600_000;
/** Keys and sequence numbers of one steady-phase writer (a side has one or more). */
const WRITER_RANGE = 1e10;
/** Changes/s one writer connection is asked for at most (one commit per change, ~1 KB rows). */
const RATE_PER_WRITER = 2_500;

let markerSeq = 0;

/** Commits a marker on each side's source and waits until each is visible on its target. */
async function markAndWait(sides: readonly Side[]): Promise<number[]> {
  return Promise.all(
    sides.map(async (side) => {
      const id = side.base + ++markerSeq;
      await side.generator.query('INSERT INTO marker (id) VALUES ($1)', [id]);
      return waitForMarker(side.probe, id, MARKER_TIMEOUT_MS, POLL_MS);
    }),
  );
}

/** Waits until each side replicates (its marker crosses); returns when it did, in ms. */
export async function waitLive(sides: readonly Side[]): Promise<number> {
  const t0 = performance.now();
  await markAndWait(sides);
  return performance.now() - t0;
}

/** Waits until `sql` (with `params`) returns a row on the target; returns performance.now() of that poll. */
async function waitVisible(probe: pg.Client, what: string, sql: string, params: unknown[]): Promise<number> {
  const deadline = performance.now() + MARKER_TIMEOUT_MS;
  for (;;) {
    const r = await probe.query(sql, params);
    const now = performance.now();
    if ((r.rowCount ?? 0) > 0) return now;
    if (now > deadline) throw new Error(`${what} not visible after ${MARKER_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

async function bulk(
  sides: readonly Side[],
  transactions: number,
  changes: number,
  /** Key of the phase's last bulk row: `lastKey(side)`. */
  lastKey: (side: Side) => number,
  call: (side: Side) => Promise<unknown>,
): Promise<BulkResult> {
  const t0 = performance.now();
  let sourceEnd = t0;
  const seen = await Promise.all(
    sides.map(async (side) => {
      await call(side);
      sourceEnd = Math.max(sourceEnd, performance.now());
      const marker = (await markAndWait([side]))[0]!;
      if (side.keepsCommitOrder) return marker;
      const key = lastKey(side);
      const row = await waitVisible(side.probe, `bulk row ${key}`, 'SELECT 1 FROM bulk WHERE id = $1', [key]);
      return Math.max(marker, row);
    }),
  );
  const seconds = (Math.max(...seen) - t0) / 1000;
  return {
    changes: changes * sides.length,
    transactions: transactions * sides.length,
    seconds,
    sourceSeconds: (sourceEnd - t0) / 1000,
    changesPerSec: (changes * sides.length) / seconds,
  };
}

/** Single-row INSERT transactions, as fast as the source commits them; keys from `offset`. */
export function bulkSingle(sides: readonly Side[], txns: number, offset: number): Promise<BulkResult> {
  return bulk(
    sides,
    txns,
    txns,
    (side) => side.base + offset + txns - 1,
    (side) => side.generator.query('CALL bench_single($1, $2)', [side.base + offset, txns]),
  );
}

/** Transactions of `rows` inserted rows each. */
export function bulkMulti(
  sides: readonly Side[],
  txns: number,
  rows: number,
  offset: number,
): Promise<BulkResult> {
  return bulk(
    sides,
    txns,
    txns * rows,
    (side) => side.base + offset + txns * rows - 1,
    (side) => side.generator.query('CALL bench_multi($1, $2, $3)', [side.base + offset, txns, rows]),
  );
}

/**
 * Fixed-rate insert/update/delete mix on ~1 KB rows with commit-to-visible latency sampling. A side
 * writes `rate` changes/s through one writer connection per RATE_PER_WRITER, each on its own key and
 * sequence range with its own probe poller.
 */
export async function steady(
  sides: readonly Side[],
  rate: number,
  seconds: number,
  offset: number,
): Promise<SteadyResult> {
  const samples: number[] = [];
  let stop = false;
  const writers = sides.flatMap((side) => {
    const all = [side.generator, ...side.extraGenerators];
    const count = Math.min(all.length, side.pollers.length, Math.max(1, Math.ceil(rate / RATE_PER_WRITER)));
    return all.slice(0, count).map((client, j) => ({
      side,
      client,
      poller: side.pollers[j]!,
      rate: rate / count,
      base: side.base + offset + j * WRITER_RANGE,
    }));
  });
  const pollers = writers.map((w) => poll(w.poller, w.base, () => stop, samples));
  let changes = 0;
  let drainMs = 0;
  try {
    const t0 = performance.now();
    const written = await Promise.all(
      writers.map(async (w) => {
        const r = await w.client.query<{ changes: string }>('CALL bench_steady($1, $2, $3, $4)', [
          w.rate,
          seconds,
          w.base,
          w.base,
        ]);
        return Number(r.rows[0]?.changes ?? 0);
      }),
    );
    const sourceEnd = performance.now();
    changes = written.reduce((a, b) => a + b, 0);
    const seen = await markAndWait(sides);
    // A side that does not keep commit order: also the last change each writer left in `steady`.
    for (const w of writers) {
      if (w.side.keepsCommitOrder) continue;
      const last = await w.client.query<{ seq: string | null }>(
        'SELECT max(seq)::text AS seq FROM steady WHERE seq >= $1 AND seq < $2',
        [w.base, w.base + WRITER_RANGE],
      );
      const seq = last.rows[0]?.seq;
      if (seq === null || seq === undefined) continue;
      seen.push(
        await waitVisible(w.side.probe, `steady seq ${seq}`, 'SELECT 1 FROM steady WHERE seq = $1', [seq]),
      );
    }
    drainMs = Math.max(...seen) - sourceEnd;
    stop = true;
    await Promise.all(pollers);
    samples.sort((a, b) => a - b);
    return {
      rate,
      sides: sides.length,
      changes,
      sourceChangesPerSec: changes / ((sourceEnd - t0) / 1000),
      samples: samples.length,
      p50Ms: percentile(samples, 0.5),
      p95Ms: percentile(samples, 0.95),
      p99Ms: percentile(samples, 0.99),
      maxMs: samples.at(-1) ?? Number.NaN,
      drainMs,
    };
  } finally {
    stop = true;
    await Promise.allSettled(pollers);
  }
}

async function poll(
  probe: pg.Client,
  seq0: number,
  stopped: () => boolean,
  samples: number[],
): Promise<void> {
  let last = seq0 - 1;
  const end = seq0 + WRITER_RANGE;
  // One more round after the stop request: the marker (and, without commit order, each writer's last
  // change) was seen, so every change is visible by now.
  for (let final = false; !final; ) {
    final = stopped();
    const r = await probe.query<{ seq: string; ms: number }>(
      `SELECT seq::text, (extract(epoch FROM statement_timestamp() - src_ts) * 1000)::float8 AS ms
         FROM steady WHERE seq > $1 AND seq < $2 ORDER BY seq`,
      [last, end],
    );
    for (const row of r.rows) {
      samples.push(row.ms);
      last = Number(row.seq);
    }
    if (!final) await sleep(POLL_MS);
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}
