/**
 * `pgbisync ddl -c file "<statement>"`: one schema change on every node, so that no direction stays
 * blocked on it (pgbisync does not replicate DDL, and an event naming a column its target lacks blocks
 * that direction until the column exists there).
 *
 * Order: the statement runs inside an open transaction on every node first (each takes its locks and
 * fails there if it would fail: nothing is committed anywhere then), and only once it succeeded on all
 * of them is it committed on each, one right after the other. A direction that meets a new column in the
 * moment between two commits is blocked and resumes from the same event within seconds (its retry).
 * Every node records the statement in pgbisync.ddl_log in the same transaction.
 *
 * Refused, with the reason (they cannot be applied this way without losing or blocking changes):
 * several statements at once; TRUNCATE and DML (they are data: write them on one node, they sync);
 * DROP TABLE and RENAME of a synced table (remove it from `tables` and run setup first); dropping a
 * column or changing its type or the primary key of a synced table (events in flight still carry the
 * old shape: stop writes to the table, wait until `pgbisync status` shows no lag, then pass --force).
 */
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { connectNode, resolveTables } from './sync-plan.ts';

export interface DdlOptions {
  /** Apply a statement refused for the shape of events in flight (see the module comment). */
  readonly force: boolean;
  readonly onProgress: (line: string) => void;
}

export interface DdlResult {
  readonly statement: string;
  /** Synced tables the statement names. */
  readonly tables: readonly string[];
  readonly nodes: readonly string[];
}

const DDL_LOG_SQL = `CREATE TABLE IF NOT EXISTS pgbisync.ddl_log (
  id bigserial PRIMARY KEY,
  statement text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  applied_by text NOT NULL DEFAULT current_user
)`;

export async function applyDdl(config: Config, statement: string, o: DdlOptions): Promise<DdlResult> {
  const text = statement.trim().replace(/;\s*$/, '');
  const tables = await resolveTables(config);
  const named = refuseUnsafe(text, tables, o.force);
  const clients: { node: string; db: pg.Client }[] = [];
  try {
    for (const node of config.nodes) clients.push({ node: node.name, db: await connectNode(node, 'ddl') });
    for (const { node, db } of clients) {
      await db.query('BEGIN');
      // Waiting for a lock held by a long transaction would hold every node's lock meanwhile.
      await db.query("SET LOCAL lock_timeout = '10s'");
      try {
        await db.query(text);
      } catch (error) {
        throw new FatalError(`ddl: the statement failed on ${node}; nothing was committed on any node`, {
          code: ErrorCode.SCHEMA_MISMATCH,
          hint: 'fix the statement or the node (a lock timeout: a long transaction holds the table; retry)',
          cause: error,
        });
      }
      await db.query(DDL_LOG_SQL);
      await db.query('INSERT INTO pgbisync.ddl_log (statement) VALUES ($1)', [text]);
      o.onProgress(`ddl: applied on ${node} (not committed yet)`);
    }
    const committed: string[] = [];
    for (const { node, db } of clients) {
      try {
        await db.query('COMMIT');
      } catch (error) {
        throw new FatalError(
          `ddl: the commit failed on ${node} after it succeeded on ${committed.join(', ') || 'no node'}`,
          {
            code: ErrorCode.PG_CONNECTION,
            hint: `run the statement by hand on ${node} and the nodes after it; directions into them are blocked until then`,
            cause: error,
          },
        );
      }
      committed.push(node);
    }
    o.onProgress(`ddl: committed on ${committed.join(', ')}`);
    return { statement: text, tables: named, nodes: committed };
  } finally {
    for (const { db } of clients) await db.end().catch(() => undefined);
  }
}

/** Throws for a statement pgbisync cannot apply safely; returns the synced tables it names. */
export function refuseUnsafe(text: string, tables: readonly string[], force: boolean): string[] {
  const refuse = (reason: string, hint: string) =>
    new FatalError(`ddl: refused: ${reason}`, { code: ErrorCode.CONFIG_INVALID, hint });
  if (/;\s*\S/.test(text)) {
    throw refuse('several statements', 'run one statement per `pgbisync ddl`');
  }
  const sql = text.replace(/\s+/g, ' ');
  if (/^(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY)\b/i.test(sql)) {
    throw refuse('data, not a schema change', 'write it on one node: pgbisync syncs it to the others');
  }
  const named = tables.filter((t) => mentions(sql, t));
  if (named.length === 0) return named;
  if (/^DROP TABLE\b/i.test(sql)) {
    throw refuse(
      `${named.join(', ')} ${named.length === 1 ? 'is' : 'are'} synced`,
      "remove it from 'tables' and run `pgbisync setup` first; then drop it with `pgbisync ddl`",
    );
  }
  if (/\bRENAME\b/i.test(sql)) {
    throw refuse(
      'renaming a synced table or column: events name them, and those in flight would match nothing',
      "stop `pgbisync run`, rename on every node by hand, update 'tables', run `pgbisync setup`, start `run`",
    );
  }
  const reshapes =
    /\bDROP (COLUMN\b|(?!CONSTRAINT|DEFAULT|NOT NULL|IDENTITY|EXPRESSION)\w)|\bALTER (COLUMN )?\S+ (SET DATA )?TYPE\b|\bPRIMARY KEY\b/i;
  if (reshapes.test(sql) && !force) {
    throw refuse(
      `it changes the shape of ${named.join(', ')} that events in flight still carry (a dropped column, a new type or key)`,
      'stop writes to the table, wait until `pgbisync status` shows no lag, then run it again with --force',
    );
  }
  return named;
}

/** Whether `sql` names `table` ('schema.table'), qualified or (public tables) not. */
function mentions(sql: string, table: string): boolean {
  const [schema, name] = table.split('.') as [string, string];
  const ident = (s: string) =>
    `(?:"${s.replace(/"/g, '""')}"|${/^[a-z_][a-z0-9_$]*$/.test(s) ? s : '\\b\\B'})`;
  const qualified = new RegExp(`(?:^|[\\s(,])${ident(schema)}\\s*\\.\\s*${ident(name)}(?=$|[\\s(;,])`, 'i');
  if (qualified.test(sql)) return true;
  if (schema !== 'public') return false;
  return new RegExp(
    `(?:TABLE|INDEX\\s+\\S+\\s+ON|ON)\\s+(?:ONLY\\s+)?(?:IF\\s+EXISTS\\s+)?${ident(name)}(?=$|[\\s(;,])`,
    'i',
  ).test(sql);
}
