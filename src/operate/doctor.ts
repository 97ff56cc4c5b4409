/**
 * `pgbisync doctor`: every prerequisite of sync, checked on every node and in Kafka, each failure with
 * the exact statement or command that fixes it. Read-only: doctor never changes a node or a topic.
 *
 * Checks per node: connection (reachable, authenticated, database exists), server version (15+),
 * wal_level, track_commit_timestamp, room for pgbisync's slot and walsender beyond those in use,
 * REPLICATION (or superuser), the grants of docs/security.md's run role and, until setup ran on the node,
 * its setup role (./doctor-grants.ts), SET session_replication_role (appliers write with it); per table:
 * exists, primary key, replica identity, owned by the user until setup ran (CREATE PUBLICATION ... FOR
 * TABLE and the delete trigger need ownership), same columns and key as on the first node, sequence-filled columns
 * (inserts on two nodes collide unless interleaved), user triggers and rules (which do not fire on
 * applied rows, or break applying: ./doctor-triggers.ts); the node's slot (lost: FAIL; close to being
 * invalidated by max_slot_wal_keep_size: warn). Kafka: brokers
 * reachable; existing event topics have one partition in transactional mode (commit order).
 */

import type pg from 'pg';
import type { Config, NodeConfig } from '../config/schema.ts';
import { type ClockOffset, readClockOffset, skewMs, skewWarning } from '../conflicts/clock-skew.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { eventTopics } from '../kafka/topics.ts';
import { newPgClient } from '../pg/client.ts';
import { firstHostUrl, formatHost, isMultiHost, parseNodeUrl } from '../pg/node-url.ts';
import { objectNames, quoteIdent } from '../pg/sql-names.ts';
import { type CatalogTable, matchTables } from '../pg/table-catalog.ts';
import { judgeSlot, readSlotHealth, type SlotHealth } from '../source/slot-health.ts';
import { checkFailoverSlot } from './doctor-failover.ts';
import {
  checkCreate,
  checkOriginFunctions,
  checkOwnSchema,
  checkTablePrivileges,
  readRoleFacts,
} from './doctor-grants.ts';
import type { CheckStatus, DoctorCheck, DoctorReport, Emit } from './doctor-report.ts';
import { checkSequences, checkTable, compareTables } from './doctor-tables.ts';
import { innermost, kafkaTransportProblem, pgTransportProblem } from './doctor-transport.ts';
import { checkPartitionTriggers, checkReplicaRole, checkTriggers } from './doctor-triggers.ts';

const MIN_SERVER_VERSION_NUM = 150000;
const CONNECT_TIMEOUT_MS = 10_000;
const KAFKA_TIMEOUT_MS = 20_000;

export async function runDoctor(config: Config): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const emitFor =
    (node: string): Emit =>
    (check, status, detail, fix) =>
      checks.push({ node, check, status, detail, fix: fix ?? null });
  // Table definitions per node: each is compared with the first reachable node's.
  const catalogs: { node: string; tables: Map<string, CatalogTable> }[] = [];
  let tableNames: string[] | undefined;
  const clocks: { node: string; offset: ClockOffset }[] = [];
  for (const [index, node] of config.nodes.entries()) {
    const emit = emitFor(node.name);
    const db = await connect(node, index, emit);
    if (db === undefined) continue;
    try {
      await checkServer(db, node, config.conflicts.keepCommitTimes && node.debezium === undefined, emit);
      clocks.push({ node: node.name, offset: await readClockOffset(db) });
      const role = await readRoleFacts(db, node.name);
      await checkOriginFunctions(db, role, emit);
      checkCreate(role, emit);
      await checkOwnSchema(db, role, emit);
      if (node.debezium === undefined) await checkSlot(db, node, emit);
      if (node.debezium === undefined) await checkFailoverSlot(db, node, emit);
      await checkReplicaRole(db, emit);
      const names = Array.isArray(config.tables)
        ? [...config.tables]
        : await matchTables(db, config.tables.include, config.tables.exclude);
      if (names.length === 0) {
        emit('tables', 'FAIL', 'no table matches tables.include', 'fix tables.include / tables.exclude');
      }
      tableNames ??= names;
      const tables = new Map<string, CatalogTable>();
      for (const name of names) {
        const found = await checkTable(db, node, name, config.nodes[0]!.name, emit, role.setupDone);
        if (found !== undefined) tables.set(name, found);
      }
      await checkTablePrivileges(db, role, [...tables.keys()], emit);
      await checkSequences(db, config, [...tables.values()], index, emit);
      await checkTriggers(db, [...tables.keys()], emit);
      if (role.setupDone) await checkPartitionTriggers(db, [...tables.keys()], emit);
      const first = catalogs[0];
      if (first !== undefined) compareTables(first, { node: node.name, tables }, emit);
      catalogs.push({ node: node.name, tables });
    } finally {
      await db.end().catch(() => undefined);
    }
  }
  checkClocks(clocks, config.conflicts.maxClockSkewMs, emitFor);
  await checkKafka(config, tableNames ?? [], emitFor('kafka'));
  return { ok: checks.every((c) => c.status !== 'FAIL'), checks };
}

/**
 * Each node's clock against the first reachable node's (../conflicts/clock-skew.ts): warn above
 * conflicts.maxClockSkewMs (appliers then wait for the later clock, and block beyond the limit).
 */
function checkClocks(
  clocks: readonly { node: string; offset: ClockOffset }[],
  maxSkewMs: number,
  emitFor: (node: string) => Emit,
): void {
  const [first, ...others] = clocks;
  if (first === undefined) return;
  for (const { node, offset } of others) {
    const skew = skewMs(offset, first.offset);
    const warning = skewWarning(node, first.node, skew, maxSkewMs);
    const detail = `${Math.round(Math.abs(skew))} ms ${skew >= 0 ? 'ahead of' : 'behind'} ${first.node}'s clock`;
    if (warning === undefined) emitFor(node)('clock_skew', 'ok', `${detail} (limit ${maxSkewMs} ms)`);
    else
      emitFor(node)(
        'clock_skew',
        'warn',
        warning.replace(/; fix: .*/, ''),
        "synchronize the nodes' clocks (NTP, chrony)",
      );
  }
}

/** Connects with a deadline; on failure emits one FAIL naming the cause in operator terms. */
async function connect(node: NodeConfig, index: number, emit: Emit): Promise<pg.Client | undefined> {
  const url = new URL(firstHostUrl(node.url));
  const where = isMultiHost(node.url)
    ? parseNodeUrl(node.url).hosts.map(formatHost).join(',')
    : `${url.hostname}:${url.port || '5432'}`;
  const user = decodeURIComponent(url.username) || process.env.PGUSER || 'the OS user';
  const database = decodeURIComponent(url.pathname.slice(1)) || user;
  const client = newPgClient({
    connectionString: node.url,
    application_name: 'pgbisync-doctor',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  try {
    await client.connect();
    emit('connection', 'ok', `${user}@${where}/${database}`);
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    const e = error as { code?: unknown; message?: unknown };
    const code = typeof e.code === 'string' ? e.code : '';
    const message = typeof e.message === 'string' ? e.message : String(error);
    const field = `nodes[${index}].url`;
    const transport = pgTransportProblem(error, where, user, field);
    if (transport !== undefined) {
      emit('connection', 'FAIL', transport.detail, transport.fix);
    } else if (code === '28P01') {
      emit(
        'connection',
        'FAIL',
        `password authentication failed for user ${user} at ${where}`,
        `fix the password in ${field} (or the env var it references)`,
      );
    } else if (code.startsWith('28')) {
      emit(
        'connection',
        'FAIL',
        `authentication rejected at ${where}: ${message}`,
        /role .* does not exist/.test(message)
          ? `CREATE ROLE ${quoteIdent(user)} LOGIN REPLICATION PASSWORD '...';  (or fix the user in ${field})`
          : `allow ${user} to connect to ${database} from this host in pg_hba.conf, then SELECT pg_reload_conf();`,
      );
    } else if (code === '3D000') {
      emit(
        'connection',
        'FAIL',
        `database ${database} does not exist at ${where}`,
        `CREATE DATABASE ${quoteIdent(database)};  (or fix the database name in ${field})`,
      );
    } else {
      const reason = /timeout/i.test(message) ? `no answer within ${CONNECT_TIMEOUT_MS / 1000} s` : message;
      emit(
        'connection',
        'FAIL',
        `cannot reach PostgreSQL at ${where} (${reason})`,
        `start PostgreSQL at ${where} or fix host/port in ${field} (listen_addresses, firewall)`,
      );
    }
    return undefined;
  }
}

async function checkServer(db: pg.Client, node: NodeConfig, keepStamps: boolean, emit: Emit): Promise<void> {
  const slot = objectNames.slot(node.name);
  // The capture's slot and walsender; with conflicts.keepCommitTimes also the slot that keeps commit
  // times (src/operate/stamp-keeper.ts), whose walsender runs for a moment each minute.
  const needed = keepStamps ? 2 : 1;
  const s = (
    await db.query<{
      version_num: number;
      version: string;
      wal_level: string;
      tct: string;
      max_slots: number;
      other_slots: number;
      max_senders: number;
      other_senders: number;
      usr: string;
      superuser: boolean;
      replication: boolean;
    }>(
      `SELECT current_setting('server_version_num')::int AS version_num, current_setting('server_version') AS version,
              current_setting('wal_level') AS wal_level, current_setting('track_commit_timestamp') AS tct,
              current_setting('max_replication_slots')::int AS max_slots,
              (SELECT count(*) FROM pg_replication_slots WHERE slot_name NOT IN ($1, $2))::int AS other_slots,
              current_setting('max_wal_senders')::int AS max_senders,
              (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' AND pid IS DISTINCT FROM
                 (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1))::int AS other_senders,
              current_user AS usr, r.rolsuper AS superuser, r.rolreplication AS replication
         FROM pg_roles r WHERE r.rolname = current_user`,
      [slot, objectNames.stampSlot(node.name)],
    )
  ).rows[0]!;
  const restart = 'then restart PostgreSQL';
  if (s.version_num >= MIN_SERVER_VERSION_NUM) emit('server_version', 'ok', s.version);
  else
    emit('server_version', 'FAIL', `${s.version}; pgbisync needs 15 or later`, 'upgrade to PostgreSQL 15+');
  if (s.wal_level === 'logical') emit('wal_level', 'ok', 'logical');
  else
    emit(
      'wal_level',
      'FAIL',
      `${s.wal_level}; logical decoding needs logical`,
      `ALTER SYSTEM SET wal_level = logical;  ${restart}`,
    );
  if (s.tct === 'on') emit('track_commit_timestamp', 'ok', 'on');
  else
    emit(
      'track_commit_timestamp',
      'FAIL',
      'off; last-writer-wins compares commit timestamps',
      `ALTER SYSTEM SET track_commit_timestamp = on;  ${restart}`,
    );
  const slots = `${s.other_slots} other slot(s) in use, max_replication_slots = ${s.max_slots}`;
  if (s.max_slots >= s.other_slots + needed) emit('replication_slots', 'ok', slots);
  else
    emit(
      'replication_slots',
      'FAIL',
      `${slots}; pgbisync needs ${needed} more`,
      `ALTER SYSTEM SET max_replication_slots = ${s.other_slots + needed + 4};  ${restart}`,
    );
  const senders = `${s.other_senders} other walsender(s) running, max_wal_senders = ${s.max_senders}`;
  if (s.max_senders >= s.other_senders + needed) emit('wal_senders', 'ok', senders);
  else
    emit(
      'wal_senders',
      'FAIL',
      `${senders}; pgbisync needs ${needed} more`,
      `ALTER SYSTEM SET max_wal_senders = ${s.other_senders + needed + 4};  ${restart}`,
    );
  const role = quoteIdent(s.usr);
  if (s.superuser || s.replication)
    emit('replication_role', 'ok', `${s.usr} has ${s.superuser ? 'superuser' : 'REPLICATION'}`);
  else
    emit(
      'replication_role',
      'FAIL',
      `${s.usr} lacks REPLICATION (needed to create and read the slot)`,
      `ALTER ROLE ${role} REPLICATION;`,
    );
}

/**
 * The node's slot, once its capture created it: FAIL when it is lost (gone after the capture streamed
 * from it, or invalidated), warn when it is close to being invalidated (./status.ts says the same).
 */
async function checkSlot(db: pg.Client, node: NodeConfig, emit: Emit): Promise<void> {
  let h: SlotHealth;
  try {
    h = await readSlotHealth(db, node.name, objectNames.slot(node.name));
  } catch (error) {
    emit(
      'slot',
      'warn',
      `cannot read the slot's state: ${rootMessage(error)}`,
      'run doctor as the user pgbisync runs as',
    );
    return;
  }
  const verdict = judgeSlot(h);
  switch (verdict.kind) {
    case 'lost':
      emit('slot', 'FAIL', verdict.error.message, verdict.error.hint);
      return;
    case 'warn':
      emit('slot', 'warn', verdict.problem, verdict.fix);
      return;
    case 'ok': {
      if (!h.exists) {
        emit('slot', 'ok', `${h.slot} not created yet (the capture creates it on its first start)`);
        return;
      }
      const safe =
        h.safeWalBytes === null ? 'no max_slot_wal_keep_size' : `safe_wal_size ${h.safeWalBytes} B`;
      emit('slot', 'ok', `${h.slot} ${h.active ? 'active' : 'idle'}, wal_status ${h.walStatus}, ${safe}`);
      return;
    }
    default:
      verdict satisfies never;
  }
}

async function checkKafka(config: Config, tables: readonly string[], emit: Emit): Promise<void> {
  const brokers = config.kafka.brokers.join(',');
  const admin = new KafkaAdmin(kafkaOptions(config, 'doctor'));
  try {
    let existing: Set<string>;
    try {
      existing = new Set(await withTimeout(admin.listTopics(), KAFKA_TIMEOUT_MS));
      emit('broker', 'ok', `${brokers} reachable (${existing.size} topics)`);
    } catch (error) {
      const problem = kafkaTransportProblem(error, brokers);
      emit('broker', 'FAIL', problem.detail, problem.fix);
      return;
    }
    for (const node of config.nodes) {
      for (const topic of eventTopics(config, node.name, tables)) {
        if (!existing.has(topic)) {
          emit(`topic ${topic}`, 'ok', 'not created yet (pgbisync setup creates it)');
          continue;
        }
        const partitions = (await withTimeout(admin.endOffsets(topic), KAFKA_TIMEOUT_MS)).size;
        if (config.mode === 'transactional' && partitions !== 1) {
          emit(
            `topic ${topic}`,
            'FAIL',
            `${partitions} partitions; transactional mode needs 1 to keep commit order`,
            `kafka-topics.sh --bootstrap-server ${config.kafka.brokers[0]} --delete --topic ${topic}  then pgbisync setup`,
          );
        } else {
          emit(`topic ${topic}`, 'ok', `${partitions} partition(s)`);
        }
      }
    }
  } finally {
    await withTimeout(admin.close(), 5_000).catch(() => undefined);
  }
}

/** The innermost message of an error (the Kafka client nests AggregateErrors and causes). */
function rootMessage(error: unknown): string {
  const root = innermost(error);
  return root instanceof Error ? root.message : String(root);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One line per check (`ok|FAIL|warn  node  check  detail`), its fix indented below, then a summary. */
export function formatDoctor(report: DoctorReport): string {
  const width = (f: (c: DoctorCheck) => string) => Math.max(0, ...report.checks.map((c) => f(c).length));
  const nodeWidth = width((c) => c.node);
  const checkWidth = width((c) => c.check);
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(
      `${c.status.padEnd(4)}  ${c.node.padEnd(nodeWidth)}  ${c.check.padEnd(checkWidth)}  ${c.detail}`,
    );
    if (c.fix !== null && c.status !== 'ok') lines.push(`      fix: ${c.fix}`);
  }
  const count = (s: CheckStatus) => report.checks.filter((c) => c.status === s).length;
  lines.push(`doctor: ${count('ok')} ok, ${count('warn')} warn, ${count('FAIL')} FAIL`);
  return lines.join('\n');
}
