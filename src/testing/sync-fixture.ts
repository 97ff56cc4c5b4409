/**
 * A two-node sync over a test's own databases: config for them (nodes named after the database so the
 * test database's cleanup finds slots and origins), and helpers to run the sync in-process and wait for
 * a condition.
 */
import { randomUUID } from 'node:crypto';
import { parseConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { SyncRunner } from '../daemon/sync-runner.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import type { InRecord } from '../kafka/records.ts';
import { createLogger } from '../observability/logger.ts';
import { Metrics } from '../observability/metrics.ts';
import { resolveTables } from '../operate/sync-plan.ts';
import type { TestDatabases } from './test-databases.ts';
import { testEnv } from './test-env.ts';

export function syncConfig(dbs: TestDatabases, tables: readonly string[], extraYaml = ''): Config {
  const yaml = `
kafka:
  brokers: [${testEnv.kafkaBrokers().join(', ')}]
  topicPrefix: test.${dbs.name}
nodes:
  - { name: ${dbs.name}_a, url: "${dbs.db1}" }
  - { name: ${dbs.name}_b, url: "${dbs.db2}" }
tables: [${tables.join(', ')}]
apply: { maxWaitMs: 10 }
${extraYaml}`;
  return parseConfig(yaml, 'test config');
}

export interface RunningSync extends AsyncDisposable {
  readonly runner: SyncRunner;
  readonly metrics: Metrics;
  /** Stops the sync and waits for it; rejects with the run's failure if it failed. */
  stop(): Promise<void>;
}

export async function startSync(config: Config): Promise<RunningSync> {
  const tables = await resolveTables(config);
  const metrics = new Metrics();
  const log = createLogger(process.env.PGBISYNC_TEST_LOG_LEVEL ?? 'warn');
  const runner = new SyncRunner({ config, tables, log, metrics });
  const controller = new AbortController();
  const done = runner.run(controller.signal);
  let failure: unknown;
  done.catch((error: unknown) => {
    failure = error;
    // Shown at once: a test waiting for rows would otherwise only report its own timeout.
    log.error({ err: error }, 'sync failed');
  });
  const stop = async () => {
    controller.abort();
    await done;
  };
  return {
    runner,
    metrics,
    stop,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await done.catch(() => undefined);
      if (failure !== undefined) throw failure;
    },
  };
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Rows of a table as sorted JSON text, for comparing nodes independently of pgbisync's code. */
export async function tableRows(
  sql: (text: string) => Promise<{ rows: { r: string }[] }>,
  table: string,
): Promise<string[]> {
  // The alias must not be a column name: to_jsonb(t) of a table with a column t is that column alone.
  const res = await sql(`SELECT to_jsonb(pgbisync_row.*)::text AS r FROM ${table} pgbisync_row ORDER BY 1`);
  return res.rows.map((x) => x.r);
}

/**
 * Reads `topic` from its beginning until `enough(records)` says so or `timeoutMs` passed, and returns what
 * it read (the caller asserts on it: a timeout is not an error here).
 */
export async function readTopic(
  config: Config,
  topic: string,
  enough: (records: readonly InRecord[]) => boolean,
  timeoutMs = 20_000,
): Promise<InRecord[]> {
  const records: InRecord[] = [];
  const consumer = new KafkaConsumer({
    ...kafkaOptions(config, 'test-reader'),
    groupId: `test-reader-${randomUUID().slice(0, 8)}`,
    topics: [topic],
    startOffsets: [],
    maxWaitMs: 100,
  });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    for await (const batch of consumer.batches(controller.signal)) {
      records.push(...batch);
      if (enough(records)) break;
    }
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  return records;
}

/** Waits until every node's capture finished its initial snapshot: writes from then on are streamed. */
export async function waitForStreaming(
  config: Config,
  sqls: readonly ((text: string, values?: unknown[]) => Promise<{ rowCount: number | null }>)[],
): Promise<void> {
  for (const [i, sql] of sqls.entries()) {
    const node = config.nodes[i]!.name;
    await waitFor(`the initial snapshot of ${node}`, async () => {
      const r = await sql(
        'SELECT 1 FROM pgbisync.capture_state WHERE node = $1 AND snapshot_done_at IS NOT NULL',
        [node],
      );
      return r.rowCount === 1;
    });
  }
}
