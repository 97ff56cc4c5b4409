/**
 * The dev stack's Apache Kafka broker: real release jars from Maven Central (fetched once into the cache
 * with `mvn dependency:copy-dependencies` from dev/kafka/pom.xml), KRaft combined broker+controller,
 * storage formatted with the storage tool's main class, started with `kafka.Kafka` and a bounded heap.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { fetchMavenDependencies, JavaProcess, jvmFlags, requireJava } from './java-service.ts';
import { cacheDir, PROJECT_ROOT } from './paths.ts';
import { isPortFree, isProcessAlive, run, tailFile, waitFor } from './process-tools.ts';
import type { SecureCredentials, TlsMaterial } from './tls-material.ts';

/** Kafka release used by the dev stack; keep in step with dev/kafka/pom.xml. */
export const KAFKA_VERSION = '4.1.1';
const POM = join(PROJECT_ROOT, 'dev', 'kafka', 'pom.xml');

export interface KafkaBrokerSpec {
  readonly port: number;
  readonly controllerPort: number;
  /** Folder for server.properties, data/ and broker.log. */
  readonly dir: string;
  readonly heapMb: number;
  /**
   * `dev up --kafka-proxied-port`: a second plaintext listener on this port that advertises the port
   * after it, where a TCP proxy forwarding to it is expected: clients bootstrapped at the proxy stay on
   * it (the torture test injects network faults between the daemon and the broker there).
   */
  readonly proxiedPort?: number;
  /** `dev up --secure`: a SASL_SSL listener (SCRAM-SHA-256, this certificate) on `port` as well. */
  readonly secure?: {
    readonly port: number;
    readonly tls: TlsMaterial;
    readonly credentials: SecureCredentials;
  };
}

/** Fetches the broker's jars into the cache (once) and returns the folder holding them. */
export async function fetchKafkaJars(log: (line: string) => void): Promise<string> {
  const libs = join(cacheDir(), `kafka-${KAFKA_VERSION}`, 'libs');
  await fetchMavenDependencies(log, {
    what: `Apache Kafka ${KAFKA_VERSION} jars`,
    pom: POM,
    args: [`-Dkafka.version=${KAFKA_VERSION}`],
    dir: libs,
    marker: join(libs, '..', '.complete'),
    expect: (files) => files.some((f) => f.startsWith('kafka_2.13-')),
    expectName: `kafka_2.13-${KAFKA_VERSION}.jar`,
  });
  return libs;
}

export class KafkaBroker {
  readonly spec: KafkaBrokerSpec;
  readonly #process: JavaProcess;

  constructor(spec: KafkaBrokerSpec) {
    this.spec = spec;
    this.#process = new JavaProcess(spec.dir, 'broker', 'the Kafka broker');
  }

  get bootstrap(): string {
    return `127.0.0.1:${this.spec.port}`;
  }

  get logFile(): string {
    return this.#process.logFile;
  }

  /** Pid of the running broker, or undefined. */
  pid(): number | undefined {
    return this.#process.pid();
  }

  /** Where the SASL_SSL listener is, with --secure. */
  get secureBootstrap(): string | undefined {
    return this.spec.secure === undefined ? undefined : `127.0.0.1:${this.spec.secure.port}`;
  }

  /** The SASL_SSL listener's settings; its key and certificate in one PEM file (Kafka's PEM keystore). */
  #secureProperties(): string[] {
    const secure = this.spec.secure;
    if (secure === undefined) return [];
    const keystore = join(this.spec.dir, 'keystore.pem');
    writeFileSync(
      keystore,
      readFileSync(secure.tls.keyFile, 'utf8') + readFileSync(secure.tls.certFile, 'utf8'),
      {
        mode: 0o600,
      },
    );
    return [
      'sasl.enabled.mechanisms=SCRAM-SHA-256',
      'listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'ssl.keystore.type=PEM',
      `ssl.keystore.location=${keystore}`,
    ];
  }

  #properties(dataDir: string): string {
    const { port, controllerPort } = this.spec;
    const secure = this.spec.secure === undefined ? '' : `,SASL_SSL://127.0.0.1:${this.spec.secure.port}`;
    const proxied = this.spec.proxiedPort;
    const listen = proxied === undefined ? '' : `,PROXIED://127.0.0.1:${proxied}`;
    const advertise = proxied === undefined ? '' : `,PROXIED://127.0.0.1:${proxied + 1}`;
    return [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${port}${secure}${listen},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${port}${secure}${advertise}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,PROXIED:PLAINTEXT',
      ...this.#secureProperties(),
      `log.dirs=${dataDir}`,
      'num.partitions=1',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=4',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=4',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
      'log.flush.interval.messages=9223372036854775807',
      '',
    ].join('\n');
  }

  async start(libs: string): Promise<void> {
    if (this.pid() !== undefined) return;
    const java = requireJava();
    const dataDir = join(this.spec.dir, 'data');
    const props = join(this.spec.dir, 'server.properties');
    mkdirSync(this.spec.dir, { recursive: true });
    writeFileSync(props, this.#properties(dataDir));
    const classpath = `${libs}/*`;
    if (!existsSync(join(dataDir, 'meta.properties'))) {
      await run(
        java,
        // `--cluster-id=<id>` in one argument: an id starting with '-' (1 in 64) would otherwise be
        // taken for an option and the format refused (seen once in CI).
        [
          '-cp',
          classpath,
          'kafka.tools.StorageTool',
          'format',
          `--cluster-id=${clusterId()}`,
          '-c',
          props,
          // SCRAM users live in the metadata log: the listener's user is created with the storage.
          ...(this.spec.secure === undefined
            ? []
            : [
                '--add-scram',
                `SCRAM-SHA-256=[name=${this.spec.secure.credentials.kafkaUser},password=${this.spec.secure.credentials.kafkaPassword}]`,
              ]),
        ],
        {
          timeoutMs: 120_000,
        },
      ).catch((error: unknown) => {
        throw new FatalError('formatting the Kafka storage failed', {
          code: ErrorCode.SERVER_START_FAILED,
          cause: error,
        });
      });
    }
    const pid = this.#process.spawn([
      ...jvmFlags(this.spec.heapMb, 256),
      `-Dkafka.logs.dir=${this.spec.dir}`,
      '-cp',
      classpath,
      'kafka.Kafka',
      props,
    ]);
    const listening = await waitFor(
      async () =>
        !(
          (await isPortFree(this.spec.port)) ||
          (this.spec.secure !== undefined && (await isPortFree(this.spec.secure.port)))
        ) || !isProcessAlive(pid),
      90_000,
      250,
    );
    if (!listening || !isProcessAlive(pid)) {
      throw new FatalError(`the Kafka broker did not start listening on ${this.spec.port}`, {
        code: ErrorCode.SERVER_START_FAILED,
        hint: `its log ${this.logFile} ends with:\n${tailFile(this.logFile, 20)}`,
      });
    }
  }

  async stop(): Promise<void> {
    await this.#process.stop();
  }
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints). */
function clusterId(): string {
  return Buffer.from(randomUUID().replaceAll('-', ''), 'hex').toString('base64url');
}
