/**
 * The seed stack as a reference: the real Debezium PostgreSQL connector (source, on db1) and the real
 * Debezium JDBC sink connector (into db2) on the bench stack's Kafka Connect worker (`dev up --connect`),
 * registered through Connect's REST API. Source: pgoutput, a filtered publication over the bench tables,
 * `snapshot.mode=initial` (the tables are empty when it starts), one topic per table
 * (`<prefix>.public.<table>`, created here with one partition, as the broker does not auto-create
 * topics). Sink: upsert mode, deletes enabled, key from the record key, `batch.size` 1000 (with the sink
 * consumer's `max.poll.records` raised to 1000, or batches stop at Kafka's default 500), no schema
 * evolution (the tables exist). Every other setting is the connectors' default.
 *
 * start() returns once both connectors and their tasks report RUNNING; the scenario then waits for a
 * marker to cross and for the warm-up before any clock starts, so JVM start-up, registration and
 * Debezium's snapshot of the empty tables stay out of the measured phases.
 *
 * The sink applies each topic (table) on its own, so the target may show a marker before earlier rows
 * of other tables: `keepsCommitOrder` is false and the workload also waits for each table's last row.
 *
 * CPU counted: the Connect worker's JVM (both connectors run in it), the Kafka broker, and the PostgreSQL
 * backends the connectors use (Debezium's walsender and queries on db1, the sink's sessions on db2).
 * Memory: the JVM's peak RSS (VmHWM), read as pgbisync's is. The worker runs with the heap `dev up
 * --connect` gives it (512 MiB).
 */
import type pg from 'pg';
import { ConnectClient, connectorFailure, databaseParts } from '../src/dev/connect-client.ts';
import {
  DEBEZIUM_JDBC_VERSION,
  DEBEZIUM_VERSION,
  JDBC_SINK_CONNECTOR_CLASS,
  POSTGRES_CONNECTOR_CLASS,
} from '../src/dev/kafka-connect.ts';
import { isProcessAlive } from '../src/dev/process-tools.ts';
import { KafkaAdmin } from '../src/kafka/admin.ts';
import { connect, sleep } from './db.ts';
import { ProcessGroup } from './proc-stats.ts';
import type { CpuBreakdown, ReplicationFigures, ReplicationUnderTest } from './replication.ts';

const RUNNING_TIMEOUT_MS = 120_000;
const DELETE_TIMEOUT_MS = 30_000;
/** Connector status is read at most this often (each read is a REST call into the measured JVM). */
const STATUS_INTERVAL_MS = 1_000;

export interface DebeziumOptions {
  /** Bench database URLs of the source (db1) and target (db2). */
  readonly sourceUrl: string;
  readonly targetUrl: string;
  /** Tables, `schema.table`. */
  readonly tables: readonly string[];
  readonly brokers: readonly string[];
  readonly brokerPid: number | undefined;
  /** Kafka Connect's REST API and the worker's pid. */
  readonly connectUrl: string;
  readonly connectPid: number;
}

export class DebeziumPipeline implements ReplicationUnderTest {
  readonly label = `Debezium ${DEBEZIUM_VERSION} + JDBC sink ${DEBEZIUM_JDBC_VERSION}`;
  readonly keepsCommitOrder = false;
  readonly #o: DebeziumOptions;
  readonly #prefix = `dbzbench_${Date.now().toString(36)}`;
  readonly #jvm = new ProcessGroup();
  readonly #kafka = new ProcessGroup();
  readonly #backends = new ProcessGroup();
  readonly #failure = Promise.withResolvers<never>();
  readonly #admin: KafkaAdmin;
  readonly #connect: ConnectClient;
  #registered: string[] = [];
  #admins: pg.Client[] = [];
  #lastStatusCheck = 0;
  #failed = false;

  constructor(options: DebeziumOptions) {
    this.#o = options;
    this.#admin = new KafkaAdmin({ brokers: options.brokers, clientId: 'pgbisync-bench-debezium' });
    this.#connect = new ConnectClient(options.connectUrl);
    this.#failure.promise.catch(() => undefined);
  }

  get failure(): Promise<never> {
    return this.#failure.promise;
  }

  get #topics(): string[] {
    return this.#o.tables.map((t) => `${this.#prefix}.${t}`);
  }

  get #sourceName(): string {
    return `${this.#prefix}_source`;
  }

  get #sinkName(): string {
    return `${this.#prefix}_sink`;
  }

  async start(): Promise<void> {
    this.#admins = [await connect(this.#o.sourceUrl), await connect(this.#o.targetUrl)];
    if (!isProcessAlive(this.#o.connectPid)) {
      throw new Error(`the Kafka Connect worker (pid ${this.#o.connectPid}) is not running`);
    }
    this.#jvm.add([this.#o.connectPid]);
    if (this.#o.brokerPid !== undefined) this.#kafka.add([this.#o.brokerPid]);
    await this.#admin.createTopics(
      this.#topics.map((name) => ({ name, partitions: 1, replicationFactor: 1, configs: {} })),
    );
    const src = databaseParts(this.#o.sourceUrl);
    await this.#register(this.#sourceName, {
      'connector.class': POSTGRES_CONNECTOR_CLASS,
      'tasks.max': '1',
      'database.hostname': src.host,
      'database.port': src.port,
      'database.user': src.user,
      'database.password': src.password,
      'database.dbname': src.database,
      'topic.prefix': this.#prefix,
      'plugin.name': 'pgoutput',
      'slot.name': this.#prefix,
      'publication.name': this.#prefix,
      'publication.autocreate.mode': 'filtered',
      'table.include.list': this.#o.tables.join(','),
      'snapshot.mode': 'initial',
    });
    const dst = databaseParts(this.#o.targetUrl);
    await this.#register(this.#sinkName, {
      'connector.class': JDBC_SINK_CONNECTOR_CLASS,
      'tasks.max': '1',
      topics: this.#topics.join(','),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the sink's own placeholders
      'collection.name.format': '${source.schema}.${source.table}',
      // stringtype=unspecified as docs/interop.md explains (not needed by the bench tables' types).
      'connection.url': `jdbc:postgresql://${dst.host}:${dst.port}/${dst.database}?stringtype=unspecified`,
      'connection.username': dst.user,
      'connection.password': dst.password,
      'insert.mode': 'upsert',
      'delete.enabled': 'true',
      'primary.key.mode': 'record_key',
      'schema.evolution': 'none',
      'batch.size': '1000',
      // The sink gets at most max.poll.records (Kafka's default 500) per put(): batches of 1000 need more.
      'consumer.override.max.poll.records': '1000',
    });
  }

  async #register(name: string, config: Record<string, string>): Promise<void> {
    await this.#connect.register(name, config, RUNNING_TIMEOUT_MS);
    this.#registered.push(name);
  }

  /** Rejects `failure` when a connector or task failed (the sink refusing a row, the source losing its slot). */
  async #checkConnectors(): Promise<void> {
    if (this.#failed || performance.now() - this.#lastStatusCheck < STATUS_INTERVAL_MS) return;
    this.#lastStatusCheck = performance.now();
    if (!isProcessAlive(this.#o.connectPid)) {
      this.#failed = true;
      this.#failure.reject(new Error(`the Kafka Connect worker (pid ${this.#o.connectPid}) exited`));
      return;
    }
    for (const name of this.#registered) {
      const s = await this.#connect.status(name);
      const failed = s === undefined ? `connector ${name} disappeared` : connectorFailure(name, s);
      if (failed !== undefined) {
        this.#failed = true;
        this.#failure.reject(new Error(failed));
        return;
      }
    }
  }

  /** Adds the connectors' PostgreSQL backends (every session on a bench database but the bench's own). */
  async #findBackends(): Promise<void> {
    for (const admin of this.#admins) {
      const r = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND application_name <> 'bench-client' AND pid <> pg_backend_pid()`,
      );
      this.#backends.add(r.rows.map((row) => row.pid));
    }
  }

  async poll(): Promise<void> {
    await this.#findBackends();
    this.#jvm.poll();
    this.#kafka.poll();
    this.#backends.poll();
    await this.#checkConnectors();
  }

  cpu(): CpuBreakdown {
    return {
      connect: this.#jvm.cpuSeconds(),
      kafka: this.#kafka.cpuSeconds(),
      postgres: this.#backends.cpuSeconds(),
    };
  }

  async stop(): Promise<ReplicationFigures> {
    if (this.#admins.length > 0) await this.poll().catch(() => undefined);
    const figures = { cpu: this.cpu(), peakRssMb: this.#jvm.maxPeakRssMb };
    try {
      for (const name of this.#registered.reverse()) await this.#connect.remove(name, DELETE_TIMEOUT_MS);
    } catch (error) {
      // A dead worker runs no connector; its slot is dropped below once inactive.
      if (isProcessAlive(this.#o.connectPid)) throw error;
    }
    const source = this.#admins[0];
    if (source !== undefined) {
      // The stopped task releases its slot asynchronously; the next scenario recreates the database anyway.
      for (let i = 0; i < 100; i++) {
        const r = await source.query<{ active: boolean }>(
          'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
          [this.#prefix],
        );
        if (r.rowCount === 0) break;
        if (!r.rows[0]!.active) {
          await source.query('SELECT pg_drop_replication_slot($1)', [this.#prefix]);
          break;
        }
        await sleep(100);
      }
    }
    await Promise.all(this.#admins.map((c) => c.end()));
    await this.#admin.deleteTopics(this.#topics).catch(() => undefined);
    await this.#admin.close();
    return figures;
  }
}
