/**
 * Where a copy resumes, and copies the operator paused (pgbisync.copy_progress, one row per capturing
 * node and table).
 *
 * A copy reads a table in ranges of heap pages (./snapshot-batches.ts), whether it sends row batches or
 * events (`capture.snapshotRecords`). Once Kafka has
 * acknowledged every record of the ranges up to page P, P is recorded (at most once a second per
 * table, and when the table is done). An interrupted copy (a crash, a restart of `run`, a pause) that
 * is made again starts each table at its recorded page, in a new snapshot: the rows of the pages before
 * it were sent by the earlier copy, and what changed in them since is streamed, because every copy is
 * made before the capture streams on from its slot's position, which lies before the earlier copy's
 * snapshot. A row moved since from a later page to an earlier one is streamed too (an update carries
 * the new row). A copy requested anew (`pgbisync resync`, a new slot) starts from page 0.
 *
 * Paused (`pgbisync resync <table> --pause`): the capture stops copying the table within a second,
 * records where, and streams on without it; `pgbisync resync <table>` resumes it from there.
 */
import { newPgClient } from '../pg/client.ts';
import type { Queryable } from '../pg/table-catalog.ts';

export interface CopyPosition {
  /** The first heap page whose rows are not all acknowledged. */
  readonly nextPage: number;
  readonly paused: boolean;
}

/** What a copy reads and reports of its positions (CopyProgress). */
export interface CopyResume {
  /** The page the copy of `table` starts at. */
  from(table: string): number;
  /** Kafka acknowledged every row of `table` before `nextPage`. */
  acked(table: string, nextPage: number): void;
  /** Whether the copy of `table` is to stop where it is. */
  paused(table: string): Promise<boolean>;
  /** Tables whose copy stopped so. */
  readonly pausedTables: readonly string[];
}

/** How often a running copy records its position and asks whether it is paused. */
const RECORD_EVERY_MS = 1_000;

async function hasTable(db: Queryable): Promise<boolean> {
  const r = await db.query<{ e: boolean }>("SELECT to_regclass('pgbisync.copy_progress') IS NOT NULL AS e");
  return r.rows[0]?.e === true;
}

/** The node's recorded positions (none while `pgbisync setup` has not made the table). */
export async function readCopyPositions(db: Queryable, node: string): Promise<Map<string, CopyPosition>> {
  if (!(await hasTable(db))) return new Map();
  const r = await db.query<{ table_name: string; next_page: string; paused: boolean }>(
    'SELECT table_name, next_page::text, paused FROM pgbisync.copy_progress WHERE node = $1',
    [node],
  );
  return new Map(
    r.rows.map((row) => [row.table_name, { nextPage: Number(row.next_page), paused: row.paused }]),
  );
}

/** Forgets the positions of `tables` (all of the node's when undefined): their next copy is whole. */
export async function clearCopyPositions(
  db: Queryable,
  node: string,
  tables?: readonly string[],
): Promise<void> {
  if (!(await hasTable(db))) return;
  await db.query(
    'DELETE FROM pgbisync.copy_progress WHERE node = $1 AND ($2::text[] IS NULL OR table_name = ANY($2))',
    [node, tables === undefined ? null : [...tables]],
  );
}

/** The tables whose copy from `node` the operator paused. */
export async function pausedCopies(db: Queryable, node: string): Promise<Set<string>> {
  const positions = await readCopyPositions(db, node);
  return new Set([...positions].filter(([, p]) => p.paused).map(([table]) => table));
}

/** Forgets the positions of every table not in `synced` (partitions included). */
export async function forgetUnsyncedCopies(db: Queryable, synced: readonly string[]): Promise<void> {
  await db.query('DELETE FROM pgbisync.copy_progress WHERE NOT (table_name = ANY($1::text[]))', [
    [...synced],
  ]);
}

/** Pauses or resumes the copy of `table` from `node`; returns its position. */
export async function setCopyPaused(
  db: Queryable,
  node: string,
  table: string,
  paused: boolean,
): Promise<CopyPosition> {
  const r = await db.query<{ next_page: string }>(
    `INSERT INTO pgbisync.copy_progress AS p (node, table_name, paused) VALUES ($1, $2, $3)
     ON CONFLICT (node, table_name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = clock_timestamp()
     RETURNING next_page::text`,
    [node, table, paused],
  );
  return { nextPage: Number(r.rows[0]?.next_page ?? 0), paused };
}

/**
 * The positions of one running copy: acknowledged pages are noted as they come and written on a
 * connection of its own (the copy's reads a snapshot), at most once a second per table; `paused` asks
 * the table's flag at most once a second. A table found paused stays paused for this copy.
 */
export class CopyProgress implements CopyResume {
  readonly #node: string;
  readonly #positions: Map<string, CopyPosition>;
  readonly #noted = new Map<string, number>();
  /** When each table's position was last written, and which page. */
  readonly #writtenAt = new Map<string, number>();
  readonly #writtenPage = new Map<string, number>();
  readonly #asked = new Map<string, number>();
  readonly #paused = new Set<string>();
  readonly #allowPause: boolean;
  #client: ReturnType<typeof newPgClient> | undefined;
  #writing: Promise<unknown> = Promise.resolve();
  #failure: unknown;

  private constructor(node: string, positions: Map<string, CopyPosition>, allowPause: boolean) {
    this.#node = node;
    this.#positions = positions;
    this.#allowPause = allowPause;
  }

  /**
   * Opens the record of `node`'s copies on `url`. `allowPause`: a copy the operator may pause (a table
   * added or re-copied while the node streams); a node's whole copy is made whole.
   */
  static async open(url: string, node: string, allowPause: boolean): Promise<CopyProgress> {
    const client = newPgClient({ connectionString: url, application_name: `pgbisync-capture-${node}` });
    await client.connect();
    try {
      const tracked = await hasTable(client);
      const progress = new CopyProgress(
        node,
        tracked ? await readCopyPositions(client, node) : new Map(),
        allowPause,
      );
      if (tracked) {
        progress.#client = client;
        client.on('error', (error) => {
          progress.#failure ??= error;
        });
      } else {
        await client.end();
      }
      return progress;
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  }

  /** The page the copy of `table` starts at. */
  from(table: string): number {
    return this.#positions.get(table)?.nextPage ?? 0;
  }

  /** Kafka acknowledged every row of `table` before `nextPage`. */
  acked(table: string, nextPage: number): void {
    if (nextPage <= (this.#noted.get(table) ?? -1)) return;
    this.#noted.set(table, nextPage);
    if (Date.now() - (this.#writtenAt.get(table) ?? 0) >= RECORD_EVERY_MS) this.#write(table);
  }

  /** Whether the operator paused the copy of `table` (asked at most once a second). */
  async paused(table: string): Promise<boolean> {
    if (this.#paused.has(table)) return true;
    const client = this.#client;
    if (!this.#allowPause || client === undefined) return false;
    if (Date.now() - (this.#asked.get(table) ?? 0) < RECORD_EVERY_MS) return false;
    this.#asked.set(table, Date.now());
    const r = await client.query<{ paused: boolean }>(
      'SELECT paused FROM pgbisync.copy_progress WHERE node = $1 AND table_name = $2',
      [this.#node, table],
    );
    if (r.rows[0]?.paused !== true) return false;
    this.#paused.add(table);
    return true;
  }

  /** Tables this copy found paused (not copied whole). */
  get pausedTables(): readonly string[] {
    return [...this.#paused];
  }

  /** Writes every noted position; throws what a write met. */
  async flush(): Promise<void> {
    for (const table of this.#noted.keys()) this.#write(table);
    await this.#writing;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * The copy ended: positions are forgotten (the next copy of a table starts from page 0), except
   * those of tables it left paused, and, where pausing was allowed, of tables paused before it.
   */
  async done(): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    await this.#writing;
    await client.query(
      'DELETE FROM pgbisync.copy_progress WHERE node = $1 AND NOT (table_name = ANY($2::text[])) AND NOT (paused AND $3)',
      [this.#node, [...this.#paused], this.#allowPause],
    );
  }

  async close(): Promise<void> {
    await this.#writing.catch(() => undefined);
    await this.#client?.end().catch(() => undefined);
    this.#client = undefined;
  }

  #write(table: string): void {
    const client = this.#client;
    const page = this.#noted.get(table);
    if (client === undefined || page === undefined || page === this.#writtenPage.get(table)) return;
    this.#writtenAt.set(table, Date.now());
    this.#writtenPage.set(table, page);
    this.#writing = this.#writing
      .then(() =>
        client.query(
          `INSERT INTO pgbisync.copy_progress AS p (node, table_name, next_page) VALUES ($1, $2, $3)
           ON CONFLICT (node, table_name) DO UPDATE SET next_page = EXCLUDED.next_page, updated_at = clock_timestamp()`,
          [this.#node, table, page],
        ),
      )
      .catch((error: unknown) => {
        this.#failure ??= error;
      });
  }
}
