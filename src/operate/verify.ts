/**
 * `pgbisync verify`: proves that every synced table holds the same rows on every node, without moving the
 * tables through pgbisync. The first node is the reference; each other node is compared with it.
 *
 * The work happens in the databases: the reference's primary-key order is cut into chunks of
 * `chunkRows` rows by keyset pagination (`WHERE (pk) > (last key) ORDER BY pk LIMIT n`, an index range
 * scan per chunk, no OFFSET), and each side hashes the same key range
 * (`md5(string_agg(ROW(columns)::text ORDER BY pk))`). Only a chunk whose count or hash differs is
 * fetched as (key, md5(row)) pairs and merged to name the differing keys. Rows beyond the reference's
 * last key are paged the same way. While the next reference chunk is computed, the other nodes hash the
 * current one.
 *
 * Row text must not depend on session settings, so every connection uses the same TimeZone, DateStyle,
 * IntervalStyle, extra_float_digits and bytea_output. Chunks follow each node's key order (its index);
 * if two nodes sort keys differently (collation), a row can land in different chunks on the two sides, so
 * every candidate key is finally looked up by key on both sides and classified again (exact, just slower
 * when many chunks differ).
 *
 * Verify reads committed data at slightly different times on each node: with writes in flight (sync
 * running, lag), recently changed rows show up as differences; run it when lag is drained.
 */
import type pg from 'pg';
import type { Config, NodeConfig } from '../config/schema.ts';
import { splitTableName } from '../pg/sql-names.ts';
import { readTable } from '../pg/table-catalog.ts';
import { connectNode, resolveTables } from './sync-plan.ts';
import { prepareComparableSession, schemaDifference, TableSql } from './verify-sql.ts';

export type DiffKind = 'only-on-reference' | 'only-on-node' | 'different';

export interface KeyDiff {
  /** Primary key values as PostgreSQL text, by column. */
  readonly key: Readonly<Record<string, string>>;
  readonly kind: DiffKind;
}

export interface TableComparison {
  readonly table: string;
  readonly reference: string;
  readonly node: string;
  readonly identical: boolean;
  /** Columns or primary key differ between the nodes: rows were not compared. */
  readonly schemaProblem: string | null;
  readonly referenceRows: number;
  readonly nodeRows: number;
  readonly chunks: number;
  readonly differingChunks: number;
  readonly onlyOnReference: number;
  readonly onlyOnNode: number;
  readonly different: number;
  /** The first differing keys, at most `maxListedKeys`. */
  readonly keys: readonly KeyDiff[];
}

export interface VerifyReport {
  readonly identical: boolean;
  readonly tables: readonly TableComparison[];
}

/** Every differing key of one table between the reference and one node (uncapped): repair's input. */
export interface PairDifferences {
  readonly table: string;
  readonly reference: string;
  readonly node: string;
  readonly keyColumns: readonly string[];
  /** Key values as text, in keyColumns order. */
  readonly keys: readonly (readonly string[])[];
}

export interface VerifyResult {
  readonly report: VerifyReport;
  readonly differences: readonly PairDifferences[];
}

export interface VerifyProgress {
  readonly table: string;
  readonly referenceRows: number;
  readonly chunks: number;
  readonly done: boolean;
}

export interface VerifyOptions {
  readonly chunkRows: number;
  readonly maxListedKeys?: number;
  /** Compare only these of the synced tables. */
  readonly tables?: readonly string[];
  readonly onProgress?: (progress: VerifyProgress) => void;
}

export const DEFAULT_CHUNK_ROWS = 10_000;
const DEFAULT_MAX_LISTED_KEYS = 50;
const RECHECK_BATCH = 1000;

export async function verify(config: Config, options: VerifyOptions): Promise<VerifyResult> {
  const all = await resolveTables(config);
  const tables = options.tables === undefined ? all : all.filter((t) => options.tables!.includes(t));
  const clients = new Map<string, pg.Client>();
  try {
    for (const node of config.nodes) {
      const db = await connectNode(node, 'verify');
      clients.set(node.name, db);
      await prepareComparableSession(db);
    }
    const [reference, ...others] = config.nodes as [NodeConfig, ...NodeConfig[]];
    const comparisons: TableComparison[] = [];
    const differences: PairDifferences[] = [];
    for (const table of tables) {
      const pairs = await compareTable(table, reference, others, clients, options);
      for (const p of pairs) {
        comparisons.push(p.comparison);
        if (p.keys.length > 0) differences.push(p.differences());
      }
    }
    return { report: { identical: comparisons.every((c) => c.identical), tables: comparisons }, differences };
  } finally {
    for (const db of clients.values()) await db.end().catch(() => undefined);
  }
}

interface HashRow {
  readonly k: string[];
  readonly h: string;
}

/** Differences of one table between the reference and one node, accumulated chunk by chunk. */
class PairAccumulator {
  readonly node: NodeConfig;
  readonly db: pg.Client;
  differingChunks = 0;
  /** Candidate differences by key (JSON of the key values); confirmed by recheck(). */
  readonly onlyOnReference = new Map<string, readonly string[]>();
  readonly onlyOnNode = new Map<string, readonly string[]>();
  readonly different = new Map<string, readonly string[]>();

  constructor(node: NodeConfig, db: pg.Client) {
    this.node = node;
    this.db = db;
  }

  merge(referenceRows: readonly HashRow[], nodeRows: readonly HashRow[]): void {
    const mine = new Map(nodeRows.map((r) => [JSON.stringify(r.k), r]));
    for (const r of referenceRows) {
      const id = JSON.stringify(r.k);
      const other = mine.get(id);
      if (other === undefined) this.onlyOnReference.set(id, r.k);
      else if (other.h !== r.h) this.different.set(id, r.k);
      mine.delete(id);
    }
    for (const [id, r] of mine) this.onlyOnNode.set(id, r.k);
  }

  /**
   * Looks every candidate key up by key on both sides and classifies it again. Chunk ranges line up only
   * when both nodes sort keys alike; under another collation a row can fall into another chunk (or the
   * tail) on one side and look missing. A lookup by key is exact; it also drops rows that became equal
   * while verify ran (writes in flight).
   */
  async recheck(refDb: pg.Client, sql: TableSql): Promise<void> {
    const candidates = new Map([...this.onlyOnReference, ...this.onlyOnNode, ...this.different]);
    this.onlyOnReference.clear();
    this.onlyOnNode.clear();
    this.different.clear();
    const keys = [...candidates.values()];
    for (let at = 0; at < keys.length; at += RECHECK_BATCH) {
      const batch = keys.slice(at, at + RECHECK_BATCH);
      const [mine, theirs] = await Promise.all(
        [refDb, this.db].map(async (db) => {
          const [text, values] = sql.hashesByKey(batch);
          const r = await db.query<{ i: number; h: string }>(text, values);
          return new Map(r.rows.map((row) => [row.i, row.h]));
        }),
      );
      batch.forEach((k, i) => {
        const a = mine!.get(i);
        const b = theirs!.get(i);
        const id = JSON.stringify(k);
        if (a !== undefined && b === undefined) this.onlyOnReference.set(id, k);
        else if (a === undefined && b !== undefined) this.onlyOnNode.set(id, k);
        else if (a !== b) this.different.set(id, k);
      });
    }
  }

  get count(): number {
    return this.onlyOnReference.size + this.onlyOnNode.size + this.different.size;
  }
}

interface PairOutcome {
  readonly comparison: TableComparison;
  readonly keys: readonly (readonly string[])[];
  differences(): PairDifferences;
}

async function compareTable(
  table: string,
  reference: NodeConfig,
  others: readonly NodeConfig[],
  clients: ReadonlyMap<string, pg.Client>,
  options: VerifyOptions,
): Promise<PairOutcome[]> {
  const { schema, table: name } = splitTableName(table);
  const refDb = clients.get(reference.name)!;
  const refCatalog = (await readTable(refDb, schema, name))!;
  const sql = new TableSql(refCatalog);
  const outcomes: PairOutcome[] = [];
  const pairs: PairAccumulator[] = [];
  for (const node of others) {
    const db = clients.get(node.name)!;
    const problem = schemaDifference(
      refCatalog,
      await readTable(db, schema, name),
      reference.name,
      node.name,
    );
    if (problem === null) pairs.push(new PairAccumulator(node, db));
    else outcomes.push(schemaOutcome(table, reference.name, node.name, problem));
  }
  if (pairs.length === 0) return outcomes;

  const chunkRows = options.chunkRows;
  const query = <R extends pg.QueryResultRow>(db: pg.Client, [text, values]: [string, unknown[]]) =>
    db.query<R>(text, values).then((r) => r.rows);
  const nextChunk = (lower: readonly string[] | undefined) => {
    const p = query<{ n: number; h: string | null; last: string[] | null }>(
      refDb,
      sql.referenceChunk(lower, chunkRows),
    ).then((rows) => rows[0]!);
    p.catch(() => undefined); // awaited below; this only marks it handled while other work runs
    return p;
  };
  let referenceRows = 0;
  let chunks = 0;
  let lower: string[] | undefined;
  let next = nextChunk(undefined);
  for (;;) {
    const chunk = await next;
    if (chunk.n === 0) break;
    const upper = chunk.last!;
    const final = chunk.n < chunkRows;
    if (!final) next = nextChunk(upper);
    chunks++;
    referenceRows += chunk.n;
    const from = lower;
    await Promise.all(
      pairs.map(async (pair) => {
        const [theirs] = await query<{ n: number; h: string | null }>(pair.db, sql.rangeHash(from, upper));
        if (theirs!.n === chunk.n && theirs!.h === chunk.h) return;
        pair.differingChunks++;
        const [a, b] = await Promise.all([
          query<HashRow>(refDb, sql.rowHashes(from, upper)),
          query<HashRow>(pair.db, sql.rowHashes(from, upper)),
        ]);
        pair.merge(a, b);
      }),
    );
    lower = upper;
    options.onProgress?.({ table, referenceRows, chunks, done: false });
    if (final) break;
  }
  // Rows after the reference's last key exist only on the other node: page through them.
  await Promise.all(
    pairs.map(async (pair) => {
      let after = lower;
      let tailChunk = false;
      for (;;) {
        const rows = await query<HashRow>(pair.db, sql.rowHashes(after, undefined, chunkRows));
        if (rows.length === 0) break;
        if (!tailChunk) pair.differingChunks++;
        tailChunk = true;
        pair.merge([], rows);
        after = rows[rows.length - 1]!.k;
        if (rows.length < chunkRows) break;
      }
    }),
  );
  options.onProgress?.({ table, referenceRows, chunks, done: true });

  const cap = options.maxListedKeys ?? DEFAULT_MAX_LISTED_KEYS;
  for (const pair of pairs) {
    await pair.recheck(refDb, sql);
    const keyOf = (k: readonly string[]) =>
      Object.fromEntries(sql.keyColumns.map((c, i) => [c, k[i] ?? ''])) as Record<string, string>;
    const kinds: [DiffKind, ReadonlyMap<string, readonly string[]>][] = [
      ['only-on-reference', pair.onlyOnReference],
      ['only-on-node', pair.onlyOnNode],
      ['different', pair.different],
    ];
    const keys = kinds.flatMap(([, m]) => [...m.values()]);
    const listed: KeyDiff[] = kinds
      .flatMap(([kind, m]) => [...m.values()].map((k) => ({ kind, k })))
      .slice(0, cap)
      .map(({ kind, k }) => ({ kind, key: keyOf(k) }));
    outcomes.push({
      comparison: {
        table,
        reference: reference.name,
        node: pair.node.name,
        identical: pair.count === 0,
        schemaProblem: null,
        referenceRows,
        nodeRows: referenceRows - pair.onlyOnReference.size + pair.onlyOnNode.size,
        chunks,
        differingChunks: pair.differingChunks,
        onlyOnReference: pair.onlyOnReference.size,
        onlyOnNode: pair.onlyOnNode.size,
        different: pair.different.size,
        keys: listed,
      },
      keys,
      differences: () => ({
        table,
        reference: reference.name,
        node: pair.node.name,
        keyColumns: sql.keyColumns,
        keys,
      }),
    });
  }
  return outcomes;
}

function schemaOutcome(table: string, reference: string, node: string, problem: string): PairOutcome {
  return {
    comparison: {
      table,
      reference,
      node,
      identical: false,
      schemaProblem: problem,
      referenceRows: 0,
      nodeRows: 0,
      chunks: 0,
      differingChunks: 0,
      onlyOnReference: 0,
      onlyOnNode: 0,
      different: 0,
      keys: [],
    },
    keys: [],
    differences: () => ({ table, reference, node, keyColumns: [], keys: [] }),
  };
}

/** `(a, b)=(1, x)`, as PostgreSQL writes keys in its messages. */
export function formatKey(key: Readonly<Record<string, string>>): string {
  return `(${Object.keys(key).join(', ')})=(${Object.values(key).join(', ')})`;
}

export function formatVerify(report: VerifyReport): string {
  const lines: string[] = [];
  const width = Math.max(0, ...report.tables.map((t) => t.table.length));
  for (const t of report.tables) {
    const head = `${t.table.padEnd(width)}  ${t.reference} vs ${t.node}`;
    if (t.schemaProblem !== null) {
      lines.push(`${head}  DIFFERENT  not compared: ${t.schemaProblem}`);
      continue;
    }
    if (t.identical) {
      lines.push(`${head}  identical  ${t.referenceRows} rows in ${t.chunks} chunk(s)`);
      continue;
    }
    const total = t.onlyOnReference + t.onlyOnNode + t.different;
    lines.push(
      `${head}  DIFFERENT  ${total} differing rows (${t.onlyOnReference} only on ${t.reference}, ${t.onlyOnNode} only on ${t.node}, ${t.different} different) in ${t.differingChunks} of ${t.chunks} chunk(s); ${t.referenceRows} rows on ${t.reference}, ${t.nodeRows} on ${t.node}`,
    );
    for (const k of t.keys) {
      const what =
        k.kind === 'only-on-reference'
          ? `only on ${t.reference}`
          : k.kind === 'only-on-node'
            ? `only on ${t.node}`
            : 'different';
      lines.push(`    ${what.padEnd(Math.max(t.reference.length, t.node.length) + 8)}  ${formatKey(k.key)}`);
    }
    if (total > t.keys.length) lines.push(`    ... and ${total - t.keys.length} more`);
  }
  const differing = new Set(report.tables.filter((t) => !t.identical).map((t) => t.table)).size;
  const tables = new Set(report.tables.map((t) => t.table)).size;
  lines.push(
    report.identical
      ? `verify: all ${tables} tables identical`
      : `verify: ${differing} of ${tables} tables differ`,
  );
  return lines.join('\n');
}
