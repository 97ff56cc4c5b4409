/**
 * doctor's checks of what fires on applied rows. Appliers write with session_replication_role = replica
 * (../sink/apply-session.ts), as PostgreSQL's own apply worker does, so on each node:
 * - the user must be allowed to SET it (superuser, or `GRANT SET ON PARAMETER`, PostgreSQL 15+);
 * - ordinary user triggers of a synced table fire where the application writes and not on rows pgbisync
 *   applies (warn, with the statement that makes one fire there too: ENABLE ALWAYS / ENABLE REPLICA);
 * - rules: an ordinary INSERT or DELETE rule does not fire on applied rows either (warn); an UPDATE rule
 *   (in any state) or a rule set to fire on replicas (ALWAYS / REPLICA) makes every applied write fail,
 *   since INSERT ... ON CONFLICT and data-modifying WITH queries do not support rules (FAIL).
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent, splitTableName } from '../pg/sql-names.ts';
import { replicaRoleGrant } from '../sink/apply-session.ts';
import type { Emit } from './doctor-report.ts';
import { OWN_TRIGGERS, TRUNCATE_PARTITION_TRIGGER } from './setup.ts';

const MIN_PARAMETER_GRANT_VERSION_NUM = 150000;

/** The applier's SET session_replication_role = replica: superuser or the SET grant (PostgreSQL 15+). */
export async function checkReplicaRole(db: pg.Client, emit: Emit): Promise<void> {
  const r = await db.query<{ usr: string; superuser: boolean; version_num: number }>(
    `SELECT current_user AS usr, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
            current_setting('server_version_num')::int AS version_num`,
  );
  const { usr, superuser, version_num } = r.rows[0]!;
  let allowed = superuser;
  if (!allowed && version_num >= MIN_PARAMETER_GRANT_VERSION_NUM) {
    const granted = await db.query<{ ok: boolean }>(
      "SELECT has_parameter_privilege('session_replication_role', 'SET') AS ok",
    );
    allowed = granted.rows[0]!.ok;
  }
  if (allowed)
    emit(
      'session_replication_role',
      'ok',
      `${usr} may SET session_replication_role (appliers write with it)`,
    );
  else
    emit(
      'session_replication_role',
      'FAIL',
      `${usr} may not SET session_replication_role, which appliers write with (so that the node's triggers and rules do not fire again on applied rows)`,
      replicaRoleGrant(usr),
    );
}

interface Fires {
  readonly name: string;
  /** pg_trigger.tgenabled / pg_rewrite.ev_enabled: O (origin: ordinary), A (always), R (replica), D. */
  readonly mode: string;
  /** Rules only: pg_rewrite.ev_type (2 UPDATE, 3 INSERT, 4 DELETE). */
  readonly event?: string;
}

/** One line per synced table that has user triggers or rules: what fires on applied rows. */
export async function checkTriggers(db: pg.Client, names: readonly string[], emit: Emit): Promise<void> {
  for (const name of names) {
    const { schema, table } = splitTableName(name);
    const qualified = qualifiedName(schema, table);
    const found = await db.query<{ kind: 'trigger' | 'rule' } & Fires>(
      `SELECT 'trigger' AS kind, t.tgname AS name, t.tgenabled AS mode, NULL AS event FROM pg_trigger t
        WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal AND t.tgname <> ALL($2::text[])
       UNION ALL
       SELECT 'rule', r.rulename, r.ev_enabled, r.ev_type FROM pg_rewrite r
        WHERE r.ev_class = to_regclass($1) AND r.ev_type <> '1'
       ORDER BY 1, 2`,
      [qualified, OWN_TRIGGERS],
    );
    const triggers = found.rows.filter((f) => f.kind === 'trigger');
    const rules = found.rows.filter((f) => f.kind === 'rule');
    if (triggers.length + rules.length === 0) continue;
    const check = `triggers ${name}`;
    let problems = 0;
    const breaking = rules.filter((r) => r.event === '2' || r.mode === 'A' || r.mode === 'R');
    if (breaking.length > 0) {
      problems++;
      emit(
        check,
        'FAIL',
        `rule(s) ${list(breaking)} on ${name} make every applied write fail: INSERT ... ON CONFLICT and WITH ... DELETE (the applier's statements) do not support UPDATE rules, nor rules that fire on applied rows`,
        `${breaking.map((r) => `DROP RULE ${quoteIdent(r.name)} ON ${qualified};`).join(' ')}  (do its work in a trigger instead; ALTER TABLE ... ENABLE ALWAYS TRIGGER runs that on applied rows too)`,
      );
    }
    const skippedRules = rules.filter((r) => !breaking.includes(r) && r.mode === 'O');
    if (skippedRules.length > 0) {
      problems++;
      emit(
        check,
        'warn',
        `rule(s) ${list(skippedRules)} on ${name} do not fire on rows pgbisync applies, only where the application writes (rules cannot be made to: the applier's statements do not support them)`,
        `to act on applied rows too, replace each with a trigger and ALTER TABLE ${qualified} ENABLE ALWAYS TRIGGER <it>;`,
      );
    }
    const ordinary = triggers.filter((t) => t.mode === 'O');
    if (ordinary.length > 0) {
      problems++;
      emit(
        check,
        'warn',
        `trigger(s) ${list(ordinary)} on ${name} do not fire on rows pgbisync applies (it writes with session_replication_role = replica): they fire where the application writes, whose row then arrives as it was written`,
        `only if one must run on applied rows too: ${ordinary.map((t) => `ALTER TABLE ${qualified} ENABLE ALWAYS TRIGGER ${quoteIdent(t.name)};`).join(' ')}  (ENABLE REPLICA TRIGGER: on applied rows only)`,
      );
    }
    if (problems === 0) {
      const firing = triggers.filter((t) => t.mode === 'A' || t.mode === 'R');
      emit(
        check,
        'ok',
        firing.length > 0
          ? `trigger(s) ${list(firing)} fire on applied rows (ENABLE ALWAYS / REPLICA)`
          : 'no enabled user trigger or rule',
      );
    }
  }
}

/**
 * The partitions of synced partitioned tables without pgbisync's BEFORE TRUNCATE trigger (made after
 * `setup`; statement triggers are not cloned): a TRUNCATE of one of them alone would not be replicated.
 */
export async function checkPartitionTriggers(
  db: pg.Client,
  names: readonly string[],
  emit: Emit,
): Promise<void> {
  const r = await db.query<{ root: string; leaves: string[] }>(
    `SELECT t.name AS root, array_agg(format('%I.%I', n.nspname, c.relname) ORDER BY c.relname) AS leaves
       FROM unnest($1::text[], $2::text[]) t(name, qualified)
       JOIN pg_class r ON r.oid = to_regclass(t.qualified) AND r.relkind = 'p'
       JOIN LATERAL pg_partition_tree(r.oid) p ON p.isleaf
       JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = $3)
      GROUP BY t.name`,
    [
      names,
      names.map((name) => {
        const { schema, table } = splitTableName(name);
        return qualifiedName(schema, table);
      }),
      TRUNCATE_PARTITION_TRIGGER,
    ],
  );
  for (const { root, leaves } of r.rows) {
    emit(
      `partitions ${root}`,
      'warn',
      `partition(s) ${leaves.join(', ')} of ${root} were made after \`pgbisync setup\`: a TRUNCATE of one of them alone would not reach the other nodes (their other changes do)`,
      'pgbisync setup  (it puts the truncate trigger on every partition)',
    );
  }
}

function list(fires: readonly Fires[]): string {
  return fires.map((f) => f.name).join(', ');
}
