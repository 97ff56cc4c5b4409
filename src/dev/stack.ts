/**
 * The local dev stack behind `pgbisync dev up | down | status`: two PostgreSQL servers (db1, db2), one
 * Kafka broker and, with `--connect`, a Kafka Connect worker with the Debezium connectors; with
 * `--standby` (PostgreSQL 17+), a streaming physical standby of db1 ready for failover slots
 * (./standby.ts). `up` is idempotent and returns only once every part passed its health check; `down` stops
 * everything `up` started. The state file (state.json in the state folder) records what runs where.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { fetchKafkaJars, KafkaBroker } from './kafka-broker.ts';
import { fetchConnectJars, KafkaConnect } from './kafka-connect.ts';
import { checkKafka } from './kafka-health.ts';
import { serverDataRoot } from './paths.ts';
import { PostgresServer } from './postgres-server.ts';
import { requireFreePort } from './process-tools.ts';
import { ensureCredentials, ensureTlsMaterial, TLS_GROUP, tlsPaths } from './tls-material.ts';

export interface StackOptions {
  readonly stateDir: string;
  readonly pgMajor: number;
  readonly db1Port: number;
  readonly db2Port: number;
  readonly kafkaPort: number;
  readonly kafkaControllerPort: number;
  readonly kafkaHeapMb: number;
  /** Also run Kafka Connect with the Debezium PostgreSQL connector and JDBC sink. */
  readonly connect: boolean;
  readonly connectPort: number;
  readonly connectHeapMb: number;
  /** `--secure`: PostgreSQL with TLS and SCRAM for the pgbisync_tls group, Kafka SASL_SSL on kafkaSecurePort. */
  readonly secure?: boolean;
  readonly kafkaSecurePort?: number;
  /** A second Kafka listener on this port advertising the next one, for a fault proxy (the torture test). */
  readonly kafkaProxiedPort?: number;
  /** `--standby`: a streaming physical standby of db1 on standbyPort (default: {@link standbyPortOf}). */
  readonly standby?: boolean;
  readonly standbyPort?: number;
}

/** The physical slot on db1 that the standby streams from. */
export const STANDBY_SLOT = 'db1_standby';
/**
 * The standby's port when none is given: db1's + 6, after db1, db2, Kafka, its controller (+ 0 to + 3)
 * and Kafka's SASL_SSL listener (+ 4 in scripts/test.sh) or proxied listener (+ 4, + 5 in scripts/torture.sh).
 */
export const STANDBY_PORT_OFFSET = 6;
export const standbyPortOf = (options: Pick<StackOptions, 'db1Port' | 'standbyPort'>): number =>
  options.standbyPort ?? options.db1Port + STANDBY_PORT_OFFSET;

export const DEFAULT_STACK: Omit<StackOptions, 'stateDir'> = {
  pgMajor: 18,
  // Below Linux's ephemeral range (32768-60999), where an outgoing connection may hold any port for a
  // moment, and apart from the tests' (26000-26500) and the torture test's (24100-24105).
  db1Port: 25432,
  db2Port: 25433,
  kafkaPort: 25092,
  kafkaControllerPort: 25093,
  kafkaHeapMb: 512,
  connect: false,
  connectPort: 25083,
  connectHeapMb: 512,
};

/** What `dev status --json` prints; scripts and tests find the stack through it. */
export interface StackStatus {
  readonly stateDir: string;
  readonly pgMajor: number;
  readonly nodes: readonly {
    name: string;
    url: string;
    port: number;
    running: boolean;
    version?: string;
    log: string;
  }[];
  readonly kafka: {
    readonly brokers: readonly string[];
    readonly running: boolean;
    readonly pid?: number;
    readonly log: string;
    /** With `up --kafka-proxied-port`: the second listener's port and the one it advertises. */
    readonly proxied?: { readonly listener: number; readonly advertised: number };
  };
  /**
   * With `up --secure`: the CA clients trust, the PostgreSQL role that must use TLS and SCRAM (members
   * of `group` must), and the Kafka SASL_SSL listener with its SCRAM-SHA-256 user.
   */
  readonly secure?: {
    readonly caFile: string;
    readonly pg: { readonly group: string; readonly user: string; readonly password: string };
    readonly kafka: {
      readonly brokers: readonly string[];
      readonly mechanism: 'scram-sha-256';
      readonly username: string;
      readonly password: string;
    };
  };
  /** Present when the stack runs a standby of db1 (`up --standby`): `url` is db1's database on it. */
  readonly standby?: {
    readonly url: string;
    readonly port: number;
    readonly running: boolean;
    readonly version?: string;
    readonly log: string;
  };
  /** Present when the stack runs Kafka Connect (`up --connect`). */
  readonly connect?: {
    readonly url: string;
    readonly running: boolean;
    readonly pid?: number;
    readonly version?: string;
    readonly plugins?: readonly { class: string; version: string }[];
    readonly log: string;
  };
}

const NODE_NAMES = ['db1', 'db2'] as const;

export class DevStack {
  readonly options: StackOptions;
  readonly servers: readonly PostgresServer[];
  readonly standby: PostgresServer | undefined;
  readonly broker: KafkaBroker;
  readonly connect: KafkaConnect | undefined;

  constructor(options: StackOptions) {
    this.options = options;
    const dataRoot = serverDataRoot(options.stateDir);
    const ports = [options.db1Port, options.db2Port];
    const secureDir = join(options.stateDir, 'secure');
    const secure =
      options.secure === true
        ? { tls: tlsPaths(secureDir), credentials: ensureCredentials(secureDir) }
        : undefined;
    this.servers = NODE_NAMES.map(
      (name, i) =>
        new PostgresServer({
          name,
          major: options.pgMajor,
          port: ports[i] ?? 0,
          dir: join(dataRoot, `pg${options.pgMajor}-${name}`),
          database: name,
          ...(secure === undefined ? {} : { secure }),
        }),
    );
    const db1 = this.servers[0]!;
    this.standby =
      options.standby === true
        ? new PostgresServer({
            name: 'standby',
            major: options.pgMajor,
            port: standbyPortOf(options),
            dir: join(dataRoot, `pg${options.pgMajor}-db1-standby`),
            database: db1.spec.database,
            standbyOf: { port: db1.spec.port, dataDir: db1.dataDir, slot: STANDBY_SLOT },
          })
        : undefined;
    this.broker = new KafkaBroker({
      port: options.kafkaPort,
      controllerPort: options.kafkaControllerPort,
      dir: join(options.stateDir, 'kafka'),
      heapMb: options.kafkaHeapMb,
      ...(options.kafkaProxiedPort === undefined ? {} : { proxiedPort: options.kafkaProxiedPort }),
      ...(secure === undefined
        ? {}
        : { secure: { ...secure, port: options.kafkaSecurePort ?? options.kafkaPort + 2 } }),
    });
    this.connect = options.connect
      ? new KafkaConnect({
          port: options.connectPort,
          bootstrap: this.broker.bootstrap,
          dir: join(options.stateDir, 'connect'),
          heapMb: options.connectHeapMb,
        })
      : undefined;
  }

  /** Reopens the stack recorded in a state folder (ports and major as `up` chose them). */
  static fromStateDir(stateDir: string): DevStack | undefined {
    const file = join(stateDir, 'state.json');
    if (!existsSync(file)) return undefined;
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { options: Partial<StackOptions> };
    // State files written before Connect existed lack its fields.
    return new DevStack({ ...DEFAULT_STACK, ...saved.options, stateDir });
  }

  /** `leaveDown`: servers not to start ('db1' after the torture's failover, or 'standby'). */
  async up(log: (line: string) => void, o: { leaveDown?: readonly string[] } = {}): Promise<StackStatus> {
    if (this.options.standby === true && this.options.pgMajor < 17) {
      throw new FatalError(
        `dev up --standby needs PostgreSQL 17 or later (failover slots: sync_replication_slots); this stack runs PostgreSQL ${this.options.pgMajor}`,
        { code: ErrorCode.CONFIG_INVALID, hint: 'use --pg 18 (with another --state-dir)' },
      );
    }
    mkdirSync(this.options.stateDir, { recursive: true });
    this.#assertSameShape();
    this.#assertPortsApply();
    const libs = await fetchKafkaJars(log);
    const connectJars = this.connect === undefined ? undefined : await fetchConnectJars(log);
    if (this.options.secure === true) await ensureTlsMaterial(join(this.options.stateDir, 'secure'));
    for (const server of this.servers.filter((s) => !o.leaveDown?.includes(s.spec.name))) {
      if (await server.isReady()) {
        log(`${server.spec.name}: already running on ${server.spec.port}`);
        continue;
      }
      await requireFreePort(server.spec.port, `PostgreSQL ${server.spec.name}`, `--${server.spec.name}-port`);
      log(`${server.spec.name}: starting PostgreSQL ${this.options.pgMajor} on ${server.spec.port}`);
      await server.start();
    }
    const standby = this.standby;
    if (standby !== undefined && (await standby.isReady())) {
      log(`standby: already running on ${standby.spec.port}`);
    } else if (standby !== undefined && !o.leaveDown?.includes('standby')) {
      await requireFreePort(standby.spec.port, 'the standby of db1', '--standby-port');
      log(
        `standby: starting a streaming standby of db1 on ${standby.spec.port} (slot ${STANDBY_SLOT} on db1)`,
      );
      await standby.start();
    }
    writeFileSync(
      join(this.options.stateDir, 'state.json'),
      JSON.stringify({ options: this.options }, null, 2),
    );
    if (this.broker.pid() === undefined) {
      await requireFreePort(this.options.kafkaPort, 'Kafka', '--kafka-port');
      await requireFreePort(
        this.options.kafkaControllerPort,
        'the Kafka controller',
        '--kafka-controller-port',
      );
      const securePort = this.broker.spec.secure?.port;
      if (securePort !== undefined)
        await requireFreePort(securePort, 'Kafka SASL_SSL', '--kafka-secure-port');
      if (this.options.kafkaProxiedPort !== undefined)
        await requireFreePort(
          this.options.kafkaProxiedPort,
          'Kafka (proxied listener)',
          '--kafka-proxied-port',
        );
      log(`kafka: starting broker ${this.broker.bootstrap} (KRaft)`);
      await this.broker.start(libs);
    } else {
      log(`kafka: already running on ${this.broker.bootstrap}`);
    }
    await checkKafka(this.broker.bootstrap, 90_000);
    if (this.connect !== undefined && connectJars !== undefined) {
      if (this.connect.pid() === undefined) {
        await requireFreePort(this.options.connectPort, 'the Kafka Connect REST API', '--connect-port');
        log(`connect: starting Kafka Connect (distributed) on ${this.connect.url}`);
        const started = Date.now();
        await this.connect.start(connectJars);
        const health = await this.connect.waitHealthy(120_000);
        log(
          `connect: Kafka Connect ${health.version} up in ${((Date.now() - started) / 1000).toFixed(1)} s, plugins ${health.plugins.map((p) => `${p.class} ${p.version}`).join(', ')}`,
        );
      } else {
        await this.connect.waitHealthy(60_000);
        log(`connect: already running on ${this.connect.url}`);
      }
    }
    return this.status();
  }

  async down(log: (line: string) => void): Promise<void> {
    // Connect first: it would otherwise spin on a broker that is going away.
    if (this.connect !== undefined) {
      log('connect: stopping');
      await this.connect.stop();
    }
    // The standby first: it would otherwise retry its primary until it goes.
    for (const server of [...(this.standby === undefined ? [] : [this.standby]), ...this.servers]) {
      log(`${server.spec.name}: stopping`);
      await server.stop();
    }
    log('kafka: stopping');
    await this.broker.stop();
  }

  /** Stops everything and deletes all data (servers' folders and the broker's log). */
  async destroy(log: (line: string) => void): Promise<void> {
    await this.down(log);
    rmSync(serverDataRoot(this.options.stateDir), { recursive: true, force: true });
    rmSync(this.options.stateDir, { recursive: true, force: true });
  }

  async status(): Promise<StackStatus> {
    const nodes = await Promise.all(
      this.servers.map(async (server) => {
        const version = await server.version();
        return {
          name: server.spec.name,
          url: server.url,
          port: server.spec.port,
          running: version !== undefined,
          ...(version === undefined ? {} : { version }),
          log: server.logFile,
        };
      }),
    );
    const pid = this.broker.pid();
    return {
      stateDir: this.options.stateDir,
      pgMajor: this.options.pgMajor,
      nodes,
      kafka: {
        brokers: [this.broker.bootstrap],
        ...(this.options.kafkaProxiedPort === undefined
          ? {}
          : {
              proxied: {
                listener: this.options.kafkaProxiedPort,
                advertised: this.options.kafkaProxiedPort + 1,
              },
            }),
        running: pid !== undefined,
        ...(pid === undefined ? {} : { pid }),
        log: this.broker.logFile,
      },
      ...(this.standby === undefined ? {} : { standby: await this.#standbyStatus(this.standby) }),
      ...(this.connect === undefined ? {} : { connect: await this.#connectStatus(this.connect) }),
      ...this.#secureStatus(),
    };
  }

  #secureStatus(): Pick<StackStatus, 'secure'> {
    const secure = this.broker.spec.secure;
    if (secure === undefined) return {};
    const c = secure.credentials;
    return {
      secure: {
        caFile: secure.tls.caFile,
        pg: { group: TLS_GROUP, user: c.pgUser, password: c.pgPassword },
        kafka: {
          brokers: [`127.0.0.1:${secure.port}`],
          mechanism: 'scram-sha-256',
          username: c.kafkaUser,
          password: c.kafkaPassword,
        },
      },
    };
  }

  async #standbyStatus(standby: PostgresServer): Promise<NonNullable<StackStatus['standby']>> {
    const version = await standby.version();
    return {
      url: standby.url,
      port: standby.spec.port,
      running: version !== undefined,
      ...(version === undefined ? {} : { version }),
      log: standby.logFile,
    };
  }

  async #connectStatus(connect: KafkaConnect): Promise<NonNullable<StackStatus['connect']>> {
    const pid = connect.pid();
    const base = { url: connect.url, log: connect.logFile };
    if (pid === undefined) return { ...base, running: false };
    const health = await connect.health().catch(() => undefined);
    if (health === undefined) return { ...base, running: false, pid };
    return {
      ...base,
      running: true,
      pid,
      version: health.version,
      plugins: health.plugins.map((p) => ({ class: p.class, version: p.version })),
    };
  }

  /**
   * A part that already runs keeps its port until it is stopped: asked for another one, `up` refuses
   * with the fix rather than start the rest around it (a stopped part starts on the port asked for).
   */
  #assertPortsApply(): void {
    const moved: string[] = [];
    for (const server of [...this.servers, ...(this.standby === undefined ? [] : [this.standby])]) {
      const running = server.runningPort();
      if (running !== undefined && running !== server.spec.port)
        moved.push(`${server.spec.name} runs on ${running}, not ${server.spec.port}`);
    }
    const saved = DevStack.fromStateDir(this.options.stateDir)?.options;
    if (saved !== undefined && this.broker.pid() !== undefined) {
      if (saved.kafkaPort !== this.options.kafkaPort)
        moved.push(`Kafka runs on ${saved.kafkaPort}, not ${this.options.kafkaPort}`);
      if (saved.kafkaControllerPort !== this.options.kafkaControllerPort)
        moved.push(
          `the Kafka controller runs on ${saved.kafkaControllerPort}, not ${this.options.kafkaControllerPort}`,
        );
    }
    if (moved.length === 0) return;
    throw new FatalError(`the stack in ${this.options.stateDir} runs on other ports: ${moved.join('; ')}`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `run 'pgbisync dev down --state-dir ${this.options.stateDir}' first (the data stays) and 'dev up' again with the new ports, or leave the port flags out to keep the running ones`,
    });
  }

  /** A state folder already holding a stack of another major cannot be reused silently. */
  #assertSameShape(): void {
    const saved = DevStack.fromStateDir(this.options.stateDir);
    if (saved !== undefined && (saved.options.secure === true) !== (this.options.secure === true)) {
      throw new FatalError(
        `the stack in ${this.options.stateDir} was made ${saved.options.secure === true ? 'with' : 'without'} --secure`,
        {
          code: ErrorCode.CONFIG_INVALID,
          hint: `run 'pgbisync dev down --destroy' first, or use another --state-dir`,
        },
      );
    }
    if (saved !== undefined && saved.options.pgMajor !== this.options.pgMajor) {
      throw new FatalError(
        `the stack in ${this.options.stateDir} runs PostgreSQL ${saved.options.pgMajor}, not ${this.options.pgMajor}`,
        {
          code: ErrorCode.CONFIG_INVALID,
          hint: `run 'pgbisync dev down --destroy' first, or use another --state-dir`,
        },
      );
    }
  }
}
