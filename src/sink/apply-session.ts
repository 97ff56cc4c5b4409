/**
 * The applier's session on the target node: the checks that the node can take the writer's statements,
 * the settings those statements rely on, and the binding to the source's replication origin (every
 * transaction of the session is then marked with it, so the target's capture drops it: no loops).
 *
 * The session writes with `session_replication_role = replica`, as PostgreSQL's own apply worker does
 * (https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE):
 * ordinary triggers and rules, foreign-key checks and actions included, fire where the application wrote
 * and not again on the rows applied here. A trigger that stamps `updated_at` with the local clock would
 * otherwise stamp the applied row anew and the nodes would differ; one that the user set to
 * `ENABLE ALWAYS` or `ENABLE REPLICA TRIGGER` still fires. pgbisync's own tombstone trigger stays
 * ordinary: the applier records an applied delete's tombstone itself, guarded (./statement-builder.ts).
 * Foreign keys hold without their checks because the source checked them and transactional mode
 * applies whole source transactions in commit order. (Per-table topics apply each table in its own
 * order: there the setting is also what lets a child row arrive before its parent.)
 */
import { objectNames, quoteIdent } from '../pg/sql-names.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';

export interface ApplySessionOptions {
  readonly sourceNode: string;
  readonly targetNode: string;
}

/** Functions of the pgbisync schema the statements call (see ../pg/pgbisync-schema.ts). */
const SCHEMA_FUNCTIONS = [
  'pgbisync.version_time',
  'pgbisync.version_node',
  'pgbisync.origin_node',
  'pgbisync.deleted_meanwhile',
  'pgbisync.record_conflict',
  'pgbisync.take_conflicts',
  'pgbisync.incoming_wins',
  'pgbisync.upsert_conflict',
  'pgbisync.insert_blocked',
];
/** Tables of the pgbisync schema the statements read that older versions lack. */
const SCHEMA_TABLES = ['pgbisync.tombstone_horizon'];
/** Columns (`schema.table.column`) the statements write that older versions lack. */
const SCHEMA_COLUMNS = [
  'pgbisync.apply_progress.source_system_id',
  'pgbisync.apply_progress.source_timeline',
  'pgbisync.apply_progress.source_timeline_history',
  'pgbisync.apply_progress.capture_run',
  'pgbisync.apply_progress.watermark_us',
];

/**
 * Prepares a connected session for applying `o.sourceNode`'s transactions. Throws a BlockedError, with
 * the fix, when the target lacks what the statements need.
 */
export async function setUpApplySession(db: Queryable, o: ApplySessionOptions): Promise<void> {
  const origin = objectNames.origin(o.sourceNode, o.targetNode);
  await db.query('SET synchronous_commit = off');
  await requireSchemaFunctions(db, o);
  await setReplicaRole(db, `applying ${o.sourceNode} -> ${o.targetNode}`, o.targetNode);
  // Every statement is prepared once per connection and then executed with a generic plan: the
  // guarded upserts are CTEs whose planning costs several times their execution (measured: 0.65 ms
  // of backend CPU per single-row upsert re-planned each time, 0.11 ms with a cached generic plan).
  // Their shape (index lookups by key over the unnest of the parameter arrays) does not depend on the
  // parameter values, so a custom plan per execution would buy nothing.
  // enable_seqscan off: every statement finds rows by key, and a generic plan made while a table was
  // tiny must not scan it whole once it is large (the statements are also written to prefer lookups).
  await db.query('SET plan_cache_mode = force_generic_plan');
  await db.query('SET enable_seqscan = off');
  // setup creates the origin; created here only when missing, so that the run role (docs/security.md)
  // needs no EXECUTE on pg_replication_origin_create (checked when a statement is planned, even when
  // a WHERE would skip the call).
  const known = await db.query('SELECT 1 FROM pg_replication_origin WHERE roname = $1', [origin]);
  if (known.rowCount === 0) await db.query('SELECT pg_replication_origin_create($1)', [origin]);
  await db.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
}

/**
 * Puts the session in session_replication_role = replica, for writes that copy rows from another node
 * (the applier's, and `verify --repair`'s). That needs a superuser or, on PostgreSQL 15+,
 * `GRANT SET ON PARAMETER`: without it this throws a BlockedError with that grant for the session's own
 * user (`doing` names the work, e.g. `applying a -> b`).
 */
export async function setReplicaRole(db: Queryable, doing: string, node: string): Promise<void> {
  try {
    await db.query('SET session_replication_role = replica');
  } catch (error) {
    const user = (await db.query<{ usr: string }>('SELECT current_user AS usr')).rows[0]?.usr ?? '<user>';
    throw new BlockedError(`${doing}: cannot SET session_replication_role = replica`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: `pgbisync writes rows from other nodes with the target's triggers and rules off (as PostgreSQL's own apply worker does): on ${node} run ${replicaRoleGrant(user)}  (PostgreSQL 15+), or connect as a superuser`,
      cause: error,
    });
  }
}

/** The statement that lets `user` set session_replication_role (doctor gives the same). */
export function replicaRoleGrant(user: string): string {
  return `GRANT SET ON PARAMETER session_replication_role TO ${quoteIdent(user)};`;
}

/** The statements use functions, tables and columns of the pgbisync schema that `pgbisync setup` of an older version lacks. */
async function requireSchemaFunctions(db: Queryable, o: ApplySessionOptions): Promise<void> {
  const r = await db.query<{ missing: string | null }>(
    `SELECT string_agg(f, ', ') AS missing FROM (
       SELECT f FROM unnest($1::text[]) AS f WHERE to_regproc(f) IS NULL
       UNION ALL SELECT t FROM unnest($2::text[]) AS t WHERE to_regclass(t) IS NULL
       UNION ALL SELECT c FROM unnest($3::text[]) AS c WHERE NOT EXISTS (
         SELECT 1 FROM pg_attribute a
          WHERE a.attrelid = to_regclass(regexp_replace(c, '\\.[^.]*$', ''))
            AND a.attname = regexp_replace(c, '^.*\\.', '') AND NOT a.attisdropped)) m`,
    [SCHEMA_FUNCTIONS, SCHEMA_TABLES, SCHEMA_COLUMNS],
  );
  const missing = r.rows[0]?.missing ?? null;
  if (missing !== null) {
    throw new BlockedError(
      `applying ${o.sourceNode} -> ${o.targetNode}: ${o.targetNode} lacks ${missing}: its pgbisync schema is missing or was set up by an older pgbisync`,
      {
        code: ErrorCode.PG_PREREQUISITE,
        hint: 'run `pgbisync setup` with the same config: it brings the pgbisync schema of every node up to date and changes nothing else; the applier then resumes where it stopped',
      },
    );
  }
}
