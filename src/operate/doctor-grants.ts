/**
 * Doctor's privilege checks, for the two roles of docs/security.md:
 * - the setup role (`setup`, `teardown`): CREATE on the database (the publication, the pgbisync schema),
 *   ownership of the synced tables (CREATE PUBLICATION ... FOR TABLE, the delete triggers), EXECUTE on
 *   pg_replication_origin_create/drop;
 * - the run role (`run`, `status`): REPLICATION (./doctor.ts), SELECT/INSERT/UPDATE/DELETE on the synced
 *   tables, USAGE on the pgbisync schema and SELECT/INSERT/UPDATE/DELETE on its tables (and USAGE on its
 *   sequences), EXECUTE on the session's origin functions, SET on session_replication_role
 *   (./doctor-triggers.ts).
 * The node URL's user is checked for the run role's needs always, and for the setup role's as long as
 * setup has not been done on the node (no publication yet): once it has, `run` can use a role without
 * them. Each FAIL names the exact GRANT (or ALTER) for that user.
 */
import type pg from 'pg';
import { objectNames, qualifiedName, quoteIdent, splitTableName } from '../pg/sql-names.ts';
import type { Emit } from './doctor-report.ts';

/** Origin functions every applier session calls. */
const RUN_ORIGIN_FUNCTIONS = [
  'pg_replication_origin_session_setup',
  'pg_replication_origin_session_reset',
  'pg_replication_origin_xact_setup',
];
/** Origin functions of setup (create) and teardown (drop). */
const SETUP_ORIGIN_FUNCTIONS = ['pg_replication_origin_create', 'pg_replication_origin_drop'];

const TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;

export interface RoleFacts {
  readonly usr: string;
  readonly db: string;
  readonly superuser: boolean;
  readonly canCreate: boolean;
  /** This node's publication exists: setup ran here. */
  readonly setupDone: boolean;
}

export async function readRoleFacts(db: pg.Client, node: string): Promise<RoleFacts> {
  const r = await db.query<{
    usr: string;
    db: string;
    superuser: boolean;
    can_create: boolean;
    setup: boolean;
  }>(
    `SELECT current_user AS usr, current_database() AS db,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
            has_database_privilege(current_database(), 'CREATE') AS can_create,
            EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS setup`,
    [objectNames.publication(node)],
  );
  const row = r.rows[0]!;
  return {
    usr: row.usr,
    db: row.db,
    superuser: row.superuser,
    canCreate: row.can_create,
    setupDone: row.setup,
  };
}

/** EXECUTE on the origin functions the user's work needs (setup's too, until setup is done). */
export async function checkOriginFunctions(db: pg.Client, f: RoleFacts, emit: Emit): Promise<void> {
  if (f.superuser) return;
  const needed = f.setupDone ? RUN_ORIGIN_FUNCTIONS : [...SETUP_ORIGIN_FUNCTIONS, ...RUN_ORIGIN_FUNCTIONS];
  const denied = await db.query<{ sig: string }>(
    `SELECT p.oid::regprocedure::text AS sig FROM pg_proc p
      WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($1::text[])
        AND NOT has_function_privilege(p.oid, 'EXECUTE') ORDER BY 1`,
    [needed],
  );
  if (denied.rowCount === 0) emit('origin_functions', 'ok', `${f.usr} may use replication origins`);
  else {
    const list = denied.rows.map((r) => r.sig).join(', ');
    emit(
      'origin_functions',
      'FAIL',
      `${f.usr} may not execute ${list}`,
      `GRANT EXECUTE ON FUNCTION ${list} TO ${quoteIdent(f.usr)};`,
    );
  }
}

/** CREATE on the database: setup's (the publication and the pgbisync schema). */
export function checkCreate(f: RoleFacts, emit: Emit): void {
  if (f.superuser || f.canCreate)
    emit('create_publication', 'ok', `${f.usr} may create publications and the pgbisync schema`);
  else if (f.setupDone)
    emit(
      'create_publication',
      'ok',
      `setup done (publication exists); CREATE is needed by the setup role only`,
    );
  else
    emit(
      'create_publication',
      'FAIL',
      `${f.usr} lacks CREATE on database ${f.db} (publication, pgbisync schema; or run setup as a role that has it)`,
      `GRANT CREATE ON DATABASE ${quoteIdent(f.db)} TO ${quoteIdent(f.usr)};`,
    );
}

/** SELECT/INSERT/UPDATE/DELETE on every synced table that exists (missing ones FAIL elsewhere). */
export async function checkTablePrivileges(
  db: pg.Client,
  f: RoleFacts,
  tables: readonly string[],
  emit: Emit,
): Promise<void> {
  const missing: { table: string; privileges: string[] }[] = [];
  for (const name of tables) {
    const { schema, table } = splitTableName(name);
    const qualified = qualifiedName(schema, table);
    const r = await db.query<{ exists: boolean; privileges: string[] | null }>(
      `SELECT to_regclass($1) IS NOT NULL AS exists,
              CASE WHEN to_regclass($1) IS NOT NULL THEN
                ARRAY(SELECT p FROM unnest($2::text[]) p WHERE NOT has_table_privilege(to_regclass($1), p)) END AS privileges`,
      [qualified, TABLE_PRIVILEGES],
    );
    const row = r.rows[0]!;
    if (row.exists && row.privileges !== null && row.privileges.length > 0)
      missing.push({ table: qualified, privileges: row.privileges });
  }
  if (missing.length === 0) {
    emit('table_privileges', 'ok', `${f.usr} may read and write the synced tables`);
    return;
  }
  emit(
    'table_privileges',
    'FAIL',
    `${f.usr} lacks ${missing.map((m) => `${m.privileges.join('/')} on ${m.table}`).join(', ')} (capture reads, appliers write)`,
    `GRANT ${TABLE_PRIVILEGES.join(', ')} ON ${missing.map((m) => m.table).join(', ')} TO ${quoteIdent(f.usr)};`,
  );
}

/** USAGE on the pgbisync schema, SELECT/INSERT/UPDATE/DELETE on its tables, USAGE on its sequences. */
export async function checkOwnSchema(db: pg.Client, f: RoleFacts, emit: Emit): Promise<void> {
  const r = await db.query<{ exists: boolean; usage: boolean; tables: string[]; sequences: string[] }>(
    `SELECT n.oid IS NOT NULL AS exists,
            coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
            ARRAY(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r'
                    AND NOT (has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
                         AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))
                  ORDER BY 1) AS tables,
            ARRAY(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = n.oid
                    -- CASE: the planner may test the privilege before the kind, on rows that are no sequence
                    AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'USAGE') ELSE false END
                  ORDER BY 1) AS sequences
       FROM (SELECT 'pgbisync'::text AS name) s LEFT JOIN pg_namespace n ON n.nspname = s.name`,
  );
  const row = r.rows[0]!;
  if (!row.exists) {
    emit('pgbisync_schema', 'ok', 'not created yet (setup creates it)');
    return;
  }
  const role = quoteIdent(f.usr);
  const grants: string[] = [];
  if (!row.usage) grants.push(`GRANT USAGE ON SCHEMA pgbisync TO ${role};`);
  if (row.tables.length > 0)
    grants.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgbisync TO ${role};`);
  if (row.sequences.length > 0) grants.push(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgbisync TO ${role};`);
  if (grants.length === 0) {
    emit('pgbisync_schema', 'ok', `${f.usr} may read and write pgbisync's own tables`);
    return;
  }
  const what = [
    ...(row.usage ? [] : ['USAGE on schema pgbisync']),
    ...(row.tables.length > 0 ? [`SELECT/INSERT/UPDATE/DELETE on pgbisync.{${row.tables.join(',')}}`] : []),
    ...(row.sequences.length > 0 ? [`USAGE on pgbisync.{${row.sequences.join(',')}}`] : []),
  ];
  emit('pgbisync_schema', 'FAIL', `${f.usr} lacks ${what.join(', ')}`, grants.join('  '));
}
