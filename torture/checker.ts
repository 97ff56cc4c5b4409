/**
 * The torture test's independent checker. It uses none of pgbisync's code: only SQL against the nodes,
 * the workload's history and a model of last-writer-wins.
 *
 * - convergence: every table holds the same rows (key and image) on every node;
 * - the model: for every key the workload wrote, the row on every node is the image of the winning
 *   write — the greatest (commit time, node) over every committed write of that key, deletes included,
 *   a TRUNCATE counting as a delete of every key of its table at its commit time — or no row when the
 *   winner is a delete. This covers no loss (a winning write missing anywhere fails) and no resurrection;
 * - no double apply: the append-only ledger holds each inserted id exactly once, and nothing else;
 * - no loops: once drained, no node commits a transaction under a replication origin and no topic grows
 *   for QUIET_MS.
 */
import { Kafka, logLevel } from 'kafkajs';
import { TABLES } from './schema.ts';
import type { CommittedTransaction } from './workload.ts';
import { withSession } from './workload.ts';

export interface CheckNode {
  readonly name: string;
  readonly url: string;
}

export interface Finding {
  readonly check: 'convergence' | 'model' | 'ledger' | 'quiet' | 'daemon' | 'drain' | 'addtable' | 'fault';
  readonly table?: string;
  readonly key?: string;
  readonly detail: string;
  /** The writes of that key, oldest first (model findings). */
  readonly history?: readonly string[];
}

type Rows = Map<string, string>;

async function readRows(url: string, table: string, key: string, image: string): Promise<Rows> {
  return withSession(url, async (c) => {
    const r = await c.query<{ k: string; r: string }>(`SELECT ${key} AS k, ${image} AS r FROM ${table}`);
    return new Map(r.rows.map((x) => [x.k, x.r]));
  });
}

interface Version {
  readonly us: bigint;
  readonly node: string;
  readonly row: string | null;
  readonly label: string;
}

const newer = (a: Version, b: Version) => a.us > b.us || (a.us === b.us && a.node > b.node);

/** The winning version of every written key, per table. */
export function model(history: readonly CommittedTransaction[]): Map<string, Map<string, Version[]>> {
  const byTable = new Map<string, Map<string, Version[]>>();
  const keysOf = (t: string) => {
    let m = byTable.get(t);
    if (m === undefined) {
      m = new Map();
      byTable.set(t, m);
    }
    return m;
  };
  for (const tx of history) {
    // A transaction's last write of a key is its version of that key.
    const last = new Map<string, { table: string; key: string; row: string | null }>();
    for (const w of tx.writes) last.set(`${w.table}\u0000${w.key}`, w);
    for (const w of last.values()) {
      const versions = keysOf(w.table).get(w.key) ?? [];
      versions.push({ us: tx.us, node: tx.node, row: w.row, label: `${tx.node} xid ${tx.xid} at ${tx.us}` });
      keysOf(w.table).set(w.key, versions);
    }
  }
  // A TRUNCATE deletes, at its commit time, every key of its table (the ones written before and after
  // it alike: last-writer-wins keeps the newer writes).
  for (const tx of history) {
    for (const t of tx.truncated) {
      for (const versions of keysOf(t).values())
        versions.push({
          us: tx.us,
          node: tx.node,
          row: null,
          label: `TRUNCATE by ${tx.node} xid ${tx.xid} at ${tx.us}`,
        });
    }
  }
  for (const keys of byTable.values())
    for (const versions of keys.values()) versions.sort((a, b) => (newer(a, b) ? 1 : newer(b, a) ? -1 : 0));
  return byTable;
}

export async function checkData(
  nodes: readonly CheckNode[],
  history: readonly CommittedTransaction[],
  limit = 10,
): Promise<{ findings: Finding[]; rows: Record<string, number> }> {
  const findings: Finding[] = [];
  const rows: Record<string, number> = {};
  const expected = model(history);
  for (const t of TABLES) {
    const perNode = await Promise.all(nodes.map((n) => readRows(n.url, t.name, t.key, t.image)));
    rows[t.name] = perNode[0]!.size;
    // Convergence: every node equals the first.
    for (let i = 1; i < nodes.length; i++) {
      let shown = 0;
      const keys = new Set([...perNode[0]!.keys(), ...perNode[i]!.keys()]);
      for (const k of [...keys].sort()) {
        const a = perNode[0]!.get(k);
        const b = perNode[i]!.get(k);
        if (a === b) continue;
        if (shown++ < limit)
          findings.push({
            check: 'convergence',
            table: t.name,
            key: k,
            detail: `${nodes[0]!.name}: ${a ?? 'no row'} | ${nodes[i]!.name}: ${b ?? 'no row'}`,
            history: historyOf(expected, t.name, k),
          });
      }
    }
    if (!t.modelled) continue;
    // The model, on every node: written keys hold their winner; nothing else exists.
    const written = expected.get(t.name) ?? new Map<string, Version[]>();
    for (const [i, node] of nodes.entries()) {
      let shown = 0;
      const actual = perNode[i]!;
      for (const [k, versions] of written) {
        const winner = versions.at(-1)!;
        const got = actual.get(k) ?? null;
        if (got === winner.row) continue;
        if (shown++ < limit)
          findings.push({
            check: 'model',
            table: t.name,
            key: k,
            detail: `${node.name} holds ${got ?? 'no row'}; last writer ${winner.label} wrote ${winner.row ?? 'a delete'}`,
            history: historyOf(expected, t.name, k),
          });
      }
      for (const k of actual.keys()) {
        if (written.has(k)) continue;
        if (shown++ < limit)
          findings.push({
            check: 'model',
            table: t.name,
            key: k,
            detail: `${node.name} holds a row nobody wrote: ${actual.get(k)}`,
          });
      }
    }
  }
  findings.push(...(await checkLedger(nodes, history)));
  return { findings, rows };
}

function historyOf(expected: Map<string, Map<string, Version[]>>, table: string, key: string): string[] {
  return (expected.get(table)?.get(key) ?? []).map((v) => `${v.label}: ${v.row ?? 'delete'}`);
}

/** Each ledger id inserted once is there exactly once, on every node. */
async function checkLedger(
  nodes: readonly CheckNode[],
  history: readonly CommittedTransaction[],
): Promise<Finding[]> {
  const ids = new Set<string>();
  for (const tx of history)
    for (const w of tx.writes) if (w.table === 'ledger' && w.row !== null) ids.add(w.key);
  const findings: Finding[] = [];
  for (const node of nodes) {
    const counts = await withSession(node.url, async (c) => {
      const r = await c.query<{ k: string; n: string }>(
        'SELECT jsonb_build_array(id)::text AS k, count(*)::text AS n FROM ledger GROUP BY 1',
      );
      return new Map(r.rows.map((x) => [x.k, Number(x.n)]));
    });
    const missing = [...ids].filter((k) => counts.get(k) !== 1);
    const extra = [...counts.keys()].filter((k) => !ids.has(k));
    if (missing.length > 0 || extra.length > 0)
      findings.push({
        check: 'ledger',
        detail: `${node.name}: ${missing.length} inserted ids not there exactly once (${missing.slice(0, 5).join(', ')}), ${extra.length} ids nobody inserted`,
      });
  }
  return findings;
}

/**
 * No loops: over `quietMs` after the drain no replication origin of any node commits a transaction
 * (`pg_replication_origin_status.local_lsn` stays: whatever a sync applies carries an origin), and no
 * topic with the run's prefix grows. (Transaction ids are no measure: autovacuum's ANALYZE takes some.)
 */
export async function checkQuiet(
  nodes: readonly CheckNode[],
  brokers: readonly string[],
  topicPrefix: string,
  quietMs: number,
): Promise<Finding[]> {
  const originCommits = (url: string) =>
    withSession(url, async (c) => {
      const r = await c.query<{ s: string | null }>(
        `SELECT string_agg(o.roname || ' at ' || s.local_lsn::text, ', ' ORDER BY o.roname) AS s
           FROM pg_replication_origin_status s JOIN pg_replication_origin o ON o.roident = s.local_id`,
      );
      return r.rows[0]?.s ?? '';
    });
  const kafka = new Kafka({ clientId: 'torture-checker', brokers: [...brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = async () => {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${topicPrefix}.`));
      const out = new Map<string, string>();
      for (const t of topics)
        for (const p of await admin.fetchTopicOffsets(t)) out.set(`${t}[${p.partition}]`, p.high);
      return out;
    };
    const before = {
      origins: await Promise.all(nodes.map((n) => originCommits(n.url))),
      topics: await ends(),
    };
    await new Promise((r) => setTimeout(r, quietMs));
    const after = {
      origins: await Promise.all(nodes.map((n) => originCommits(n.url))),
      topics: await ends(),
    };
    const findings: Finding[] = [];
    nodes.forEach((n, i) => {
      if (before.origins[i] !== after.origins[i])
        findings.push({
          check: 'quiet',
          detail: `${n.name}: transactions applied under a replication origin with no writes anywhere: ${before.origins[i]} -> ${after.origins[i]}`,
        });
    });
    for (const [t, high] of after.topics)
      if (before.topics.get(t) !== high)
        findings.push({
          check: 'quiet',
          detail: `topic ${t} grew ${before.topics.get(t) ?? 0} -> ${high} with no writes`,
        });
    return findings;
  } finally {
    await admin.disconnect();
  }
}
