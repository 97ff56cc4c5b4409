/**
 * `pgbisync setup` / `pgbisync teardown`: the objects sync needs on every node and in Kafka.
 *
 * setup (idempotent): the pgbisync schema, the publication over the synced tables, a replication origin
 * per other node, a trigger per table that dates local deletes (pgbisync.tombstones, for
 * update/delete conflicts) and the topics. The slot is created by the node's capture on its first
 * start, because the initial snapshot must be read in the snapshot the slot exports.
 *
 * teardown: drops slots (stopping a walsender that still holds one), publications, origins, triggers,
 * the pgbisync schema and, unless kept, the topics. A forgotten slot retains WAL forever: teardown
 * reports every slot it removed.
 */
import type { Config } from '../config/schema.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { deadLetterTopic, serverName, topicSpecs } from '../kafka/topics.ts';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { objectNames, qualifiedName, quoteIdent, quoteLiteral, splitTableName } from '../pg/sql-names.ts';
import { leafPartitions, readTable, withLeafPartitions } from '../pg/table-catalog.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { forgetUnsyncedCopies } from '../source/copy-progress.ts';
import { ensurePublication } from '../source/slot-setup.ts';
import { resolveTablesOn, withNode } from './sync-plan.ts';

export const TOMBSTONE_TRIGGER = 'pgbisync_tombstone';
/** The statement trigger that dates a local TRUNCATE of a synced table (pgbisync.record_truncate). */
export const TRUNCATE_TRIGGER = 'pgbisync_truncate';
/**
 * The statement trigger (BEFORE TRUNCATE) on a synced partitioned table and on each of its partitions
 * that makes a partition's own TRUNCATE deletes (pgbisync.truncate_partition): pgoutput does not publish
 * it when changes are published by the root.
 */
export const TRUNCATE_PARTITION_TRIGGER = 'pgbisync_truncate_partition';
/** pgbisync's triggers on synced tables. */
export const OWN_TRIGGERS: readonly string[] = [
  TOMBSTONE_TRIGGER,
  TRUNCATE_TRIGGER,
  TRUNCATE_PARTITION_TRIGGER,
];

export interface SetupReport {
  readonly tables: readonly string[];
  readonly nodes: readonly {
    node: string;
    publication: string;
    origins: string[];
    triggers: number;
    /** Tables that had pgbisync's triggers and are no longer synced (their data is untouched). */
    removed: string[];
  }[];
  readonly topicsCreated: readonly string[];
}

export async function setup(config: Config, log: (line: string) => void = () => {}): Promise<SetupReport> {
  const nodes: SetupReport['nodes'][number][] = [];
  let tables: string[] = [];
  for (const node of config.nodes) {
    const report = await withNode(node, 'setup', async (db) => {
      await requireSyncSettings(db, node.name);
      tables = await resolveTablesOn(db, node.name, config);
      return await withLockRetry(db, node.name, log, () => setUpNode(db, config, node.name, tables));
    });
    log(
      `${node.name}: schema pgbisync, publication ${report.publication} (${tables.length} tables), origins ${report.origins.join(', ')}${
        report.removed.length === 0
          ? ''
          : `; no longer synced (data kept, pgbisync's triggers and tombstones dropped): ${report.removed.join(', ')}`
      }`,
    );
    nodes.push(report);
  }
  const admin = new KafkaAdmin(kafkaOptions(config, 'setup'));
  try {
    const specs = config.nodes.flatMap((n) => topicSpecs(config, n.name, tables));
    const created = await admin.createTopics(specs);
    log(`kafka: topics ${specs.map((s) => s.name).join(', ')} (${created.length} created)`);
    return { tables, nodes, topicsCreated: created };
  } finally {
    await admin.close();
  }
}

/** One node's part of setup, in one transaction (the caller's). */
async function setUpNode(
  db: import('pg').Client,
  config: Config,
  node: string,
  tables: readonly string[],
): Promise<SetupReport['nodes'][number]> {
  await ensurePgbisyncSchema(db);
  const publication = objectNames.publication(node);
  await ensurePublication(db, publication, tables);
  for (const name of tables) await installTombstoneTrigger(db, name);
  const removed = await removeUnsynced(db, tables);
  // Where a copy of a table no longer synced stopped: added again, it is copied whole (its changes
  // meanwhile were never streamed).
  await forgetUnsyncedCopies(db, await withLeafPartitions(db, tables));
  const origins: string[] = [];
  for (const other of config.nodes) {
    if (other.name === node) continue;
    const origin = objectNames.origin(other.name, node);
    await db.query(
      'SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)',
      [origin],
    );
    origins.push(origin);
  }
  return { node, publication, origins, triggers: tables.length, removed };
}

/** How long setup waits for one lock (a table's writers) before it lets go and tries again. */
const SETUP_LOCK_TIMEOUT = '5s';
const SETUP_ATTEMPTS = 6;

/**
 * Runs `work` in a transaction with a lock timeout, again after a deadlock (40P01) or a lock it could
 * not get in time (55P03): setup takes locks on tables the applications write while it runs, and lets
 * go of them rather than hold the applications up (or be chosen as the victim of a deadlock forever).
 */
async function withLockRetry<T>(
  db: import('pg').Client,
  node: string,
  log: (line: string) => void,
  work: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      await db.query('BEGIN');
      await db.query(`SET LOCAL lock_timeout = '${SETUP_LOCK_TIMEOUT}'`);
      const result = await work();
      await db.query('COMMIT');
      return result;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => undefined);
      const code = (error as { code?: string }).code;
      if ((code !== '40P01' && code !== '55P03') || attempt >= SETUP_ATTEMPTS) throw error;
      log(
        `${node}: ${code === '40P01' ? 'deadlock with a writing transaction' : `a lock not granted within ${SETUP_LOCK_TIMEOUT}`}; setup tries again (attempt ${attempt + 1} of ${SETUP_ATTEMPTS})`,
      );
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

/** wal_level and track_commit_timestamp: without them nothing else can work. */
export async function requireSyncSettings(db: import('pg').Client, node: string): Promise<void> {
  const r = await db.query<{ wal_level: string; tct: string }>(
    "SELECT current_setting('wal_level') AS wal_level, current_setting('track_commit_timestamp') AS tct",
  );
  const row = r.rows[0]!;
  if (row.wal_level !== 'logical') {
    throw new FatalError(`node ${node}: wal_level is ${row.wal_level}, logical replication needs 'logical'`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: "ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL",
    });
  }
  if (row.tct !== 'on') {
    throw new FatalError(`node ${node}: track_commit_timestamp is off; conflict resolution needs it`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: 'ALTER SYSTEM SET track_commit_timestamp = on; then restart PostgreSQL',
    });
  }
}

/**
 * The trigger that records local deletes (and key changes) in pgbisync.tombstones. It is an ordinary
 * trigger (ENABLE, fires on origin), not ENABLE ALWAYS: the applier writes with
 * session_replication_role = replica, so it does not fire on applied rows, and must not. The applier
 * records an applied delete's (and key change's) tombstone itself, only where the incoming change beats
 * the tombstone already there (../sink/statement-builder.ts); the trigger's unguarded write would
 * re-date a newer tombstone (one a third node's later delete left) to the older incoming change, and
 * write each applied tombstone twice. Re-running setup puts the trigger back to ordinary when someone
 * changed it (CREATE OR REPLACE resets it too; the ALTER says so on purpose).
 */
async function installTombstoneTrigger(db: import('pg').Client, name: string): Promise<void> {
  const { schema, table } = splitTableName(name);
  const catalog = await readTable(db, schema, table);
  const key = catalog?.primaryKey ?? [];
  if (key.length === 0) return;
  const qualified = qualifiedName(schema, table);
  // A trigger already as wanted is left alone: CREATE OR REPLACE TRIGGER locks the table against
  // writes, and setup runs while the applications write (a reload adds a table). Re-creating every
  // table's triggers in one transaction deadlocked with the applications' own transactions (the
  // torture test's `addtable`: their inserts failed with "deadlock detected").
  // On a partitioned table the row trigger is cloned onto every partition, present and future, and
  // names the partitioned table: changes are published, applied and remembered by the root.
  if (
    !(await triggerAsWanted(
      db,
      qualified,
      TOMBSTONE_TRIGGER,
      'pgbisync.record_tombstone',
      ROW_DELETE_UPDATE,
      key,
    ))
  ) {
    await db.query(
      `CREATE OR REPLACE TRIGGER ${quoteIdent(TOMBSTONE_TRIGGER)}
         AFTER DELETE OR UPDATE OF ${key.map(quoteIdent).join(', ')} ON ${qualified}
         FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone(${key.map(quoteLiteral).join(', ')})`,
    );
    await db.query(`ALTER TABLE ${qualified} ENABLE TRIGGER ${quoteIdent(TOMBSTONE_TRIGGER)}`);
  }
  // Ordinary too: applied truncates are guarded deletes that write the table's tombstone themselves.
  if (!(await triggerAsWanted(db, qualified, TRUNCATE_TRIGGER, RECORD_TRUNCATE, STATEMENT_TRUNCATE, []))) {
    await db.query(
      `CREATE OR REPLACE TRIGGER ${quoteIdent(TRUNCATE_TRIGGER)} AFTER TRUNCATE ON ${qualified}
         FOR EACH STATEMENT EXECUTE FUNCTION ${RECORD_TRUNCATE}()`,
    );
  }
  if (catalog?.partitioned === true) await installPartitionTruncateTriggers(db, qualified);
}

/**
 * A partitioned table's BEFORE TRUNCATE triggers, on it and on each partition there is now (statement
 * triggers are not cloned onto partitions: re-run setup after adding partitions; doctor names a
 * partition without it). A partition's AFTER TRUNCATE trigger of earlier versions (changes were
 * published by partition then) goes.
 */
async function installPartitionTruncateTriggers(db: import('pg').Client, qualified: string): Promise<void> {
  const leaves = await leafPartitions(db, qualified);
  for (const target of [qualified, ...leaves]) {
    if (
      await triggerAsWanted(db, target, TRUNCATE_PARTITION_TRIGGER, TRUNCATE_PARTITION, BEFORE_TRUNCATE, [])
    )
      continue;
    await db.query(
      `CREATE OR REPLACE TRIGGER ${quoteIdent(TRUNCATE_PARTITION_TRIGGER)} BEFORE TRUNCATE ON ${target}
         FOR EACH STATEMENT EXECUTE FUNCTION ${TRUNCATE_PARTITION}()`,
    );
  }
  const stale = await db.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = $1 AND t.tgrelid IN (SELECT relid FROM pg_partition_tree($2::regclass) WHERE relid <> $2::regclass)`,
    [TRUNCATE_TRIGGER, qualified],
  );
  for (const { name } of stale.rows)
    await db.query(`DROP TRIGGER ${quoteIdent(TRUNCATE_TRIGGER)} ON ${name}`);
}

const RECORD_TRUNCATE = 'pgbisync.record_truncate';
const TRUNCATE_PARTITION = 'pgbisync.truncate_partition';
/** pg_trigger.tgtype of AFTER DELETE OR UPDATE ... FOR EACH ROW (ROW 1 | DELETE 8 | UPDATE 16). */
const ROW_DELETE_UPDATE = 25;
/** pg_trigger.tgtype of AFTER TRUNCATE ... FOR EACH STATEMENT (TRUNCATE 32). */
const STATEMENT_TRUNCATE = 32;
/** pg_trigger.tgtype of BEFORE TRUNCATE ... FOR EACH STATEMENT (BEFORE 2 | TRUNCATE 32). */
const BEFORE_TRUNCATE = 34;

/**
 * The trigger `name` on `qualified` exists, enabled as an ordinary trigger ('O'), of kind `tgtype`,
 * calling `fn` with `columns` as its arguments and (for a row trigger) as its UPDATE OF columns.
 */
async function triggerAsWanted(
  db: import('pg').Client,
  qualified: string,
  name: string,
  fn: string,
  tgtype: number,
  columns: readonly string[],
): Promise<boolean> {
  const r = await db.query(
    `SELECT 1 FROM pg_trigger t
      WHERE t.tgrelid = $1::regclass AND t.tgname = $2 AND NOT t.tgisinternal AND t.tgenabled = 'O'
        AND t.tgfoid = $3::regproc AND t.tgtype = $4 AND t.tgnargs = cardinality($5::text[])
        AND coalesce((SELECT array_agg(x ORDER BY x) FROM unnest(t.tgattr::int2[]) x), '{}') =
            coalesce((SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = t.tgrelid AND a.attname = ANY ($5::text[])), '{}')
        AND pg_get_triggerdef(t.oid) LIKE '%(' || coalesce((SELECT string_agg(quote_literal(c), ', ' ORDER BY o)
              FROM unnest($5::text[]) WITH ORDINALITY AS u(c, o)), '') || ')'`,
    [qualified, name, fn, tgtype, columns],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * A table removed from `tables` (the publication no longer holds it: ensurePublication): its data stays,
 * pgbisync's triggers on it and its tombstones go. Returns those tables.
 */
async function removeUnsynced(db: import('pg').Client, tables: readonly string[]): Promise<string[]> {
  // Partitions go with their partitioned table (its triggers are on them too).
  const r = await db.query<{ schema: string; table: string }>(
    `SELECT DISTINCT n.nspname AS schema, c.relname AS table FROM pg_trigger tg
       JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE tg.tgname IN ($1, $2) AND NOT tg.tgisinternal AND NOT c.relispartition`,
    [TOMBSTONE_TRIGGER, TRUNCATE_TRIGGER],
  );
  const synced = new Set(tables);
  const removed: string[] = [];
  for (const { schema, table } of r.rows) {
    const name = `${schema}.${table}`;
    if (synced.has(name)) continue;
    const qualified = qualifiedName(schema, table);
    const leaves = await leafPartitions(db, qualified);
    await db.query(`DROP TRIGGER IF EXISTS ${quoteIdent(TOMBSTONE_TRIGGER)} ON ${qualified}`);
    for (const t of [qualified, ...leaves]) {
      await db.query(`DROP TRIGGER IF EXISTS ${quoteIdent(TRUNCATE_TRIGGER)} ON ${t}`);
      await db.query(`DROP TRIGGER IF EXISTS ${quoteIdent(TRUNCATE_PARTITION_TRIGGER)} ON ${t}`);
    }
    await db.query(
      `DELETE FROM pgbisync.tombstones WHERE table_name = $1
          OR table_name IN (SELECT n.nspname || '.' || c.relname FROM pg_partition_tree($2::regclass) t
                              JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace)`,
      [name, qualified],
    );
    removed.push(name);
  }
  return removed.sort();
}

export interface TeardownReport {
  readonly nodes: readonly { node: string; slots: string[]; publications: string[]; origins: string[] }[];
  readonly topicsDeleted: readonly string[];
}

export async function teardown(
  config: Config,
  options: { keepTopics: boolean },
  log: (line: string) => void = () => {},
): Promise<TeardownReport> {
  const nodes: TeardownReport['nodes'][number][] = [];
  const names = config.nodes.map((n) => n.name);
  for (const node of config.nodes) {
    const report = await withNode(node, 'teardown', async (db) => {
      const slot = objectNames.slot(node.name);
      // A running capture holds the slot: stop its walsender first (the slot cannot be dropped while active).
      await db.query(
        'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
        [slot],
      );
      const slots = [
        ...(await dropSlotWithRetry(db, slot)),
        ...(await dropSlotWithRetry(db, objectNames.stampSlot(node.name))),
      ];
      const pub = objectNames.publication(node.name);
      const pubs = await db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [pub]);
      if ((pubs.rowCount ?? 0) > 0) await db.query(`DROP PUBLICATION ${quoteIdent(pub)}`);
      const triggers = await db.query<{ tbl: string; name: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS tbl, t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname = ANY($1::text[]) AND t.tgparentid = 0`,
        [OWN_TRIGGERS],
      );
      // (tgparentid = 0: not a partition's clone of its partitioned table's trigger, which goes with it.)
      for (const t of triggers.rows) await db.query(`DROP TRIGGER ${quoteIdent(t.name)} ON ${t.tbl}`);
      await db.query('DROP SCHEMA IF EXISTS pgbisync CASCADE');
      const origins = await db.query<{ roname: string }>(
        'SELECT roname FROM pg_replication_origin WHERE roname = ANY($1::text[])',
        [names.flatMap((n) => [objectNames.origin(n, node.name), objectNames.legacyOrigin(n)])],
      );
      for (const o of origins.rows) {
        // An applier session may still hold it; pg_replication_origin_drop waits for it (PG 15+: nowait=false).
        await db.query('SELECT pg_replication_origin_drop($1)', [o.roname]);
      }
      return {
        node: node.name,
        slots,
        publications: (pubs.rowCount ?? 0) > 0 ? [pub] : [],
        origins: origins.rows.map((o) => o.roname),
      };
    });
    log(
      `${node.name}: dropped slots [${report.slots.join(', ')}], publications [${report.publications.join(', ')}], origins [${report.origins.join(', ')}], schema pgbisync`,
    );
    nodes.push(report);
  }
  let topicsDeleted: string[] = [];
  if (!options.keepTopics) {
    const admin = new KafkaAdmin(kafkaOptions(config, 'teardown'));
    try {
      const existing = new Set(await admin.listTopics());
      // The node topics, per-table topics under them, and the dead-letter topics.
      const isOurs = (t: string) =>
        config.nodes.some((n) => {
          const base = serverName(config, n.name);
          return t === base || t.startsWith(`${base}.`) || t === deadLetterTopic(config, n.name);
        });
      topicsDeleted = [...existing].filter(isOurs);
      if (topicsDeleted.length > 0) await admin.deleteTopics(topicsDeleted);
      log(`kafka: deleted topics [${topicsDeleted.join(', ')}]`);
    } finally {
      await admin.close();
    }
  }
  return { nodes, topicsDeleted };
}

async function dropSlotWithRetry(db: import('pg').Client, slot: string): Promise<string[]> {
  for (let attempt = 0; ; attempt++) {
    const exists = await db.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    const row = exists.rows[0];
    if (row === undefined) return [];
    if (!row.active) {
      await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return [slot];
    }
    if (attempt >= 50) {
      throw new FatalError(`slot ${slot} is still in use and cannot be dropped`, {
        code: ErrorCode.PG_PREREQUISITE,
        hint: 'stop `pgbisync run` first, then run teardown again',
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
