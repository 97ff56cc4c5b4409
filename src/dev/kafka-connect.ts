/**
 * The dev stack's Kafka Connect worker (distributed mode, as the seed runs it) with the Debezium
 * PostgreSQL source connector and the Debezium JDBC sink connector as plugins. Everything comes from
 * Maven Central, fetched once into the cache with `mvn dependency:copy-dependencies` from the poms in
 * dev/connect/: the worker's jars into one folder (its class path), each connector into a folder of its
 * own under the plugin path (Connect gives each plugin folder its own class loader).
 *
 * Versions: Debezium 3.6.1.Final is built against Kafka 4.3.0, so the worker is Connect 4.3.0 (it talks
 * to the stack's 4.1.1 broker like any client). The JDBC sink is 3.6.0.Final: Maven Central does not
 * serve debezium-connector-jdbc 3.6.1.Final (see dev/connect/debezium-jdbc.pom.xml).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { fetchMavenDependencies, JavaProcess, jvmFlags } from './java-service.ts';
import { cacheDir, PROJECT_ROOT } from './paths.ts';
import { sleep, tailFile } from './process-tools.ts';

/** Kafka Connect worker release; keep in step with dev/connect/runtime.pom.xml. */
export const CONNECT_VERSION = '4.3.0';
/** Debezium PostgreSQL connector release; keep in step with dev/connect/debezium-postgres.pom.xml. */
export const DEBEZIUM_VERSION = '3.6.1.Final';
/** Debezium JDBC sink release (3.6.1.Final is not served); keep in step with dev/connect/debezium-jdbc.pom.xml. */
export const DEBEZIUM_JDBC_VERSION = '3.6.0.Final';

export const POSTGRES_CONNECTOR_CLASS = 'io.debezium.connector.postgresql.PostgresConnector';
export const JDBC_SINK_CONNECTOR_CLASS = 'io.debezium.connector.jdbc.JdbcSinkConnector';

const POM_DIR = join(PROJECT_ROOT, 'dev', 'connect');

export interface ConnectJars {
  /** The worker's class path folder. */
  readonly libs: string;
  /** plugin.path: one sub-folder per connector. */
  readonly pluginPath: string;
}

/** Fetches the worker and both connectors into the cache (each once) and returns where they are. */
export async function fetchConnectJars(log: (line: string) => void): Promise<ConnectJars> {
  const libs = join(cacheDir(), `kafka-connect-${CONNECT_VERSION}`, 'libs');
  const pluginPath = join(cacheDir(), `connect-plugins-debezium-${DEBEZIUM_VERSION}`);
  await fetchInto(log, {
    what: `Kafka Connect ${CONNECT_VERSION}`,
    pom: 'runtime.pom.xml',
    properties: [`-Dkafka.version=${CONNECT_VERSION}`],
    dir: libs,
    expect: `connect-runtime-${CONNECT_VERSION}.jar`,
  });
  await fetchInto(log, {
    what: `Debezium PostgreSQL connector ${DEBEZIUM_VERSION}`,
    pom: 'debezium-postgres.pom.xml',
    properties: [`-Ddebezium.version=${DEBEZIUM_VERSION}`],
    dir: join(pluginPath, 'debezium-connector-postgres'),
    expect: `debezium-connector-postgres-${DEBEZIUM_VERSION}.jar`,
  });
  await fetchInto(log, {
    what: `Debezium JDBC sink connector ${DEBEZIUM_JDBC_VERSION}`,
    pom: 'debezium-jdbc.pom.xml',
    properties: [`-Ddebezium.jdbc.version=${DEBEZIUM_JDBC_VERSION}`],
    dir: join(pluginPath, 'debezium-connector-jdbc'),
    expect: `debezium-connector-jdbc-${DEBEZIUM_JDBC_VERSION}.jar`,
  });
  return { libs, pluginPath };
}

async function fetchInto(
  log: (line: string) => void,
  o: { what: string; pom: string; properties: string[]; dir: string; expect: string },
): Promise<void> {
  await fetchMavenDependencies(log, {
    what: o.what,
    pom: join(POM_DIR, o.pom),
    args: [
      ...o.properties,
      // A plugin must not carry the worker's own API (Connect loads it from the worker anyway), nor
      // Jackson's core: the worker's ServiceLoader finds its own Jackson modules (Blackbird), which
      // must implement the same Module class as the plugin sees ("BlackbirdModule not a subtype"
      // otherwise, seen with the JDBC sink). The worker ships the same Jackson release.
      ...(o.pom === 'runtime.pom.xml'
        ? []
        : [
            '-DexcludeGroupIds=org.apache.kafka,org.slf4j',
            '-DexcludeArtifactIds=jackson-core,jackson-databind,jackson-annotations',
          ]),
    ],
    dir: o.dir,
    // Bumped when what a folder must hold changes (v2: plugins without Jackson's core jars).
    marker: join(o.dir, '.complete-v2'),
    expect: (files) => files.includes(o.expect),
    expectName: o.expect,
  });
}

export interface KafkaConnectSpec {
  /** REST port (127.0.0.1). */
  readonly port: number;
  readonly bootstrap: string;
  /** Folder for worker.properties, connect.log and connect.pid. */
  readonly dir: string;
  readonly heapMb: number;
}

/** What GET / and GET /connector-plugins answered. */
export interface ConnectHealth {
  readonly version: string;
  readonly plugins: readonly { class: string; type: string; version: string }[];
}

export class KafkaConnect {
  readonly spec: KafkaConnectSpec;
  readonly #process: JavaProcess;

  constructor(spec: KafkaConnectSpec) {
    this.spec = spec;
    this.#process = new JavaProcess(spec.dir, 'connect', 'Kafka Connect');
  }

  /** The REST API's base URL. */
  get url(): string {
    return `http://127.0.0.1:${this.spec.port}`;
  }

  get logFile(): string {
    return this.#process.logFile;
  }

  /** Pid of the running worker, or undefined. */
  pid(): number | undefined {
    return this.#process.pid();
  }

  #properties(pluginPath: string): string {
    // Internal topics with replication factor 1 (one broker); JsonConverter with schemas, as pgbisync
    // writes and reads change events. Topic names carry the REST port so two stacks on one broker
    // would not share a cluster.
    const group = `pgbisync-dev-connect-${this.spec.port}`;
    return [
      `bootstrap.servers=${this.spec.bootstrap}`,
      `group.id=${group}`,
      'key.converter=org.apache.kafka.connect.json.JsonConverter',
      'value.converter=org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable=true',
      'value.converter.schemas.enable=true',
      `config.storage.topic=${group}-configs`,
      'config.storage.replication.factor=1',
      `offset.storage.topic=${group}-offsets`,
      'offset.storage.replication.factor=1',
      'offset.storage.partitions=1',
      `status.storage.topic=${group}-status`,
      'status.storage.replication.factor=1',
      'status.storage.partitions=1',
      'offset.flush.interval.ms=1000',
      `listeners=http://127.0.0.1:${this.spec.port}`,
      'rest.advertised.host.name=127.0.0.1',
      `rest.advertised.port=${this.spec.port}`,
      `plugin.path=${pluginPath}`,
      // Both Debezium jars list their plugins for the ServiceLoader: 7 s to start instead of 19 s
      // with a reflective scan of every jar.
      'plugin.discovery=service_load',
      '',
    ].join('\n');
  }

  async start(jars: ConnectJars): Promise<void> {
    if (this.pid() !== undefined) return;
    mkdirSync(this.spec.dir, { recursive: true });
    const props = join(this.spec.dir, 'worker.properties');
    writeFileSync(props, this.#properties(jars.pluginPath));
    this.#process.spawn([
      ...jvmFlags(this.spec.heapMb, 128),
      '-cp',
      `${jars.libs}/*`,
      'org.apache.kafka.connect.cli.ConnectDistributed',
      props,
    ]);
  }

  /**
   * Waits until the REST API answers and lists both Debezium connectors; throws with the log's tail
   * when it does not within `timeoutMs` or the worker died.
   */
  async waitHealthy(timeoutMs: number): Promise<ConnectHealth> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    /** The last failure of the REST API, while the worker runs. */
    let lastError: unknown;
    while (Date.now() < deadline) {
      const pid = this.pid();
      if (pid === undefined) {
        last = 'the worker process exited';
        lastError = undefined;
        break;
      }
      try {
        const health = await this.health();
        const missing = [POSTGRES_CONNECTOR_CLASS, JDBC_SINK_CONNECTOR_CLASS].filter(
          (c) => !health.plugins.some((p) => p.class === c),
        );
        if (missing.length === 0) return health;
        // Plugins are loaded before the REST server starts: a missing one will not appear later.
        throw new FatalError(`Kafka Connect at ${this.url} lists no plugin ${missing.join(', ')}`, {
          code: ErrorCode.SERVER_START_FAILED,
          hint: `check the plugin folders under the cache (delete one to fetch it again); ${this.logFile} ends with:\n${tailFile(this.logFile, 20)}`,
        });
      } catch (error) {
        if (error instanceof FatalError) throw error;
        last = 'its REST API failed';
        lastError = error;
      }
      await sleep(250);
    }
    throw new FatalError(`Kafka Connect did not pass its health check on ${this.url} (${last})`, {
      code: ErrorCode.SERVER_START_FAILED,
      hint: `its log ${this.logFile} ends with:\n${tailFile(this.logFile, 20)}`,
      cause: lastError,
    });
  }

  /** GET / and GET /connector-plugins; rejects when the REST API does not answer. */
  async health(): Promise<ConnectHealth> {
    const root = (await getJson(`${this.url}/`)) as { version?: unknown };
    const plugins = (await getJson(`${this.url}/connector-plugins`)) as ConnectHealth['plugins'];
    return { version: String(root.version), plugins };
  }

  async stop(): Promise<void> {
    await this.#process.stop();
  }
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.json();
}
