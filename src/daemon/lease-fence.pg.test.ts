/**
 * A capture that loses its lease (PGB5003: frozen, or cut off from its node, while another instance
 * takes it over) must not send what it still holds: the successor may be streaming the slot already,
 * and those records would land amid its own. Before, the stopping capture waited for every queued send
 * to be acknowledged. Real PostgreSQL; the broker is one nobody answers at, so the capture's sends stay
 * queued (a stopped capture that waited for them would still be waiting).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { resolveTables } from '../operate/sync-plan.ts';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { type ComponentReport, runComponent } from './components.ts';

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
