/**
 * A capture that loses its lease (PGB5003: frozen, or cut off from its node, while another instance
 * takes it over) must not send anything more: the successor may be streaming the slot already, and
 * those records would land amid its own. Real PostgreSQL and Kafka.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { serverName } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { resolveTables } from '../operate/sync-plan.ts';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import { sleep } from '../runtime/sleep.ts';
import { readTopic, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { type ComponentReport, runComponent } from './components.ts';

// Before, the stopping capture waited for every queued send to be acknowledged. Here the broker is one
// nobody answers at, so the capture's sends stay queued: one that waited for them would still be waiting.
test('a capture that lost its lease stops at once and sends nothing it still held', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.t (id int PRIMARY KEY, v text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1(`INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g`);
  const config = syncConfig(dbs, ['public.t']);
  await setup(config);
  try {
    // Nothing listens on port 9 (discard): every send waits for a broker.
    const cut = { ...config, kafka: { ...config.kafka, brokers: ['127.0.0.1:9'] } };
    const tables = await resolveTables(config);
    const reports: ComponentReport[] = [];
    const controller = new AbortController();
    const node = config.nodes[0]!.name;
    const run = runComponent(
      { kind: 'capture', node },
      { config: cut, tables, report: (r) => reports.push(r), signal: controller.signal },
    );
    await waitFor('the copy reading', async () =>
      reports.some((r) => r.kind === 'capture' && r.event.kind === 'snapshot'),
    );
    controller.abort(
      new RetryableError(`lost the lease of capture ${node}`, { code: ErrorCode.OWNERSHIP_LOST }),
    );
    const stopping = performance.now();
    await run.catch(() => undefined);
    const ms = performance.now() - stopping;
    assert.ok(ms < 3_000, `stopped ${Math.round(ms)} ms after losing its lease`);
  } finally {
    await teardown(config, { keepTopics: false });
  }
});

/** Keeps this thread from running for `ms`, as SIGSTOP would. */
function freeze(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

test('a capture whose process was stalled long enough to lose its lease sends nothing on waking', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.t (id int PRIMARY KEY, v text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.t']);
  await setup(config);
  const writer = new pg.Client({ connectionString: dbs.db1 });
  await writer.connect();
  const tables = await resolveTables(config);
  const reports: ComponentReport[] = [];
  const controller = new AbortController();
  const node = config.nodes[0]!.name;
  const ended = runComponent(
    { kind: 'capture', node },
    { config, tables, report: (r) => reports.push(r), signal: controller.signal },
  ).then(
    () => undefined,
    (error: unknown) => error,
  );
  try {
    await waitFor('the capture streaming', async () =>
      reports.some((r) => r.kind === 'capture' && r.event.kind === 'streaming'),
    );
    // A row committed while this process cannot run (the statement is on its way before the freeze), as
    // during a SIGSTOP: on waking, the capture reads it, before or after this thread's timers run.
    const insert = writer.query("SELECT pg_sleep(0.5); INSERT INTO t VALUES (1, 'while frozen')");
    freeze(5_000);
    await insert;
    // And one after waking: whichever the capture reads first, it sends neither.
    await writer.query("INSERT INTO t VALUES (2, 'after waking')");
    const mark = reports.length;
    const error = await Promise.race([ended, sleep(20_000).then(() => 'still running 20 s after waking')]);
    assert.ok(
      error instanceof RetryableError && error.code === ErrorCode.OWNERSHIP_LOST,
      `the capture ended with ${String(error)} (its reports since: ${reports
        .slice(mark)
        .map((r) => (r.kind === 'capture' ? r.event.kind : r.kind))
        .join(', ')})`,
    );
    assert.match(error.message, /did not run for \d+ ms/);
    const topic = serverName(config, node);
    const records = await readTopic(config, topic, () => false, 2_000);
    assert.deepEqual(
      records.filter((r) => /while frozen|after waking/.test(r.value?.toString() ?? '')),
      [],
      'the rows were not sent',
    );
  } finally {
    controller.abort();
    await ended;
    await writer.end();
    await teardown(config, { keepTopics: false });
  }
});
