/**
 * The automatic repair of rows that an update lacking unchanged TOAST values could not write whole
 * (docs/correctness.md, "Situations": unchanged TOAST values). Under REPLICA IDENTITY DEFAULT such an
 * update carries only the changed columns. The writer applies it as a partial update and records in
 * pgbisync.conflicts, with resolution `needs_repair`, each key where that is not enough: the target
 * lacks the row (`update_missing`), or the update won over a version another node wrote, whose own
 * TOASTed values stay (`update_origin_differs`). The conflicts table is the durable list of keys to
 * repair: a crash between the commit and the repair loses nothing, the next start repairs them.
 *
 * For each such key this reads the source's current row with its version (pgbisync.version_time and
 * version_node there). A row the source itself wrote, at the event's version or at a later one this
 * direction already applied (apply_progress.commit_time at or past it), is applied whole by the guarded
 * upsert under that version (the source's origin and its commit time), as its own event would have been
 * with every column: the record becomes `repaired`. Taking the later version matters: an update lacking
 * the values that follows one recorded here finds a row dated by its own source and records nothing, so
 * the first record is the only one left for the key. A later version not applied here yet waits (the
 * record stays, the round is repeated soon): copied early, the source's older events would replay over
 * it, and a value the source's row took from another node's write (not sent this way) would be lost.
 * No row, or one another node wrote (a delete or another node's write came later on the source): that
 * later change reaches this node on its own (the delete's event from this source, or the other node's
 * write from that node, repaired there in its turn when it lacks values): the record becomes
 * `superseded`, once that change arrived. Until then, while the target still holds the key at a version
 * of the source, the record is held: a key change of the source would move the target's values to a new
 * key, and finds the record pending to record that key in turn. A held record whose change never comes
 * (lost, or not applied by policy) is superseded once this direction applied a source transaction
 * committed after the record was first found held. Rounds page through the records by id, so held ones
 * do not keep later ones from their repair.
 */
import type pg from 'pg';
import { newPgClient } from '../pg/client.ts';
import { qualifiedName, quoteIdent, quoteLiteral, splitTableName } from '../pg/sql-names.ts';
import { type CatalogTable, type Queryable, readTable } from '../pg/table-catalog.ts';
import { isoFromMicros } from './apply-plan.ts';
import type { TargetCatalog } from './target-catalog.ts';

export interface RepairCounts {
  /** Rows written whole from the source. */
  readonly repaired: number;
  /** Records whose key the source changed again since (its later event settles it). */
  readonly superseded: number;
  /**
   * Records left for a later round: the source's row is at a version this direction has not applied yet,
   * or (`held`) the source's later change of the key has not reached the target.
   */
  readonly waiting: number;
  /** Of `waiting`: records whose key the target holds at the source's version while the source has moved on. */
  readonly held: number;
}

/** The keys left to repair from one source, oldest first (a partial index covers them: ../pg/pgbisync-schema.ts). */
const PENDING_SQL = `SELECT id::text AS id, table_name, key,
    (extract(epoch FROM remote_commit_time) * 1000000)::bigint::text AS us
  FROM pgbisync.conflicts c WHERE resolution = 'needs_repair' AND remote_node = $1::text AND c.id > $3::bigint
  ORDER BY c.id LIMIT $2::int`;

const RESOLVE_SQL = 'UPDATE pgbisync.conflicts SET resolution = $2::text WHERE id = $1::bigint';

/** How long the source may take to connect or answer one query of a round (then the round fails). */
const SOURCE_TIMEOUT_MS = 10_000;

/** Records taken per round (a round repeats while it finds a full page). */
const PAGE = 100;

interface Pending {
  readonly id: string;
  readonly table_name: string;
  readonly key: Record<string, unknown>;
  readonly us: string;
}

/**
 * Runs repair rounds one at a time, each when requested (a commit that recorded a conflict, the start).
 * A round that did not run or failed (`round` resolves false; it never rejects) runs again after
 * `retryMs` (default 5 s), doubling up to twelve times that, until one runs; one that left records
 * waiting ('soon') runs again after a fifth of `retryMs`. Stopped: no more rounds.
 */
export class RepairRounds {
  readonly #round: () => Promise<boolean | 'soon'>;
  readonly #firstRetryMs: number;
  #running: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #retryMs: number;
  #stopped = false;

  constructor(round: () => Promise<boolean | 'soon'>, retryMs = 5_000) {
    this.#round = round;
    this.#firstRetryMs = retryMs;
    this.#retryMs = retryMs;
  }

  request(): void {
    clearTimeout(this.#timer);
    this.#running = this.#running.then(async () => {
      if (this.#stopped) return;
      const ran = await this.#round();
      if (ran === true) {
        this.#retryMs = this.#firstRetryMs;
      } else if (ran === 'soon' && !this.#stopped) {
        this.#timer = setTimeout(() => this.request(), this.#firstRetryMs / 5);
      } else if (!this.#stopped) {
        this.#timer = setTimeout(() => this.request(), this.#retryMs);
        this.#retryMs = Math.min(2 * this.#retryMs, 12 * this.#firstRetryMs);
      }
    });
  }

  /** Resolves once the round under way (if any) ended; none starts after. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}

/**
 * What a round's counts ask of the next round (RepairRounds): records waiting for a version this
 * direction is about to apply, soon; records only held (the source's later change not arrived), as a
 * failed round, backing off to a minute (a commit that records a conflict, such as the key change that
 * meets them, asks for a round anyway); else none until asked.
 */
export function nextRound(counts: RepairCounts): boolean | 'soon' {
  if (counts.waiting > counts.held) return 'soon';
  return counts.held === 0;
}

export interface RepairOptions {
  readonly sourceNode: string;
  readonly targetNode: string;
  readonly sourceUrl: string;
  /**
   * Records found held (see RepairCounts.held), by id, with the source's clock (µs) when first found so;
   * kept by the caller across rounds. Once this direction applied a source transaction committed after
   * that, every earlier one was applied: the change that would have settled the key will not come (lost,
   * or not applied by policy), and the record is superseded.
   */
  readonly held?: Map<string, string>;
}

/**
 * Repairs every `needs_repair` record of `o.sourceNode` on the target. `target` is the applier's own
 * session (bound to the source's replication origin, triggers off), used between its transactions.
 */
export async function repairFromSource(
  target: Queryable,
  catalog: TargetCatalog,
  o: RepairOptions,
): Promise<RepairCounts> {
  let repaired = 0;
  let superseded = 0;
  let waiting = 0;
  let held = 0;
  let after = '0';
  let source: pg.Client | undefined;
  const sourceTables = new Map<string, CatalogTable>();
  try {
    for (;;) {
      const pending = (await target.query<Pending>(PENDING_SQL, [o.sourceNode, PAGE, after])).rows;
      for (const p of pending) {
        after = p.id;
        if (source === undefined) {
          // Bounded: the round holds the applier's session, so a stalled source must not hold it long.
          source = newPgClient({
            connectionString: o.sourceUrl,
            application_name: 'pgbisync-repair',
            connectionTimeoutMillis: SOURCE_TIMEOUT_MS,
            query_timeout: SOURCE_TIMEOUT_MS,
          });
          await source.connect();
        }
        const table = await sourceTable(source, sourceTables, p.table_name, o.sourceNode);
        const statements = await catalog.statements(p.table_name);
        const columns = statements.table.columns
          .map((c) => c.name)
          .filter((c) => table.columns.some((s) => s.name === c));
        const row = await readSourceRow(source, table, columns, p.key, o.sourceNode);
        // No row of the source's own there now: the later change that settles the key (a delete or a key
        // change of the source, another node's write) has not arrived while the target's row is still a
        // version of the source, the one the partial update dated or a later one. Superseded then, a key
        // change would move that row's values (another version's TOASTed ones) to the new key unrepaired:
        // the pending record tells the key change to record the new key (./statement-builder.ts rekey).
        // Torture seed 3 (2026-12-06): superseded before the source's key change arrived.
        if (row === undefined || row['~node'] !== o.sourceNode) {
          if (await heldAtSourceVersion(target, statements.table, p, o)) {
            const since = o.held?.get(p.id) ?? (await sourceClockUs(source));
            if (!(await appliedPast(target, o.sourceNode, since))) {
              o.held?.set(p.id, since);
              waiting++;
              held++;
              continue;
            }
          }
          o.held?.delete(p.id);
          await target.query(RESOLVE_SQL, [p.id, 'superseded']);
          superseded++;
          continue;
        }
        // The source's own version, the event's or a later one (never older: the event committed there).
        if (BigInt(row['~us']!) < BigInt(p.us)) {
          await target.query(RESOLVE_SQL, [p.id, 'superseded']);
          superseded++;
          continue;
        }
        // A later version only once this direction applied the source up to it: the source's older events
        // still to come would otherwise be replayed over it, and the value it took from another node's
        // write there (whose event does not travel this way) would be lost. Tried again later.
        if (row['~us'] !== p.us && !(await appliedUpTo(target, o.sourceNode, row['~us']!))) {
          waiting++;
          continue;
        }
        const tsIso = isoFromMicros(BigInt(row['~us']!));
        const values = columns.map((c) => row[c] ?? null);
        await target.query('BEGIN');
        try {
          // Marked as the source's, at that version's commit time, as its own event would be.
          await target.query("SELECT pg_replication_origin_xact_setup('0/0'::pg_lsn, $1::timestamptz)", [
            tsIso,
          ]);
          await target.query(statements.upsert('u', columns, true), [
            tsIso,
            o.sourceNode,
            o.targetNode,
            p.table_name,
            ...values,
          ]);
          // Guarded: a version on the target newer than the event's stays (the upsert records it).
          const written = await target.query<{ written: boolean }>(
            `SELECT EXISTS (SELECT 1 FROM ${qualifiedName(statements.table.schema, statements.table.table)} t
               WHERE ${keyMatch(statements.table, '$1')} AND t.xmin = xid(pg_current_xact_id_if_assigned())) AS written`,
            [JSON.stringify(p.key)],
          );
          const done = written.rows[0]?.written === true;
          await target.query(RESOLVE_SQL, [p.id, done ? 'repaired' : 'superseded']);
          await target.query('COMMIT');
          if (!done) {
            superseded++;
            continue;
          }
        } catch (error) {
          await target.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
        repaired++;
      }
      if (pending.length < PAGE) return { repaired, superseded, waiting, held };
    }
  } finally {
    await source?.end().catch(() => undefined);
  }
}

async function sourceTable(
  source: Queryable,
  cache: Map<string, CatalogTable>,
  name: string,
  sourceNode: string,
): Promise<CatalogTable> {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const { schema, table } = splitTableName(name);
  const read = await readTable(source, schema, table);
  if (read === undefined) throw new Error(`table ${name} does not exist on source node ${sourceNode}`);
  cache.set(name, read);
  return read;
}

/**
 * The source's row at `key` as text values of `columns`, with its version: `~us` the commit time in
 * microseconds, `~node` the node that wrote it (the source itself for a local write).
 */
async function readSourceRow(
  source: Queryable,
  table: CatalogTable,
  columns: readonly string[],
  key: Record<string, unknown>,
  sourceNode: string,
): Promise<Record<string, string | null> | undefined> {
  const select = columns.map((c) => `t.${quoteIdent(c)}::text AS ${quoteIdent(c)}`);
  const r = await source.query<Record<string, string | null>>(
    `SELECT ${select.join(', ')},
       (extract(epoch FROM pgbisync.version_time(t.xmin)) * 1000000)::bigint::text AS "~us",
       pgbisync.version_node(t.xmin, $2::text) AS "~node"
     FROM ${qualifiedName(table.schema, table.table)} t WHERE ${keyMatch(table, '$1')}`,
    [JSON.stringify(key), sourceNode],
  );
  return r.rows[0];
}

/** `t`'s primary key equals the one in the JSON object `param` (as pgbisync.conflicts.key has it). */
function keyMatch(table: CatalogTable, param: string): string {
  const types = new Map(table.columns.map((c) => [c.name, c.castType]));
  return table.primaryKey
    .map((k) => `t.${quoteIdent(k)} = (${param}::jsonb ->> ${quoteLiteral(k)})::${types.get(k)}`)
    .join(' AND ');
}

/** Whether the target holds a row at the record's key at a version of the source, the record's or later. */
async function heldAtSourceVersion(
  target: Queryable,
  table: CatalogTable,
  p: Pending,
  o: RepairOptions,
): Promise<boolean> {
  const r = await target.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${qualifiedName(table.schema, table.table)} t WHERE ${keyMatch(table, '$1')}
       AND pgbisync.version_node(t.xmin, $4::text) = $3::text
       AND (extract(epoch FROM pgbisync.version_time(t.xmin)) * 1000000)::bigint >= $2::bigint) AS held`,
    [JSON.stringify(p.key), p.us, o.sourceNode, o.targetNode],
  );
  return r.rows[0]?.held === true;
}

/** The source server's clock in microseconds since the Unix epoch. */
async function sourceClockUs(source: Queryable): Promise<string> {
  const r = await source.query<{ us: string }>(
    'SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS us',
  );
  return r.rows[0]!.us;
}

/** Whether this direction applied a source transaction committed after `us` (microseconds). */
async function appliedPast(target: Queryable, sourceNode: string, us: string): Promise<boolean> {
  const r = await target.query<{ ok: boolean }>(
    `SELECT (extract(epoch FROM commit_time) * 1000000)::bigint > $2::bigint AS ok
       FROM pgbisync.apply_progress WHERE source_node = $1::text`,
    [sourceNode, us],
  );
  return r.rows[0]?.ok === true;
}

/** Whether this direction's stored progress is at or past the source commit time `us` (microseconds). */
async function appliedUpTo(target: Queryable, sourceNode: string, us: string): Promise<boolean> {
  const r = await target.query<{ ok: boolean }>(
    `SELECT (extract(epoch FROM commit_time) * 1000000)::bigint >= $2::bigint AS ok
       FROM pgbisync.apply_progress WHERE source_node = $1::text`,
    [sourceNode, us],
  );
  return r.rows[0]?.ok === true;
}
