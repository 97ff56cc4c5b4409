/**
 * The torture workload: several client sessions per node write random transactions over shared keys
 * (so both nodes write the same rows at the same moments), node-owned foreign-key families, an
 * append-only ledger, TOASTed values later updated around, key changes, a stamping trigger, TRUNCATE,
 * long and very large transactions. Every transaction that committed is recorded in the history (node,
 * commit time from `pg_xact_commit_timestamp`, each row it wrote as key and image): the checker's model is
 * computed from it. A COMMIT whose answer was lost (the server crashed, the connection dropped) is
 * resolved later by the marker each transaction writes (`COMMIT_MARKERS`, a table outside the sync).
 */
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import pg from 'pg';
import type { Random } from './random.ts';
import { returning, SESSION_OPTIONS, table as tableDef } from './schema.ts';

/** One row a transaction wrote: its new image, or null when it deleted the row. */
export interface Write {
  readonly table: string;
  readonly key: string;
  readonly row: string | null;
}

export interface CommittedTransaction {
  readonly node: string;
  readonly xid: string;
  /** Commit time in microseconds since the Unix epoch (what last-writer-wins compares). */
  readonly us: bigint;
  readonly writes: readonly Write[];
  readonly truncated: readonly string[];
}

export const WORKLOAD_KINDS = [
  'basic',
  'toast',
  'keychange',
  'trigger',
  'truncate',
  'long',
  'big',
  'addtable',
] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface WorkloadOptions {
  readonly node: string;
  readonly nodeIndex: number;
  /** The node's database on the server that takes its writes (after a failover: the promoted standby). */
  readonly url: () => string;
  readonly clients: number;
  readonly kinds: ReadonlySet<WorkloadKind>;
  /** Rows of the one very large transaction each node runs (kind `big`). */
  readonly bigRows: number;
  readonly random: Random;
  readonly history: History;
  readonly signal: AbortSignal;
  /** Kind `addtable`: t_late is synced now (its deletes are remembered from here on). */
  readonly lateSynced: () => boolean;
}

/**
 * Each workload transaction inserts one row with its own token here (not synced): the row is there
 * after a crash or failover exactly when the transaction committed, and its xmin's commit timestamp is
 * the transaction's. A transaction id alone cannot tell: an id whose WAL a crash lost is given again.
 */
export const COMMIT_MARKERS = 'torture_commits';
export const COMMIT_MARKERS_DDL = `CREATE TABLE ${COMMIT_MARKERS} (token uuid PRIMARY KEY)`;

const HOT_KEYS = 120;
const RETRYABLE = new Set(['40P01', '40001', '23505', '23503']);

/** The committed transactions of every node, appended to a JSON-lines file as they are learnt. */
export class History {
  readonly transactions: CommittedTransaction[] = [];
  readonly #file: string;
  /** COMMITs sent whose outcome is unknown (connection lost): resolved by `resolveInDoubt`. */
  readonly inDoubt: InDoubt[] = [];
  counts = { committed: 0, retried: 0, connectionErrors: 0, inDoubt: 0 };

  constructor(file: string) {
    this.#file = file;
  }

  add(t: CommittedTransaction): void {
    this.transactions.push(t);
    this.counts.committed++;
    appendFileSync(this.#file, `${JSON.stringify({ ...t, us: t.us.toString() })}\n`);
  }

  /**
   * Asks each in-doubt transaction's node (at `urlOf(node)`, where it is now, a promoted standby after
   * a failover) whether it committed: its marker row is there exactly when it did. One without a marker
   * whose id the server still reports in progress is asked again later; so is one whose node cannot be
   * reached yet. Returns how many are left.
   */
  async resolveInDoubt(urlOf: (node: string) => string): Promise<number> {
    const left = [];
    for (const d of this.inDoubt.splice(0)) {
      const outcome = await withSession(urlOf(d.node), async (c) => {
        const marker = await c.query<{ us: string }>(
          `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us
             FROM ${COMMIT_MARKERS} WHERE token = $1`,
          [d.token],
        );
        if (marker.rows[0] !== undefined) return { committed: true, us: marker.rows[0].us };
        // The id may be in progress still (the backend finishing its commit), or unknown to a server
        // whose WAL that used it was lost ("in the future"): that one did not commit.
        const status = await c
          .query<{ s: string | null }>('SELECT pg_xact_status($1::xid8) AS s', [d.xid])
          .then((r) => r.rows[0]!.s)
          .catch((error: unknown) => {
            if (/is in the future/.test(String(error))) return 'aborted';
            throw error;
          });
        return { committed: false, inProgress: status === 'in progress' };
      }).catch(() => undefined);
      if (outcome === undefined || (!outcome.committed && outcome.inProgress)) left.push(d);
      else if (outcome.committed)
        this.add({
          node: d.node,
          xid: d.xid,
          us: BigInt(outcome.us!),
          writes: d.writes,
          truncated: d.truncated,
        });
    }
    this.inDoubt.push(...left);
    return left.length;
  }
}

interface InDoubt {
  readonly node: string;
  readonly xid: string;
  /** Its row in COMMIT_MARKERS. */
  readonly token: string;
  readonly writes: Write[];
  readonly truncated: string[];
}

export async function withSession<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, options: SESSION_OPTIONS, connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** One transaction in the making: its statements record what they wrote. */
class Tx {
  readonly writes: Write[] = [];
  readonly truncated: string[] = [];
  readonly c: pg.Client;
  constructor(c: pg.Client) {
    this.c = c;
  }

  async write(table: string, sql: string, params: unknown[]): Promise<number> {
    const r = await this.c.query<{ k: string; r: string }>(`${sql} ${returning(table)}`, params);
    for (const row of r.rows) this.writes.push({ table, key: row.k, row: row.r });
    return r.rowCount ?? 0;
  }

  async remove(table: string, sql: string, params: unknown[]): Promise<number> {
    const r = await this.c.query<{ k: string }>(`${sql} RETURNING ${tableDef(table).key} AS k`, params);
    for (const row of r.rows) this.writes.push({ table, key: row.k, row: null });
    return r.rowCount ?? 0;
  }
}

/** Runs one node's clients until the signal; returns when all of them stopped. */
export async function runWorkload(o: WorkloadOptions): Promise<void> {
  const uuids = Array.from({ length: 60 }, (_, i) => o.random.fork(`uuid-pool`).fork(String(i)).uuid());
  const clients = Array.from({ length: o.clients }, (_, i) =>
    runClient(o, i, o.random.fork(`client-${i}`), uuids),
  );
  await Promise.all(clients);
}

async function runClient(o: WorkloadOptions, index: number, rnd: Random, uuids: string[]): Promise<void> {
  let c: pg.Client | undefined;
  let n = 0;
  let bigDone = !(o.kinds.has('big') && index === 0);
  const owned = (k: number) => (o.nodeIndex + 1) * 1_000_000_000 + index * 100_000_000 + k;
  while (!o.signal.aborted) {
    if (c === undefined) {
      c = await connect(o.url()).catch(() => undefined);
      if (c === undefined) {
        await pause(500);
        continue;
      }
    }
    n++;
    const started = !bigDone && n > 40;
    const body = started ? (tx: Tx) => big(tx, rnd, owned, o.bigRows) : pickBody(o, rnd, n, owned, uuids);
    let xid: string | undefined;
    let committing = false;
    const token = randomUUID();
    const tx = new Tx(c);
    try {
      await c.query('BEGIN');
      xid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      await body(tx);
      await c.query(`INSERT INTO ${COMMIT_MARKERS} VALUES ($1)`, [token]);
      committing = true;
      await c.query('COMMIT');
      const us = await c.query<{ us: string }>(
        'SELECT (extract(epoch FROM pg_xact_commit_timestamp($1::xid8::xid)) * 1000000)::bigint::text AS us',
        [xid],
      );
      o.history.add({
        node: o.node,
        xid,
        us: BigInt(us.rows[0]!.us),
        writes: tx.writes,
        truncated: tx.truncated,
      });
      if (started) bigDone = true;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
      if (sqlstate !== undefined && RETRYABLE.has(sqlstate)) {
        o.history.counts.retried++;
        await c.query('ROLLBACK').catch(() => undefined);
        continue;
      }
      // SQL the server refused is the workload's bug; anything else (no SQLSTATE: ECONNRESET, a closed
      // connection; classes 08 and 57, too many connections) is the connection going away.
      if (sqlstate !== undefined && !/^(08|57|53)/.test(sqlstate)) throw error;
      // The connection is gone: a COMMIT in flight may or may not have happened.
      o.history.counts.connectionErrors++;
      if (committing && xid !== undefined) {
        o.history.counts.inDoubt++;
        o.history.inDoubt.push({
          node: o.node,
          xid,
          token,
          writes: tx.writes,
          truncated: tx.truncated,
        });
      }
      await c.end().catch(() => undefined);
      c = undefined;
    }
  }
  await c?.end().catch(() => undefined);
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, options: SESSION_OPTIONS, connectionTimeoutMillis: 5000 });
  // A server crash ends the session with an 'error' event; the next query then fails and reconnects.
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (error) {
    await c.end().catch(() => undefined);
    throw error;
  }
  return c;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Body = (tx: Tx) => Promise<void>;

function pickBody(
  o: WorkloadOptions,
  rnd: Random,
  n: number,
  owned: (k: number) => number,
  uuids: string[],
): Body {
  const k = o.kinds;
  const roll = rnd.float();
  if (k.has('long') && roll < 0.01) return long(rnd);
  if (k.has('truncate') && roll < 0.012)
    return async (tx) => {
      await tx.c.query('TRUNCATE t_text');
      tx.truncated.push('t_text');
    };
  const statements = rnd.int(1, 4);
  const parts: Body[] = [];
  for (let i = 0; i < statements; i++) parts.push(pickStatement(o, rnd, n, owned, uuids));
  return async (tx) => {
    for (const p of parts) await p(tx);
  };
}

function pickStatement(
  o: WorkloadOptions,
  rnd: Random,
  n: number,
  owned: (k: number) => number,
  uuids: string[],
): Body {
  const k = o.kinds;
  const hot = rnd.int(1, HOT_KEYS);
  const v = rnd.int(0, 1_000_000);
  const note = `${o.node}-${n}`;
  const choices: Body[] = [
    (tx) =>
      tx
        .write(
          't_int',
          'INSERT INTO t_int VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note, payload = EXCLUDED.payload',
          [hot, v, note, 'small'],
        )
        .then(() => undefined),
    (tx) =>
      tx
        .write('t_int', 'UPDATE t_int SET v = $2, note = $3 WHERE id = $1', [hot, v, note])
        .then(() => undefined),
    (tx) => tx.remove('t_int', 'DELETE FROM t_int WHERE id = $1', [hot]).then(() => undefined),
    (tx) =>
      tx
        .write(
          't_uuid',
          'INSERT INTO t_uuid VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note',
          [rnd.pick(uuids), v, note],
        )
        .then(() => undefined),
    (tx) => tx.remove('t_uuid', 'DELETE FROM t_uuid WHERE id = $1', [rnd.pick(uuids)]).then(() => undefined),
    (tx) =>
      tx
        .write(
          't_comp',
          'INSERT INTO t_comp VALUES ($1, $2, $3) ON CONFLICT (a, b) DO UPDATE SET v = EXCLUDED.v',
          [rnd.int(1, 40), rnd.pick(['x', 'y', 'z']), v],
        )
        .then(() => undefined),
    (tx) => tx.remove('t_comp', 'DELETE FROM t_comp WHERE a = $1', [rnd.int(1, 40)]).then(() => undefined),
    (tx) =>
      tx
        .write(
          't_text',
          'INSERT INTO t_text VALUES ($1, $2, $3) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, doc = EXCLUDED.doc',
          [`k${rnd.int(1, 80)}`, v, JSON.stringify({ by: o.node, n, tags: [v % 7, 'é'] })],
        )
        .then(() => undefined),
    (tx) =>
      tx.remove('t_text', 'DELETE FROM t_text WHERE k = $1', [`k${rnd.int(1, 80)}`]).then(() => undefined),
    (tx) =>
      tx
        .write('ledger', 'INSERT INTO ledger VALUES ($1, $2, $3, $4)', [rnd.uuid(), o.node, n, v])
        .then(() => undefined),
    family(rnd, owned, n),
  ];
  if (k.has('toast')) {
    choices.push(
      (tx) =>
        tx
          .write(
            't_int',
            `INSERT INTO t_int VALUES ($1, $2, $3, (SELECT string_agg(md5($4 || g), '') FROM generate_series(1, 300) g)) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note, payload = EXCLUDED.payload`,
            [hot, v, note, `${note}-${v}`],
          )
          .then(() => undefined),
      (tx) => tx.write('t_int', 'UPDATE t_int SET v = $2 WHERE id = $1', [hot, v]).then(() => undefined),
    );
  }
  if (k.has('keychange')) {
    choices.push(async (tx) => {
      const from = rnd.int(1, HOT_KEYS);
      const to = rnd.int(1, HOT_KEYS);
      const old = await tx.c.query<{ k: string }>(
        'SELECT jsonb_build_array(id)::text AS k FROM t_int WHERE id = $1 FOR UPDATE',
        [from],
      );
      if (old.rows.length === 0 || from === to) return;
      const moved = await tx.write('t_int', 'UPDATE t_int SET id = $2, note = $3 WHERE id = $1', [
        from,
        to,
        note,
      ]);
      if (moved > 0) tx.writes.push({ table: 't_int', key: old.rows[0]!.k, row: null });
    });
  }
  if (k.has('addtable')) {
    const late = rnd.int(1, 60);
    choices.push((tx) =>
      tx
        .write(
          't_late',
          'INSERT INTO t_late VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note',
          [late, v, note],
        )
        .then(() => undefined),
    );
    // A delete before the table is synced leaves no tombstone: the other node's row would come back
    // with the copy (documented), so the workload deletes only once it is synced.
    if (o.lateSynced())
      choices.push((tx) =>
        tx.remove('t_late', 'DELETE FROM t_late WHERE id = $1', [late]).then(() => undefined),
      );
  }
  if (k.has('trigger')) {
    choices.push(
      (tx) =>
        tx
          .write(
            'stamped',
            'INSERT INTO stamped (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v',
            [rnd.int(1, 50), v],
          )
          .then(() => undefined),
      (tx) =>
        tx
          .write('stamped', 'UPDATE stamped SET v = $2 WHERE id = $1', [rnd.int(1, 50), v])
          .then(() => undefined),
    );
  }
  return rnd.pick(choices);
}

/** Node-owned parents and children, written together in one transaction (foreign-key order matters). */
function family(rnd: Random, owned: (k: number) => number, n: number): Body {
  const parent = owned(rnd.int(1, 30));
  const op = rnd.float();
  return async (tx) => {
    if (op < 0.6) {
      await tx.write(
        'parent',
        'INSERT INTO parent VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name',
        [parent, `p${n}`],
      );
      const kids = rnd.int(1, 3);
      for (let i = 0; i < kids; i++)
        await tx.write(
          'child',
          'INSERT INTO child VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v',
          [parent * 10 + i, parent, n],
        );
    } else if (op < 0.8) {
      await tx.write('child', 'UPDATE child SET v = $2 WHERE parent_id = $1', [parent, n]);
    } else {
      await tx.remove('child', 'DELETE FROM child WHERE parent_id = $1', [parent]);
      await tx.remove('parent', 'DELETE FROM parent WHERE id = $1', [parent]);
    }
  };
}

/** A transaction that stays open for seconds while others commit around it. */
function long(rnd: Random): Body {
  const seconds = rnd.int(2, 6);
  const key = rnd.int(1, HOT_KEYS);
  return async (tx) => {
    await tx.write(
      't_comp',
      'INSERT INTO t_comp VALUES ($1, $2, $3) ON CONFLICT (a, b) DO UPDATE SET v = EXCLUDED.v',
      [key % 40, 'long', seconds],
    );
    await tx.c.query('SELECT pg_sleep($1)', [seconds]);
    await tx.write('ledger', 'INSERT INTO ledger VALUES ($1, $2, $3, $4)', [
      rnd.uuid(),
      'long',
      key,
      seconds,
    ]);
  };
}

/** The one very large transaction of a node: `rows` node-owned rows inserted, then half of them updated. */
function big(tx: Tx, rnd: Random, owned: (k: number) => number, rows: number): Promise<void> {
  const base = owned(50_000_000);
  const tag = `big-${rnd.int(0, 1e9)}`;
  return (async () => {
    await tx.write(
      't_int',
      'INSERT INTO t_int SELECT $1::bigint + g, g, $3, NULL FROM generate_series(1, $2::int) g',
      [base, rows, tag],
    );
    await tx.write('t_int', 'UPDATE t_int SET v = -v WHERE id > $1 AND id <= $1::bigint + $2::int / 2', [
      base,
      rows,
    ]);
  })();
}
