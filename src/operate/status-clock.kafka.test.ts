/**
 * Clock skew in `status` and the daemon's gauge (../conflicts/clock-skew.ts): every direction carries
 * the skew between its source's and its target's server clocks, and a warning naming the limit when it
 * is over conflicts.maxClockSkewMs. The test servers share this host's clock, so the skew is near 0: it
 * passes the default limit and fails a limit of 0 (unless it measures exactly 0: then it is read again).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../observability/logger.ts';
import { Metrics } from '../observability/metrics.ts';
import { syncConfig } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { sampleLag } from './lag-sampler.ts';
import { readStatus } from './status.ts';

test('status reports each direction clock skew and warns over conflicts.maxClockSkewMs; run exports it', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2]) await sql('CREATE TABLE public.t (id int PRIMARY KEY)');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  const within = await readStatus(syncConfig(dbs, ['public.t']));
  assert.deepEqual(
    within.directions.map((d) => `${d.source}->${d.target}`),
    [`${a}->${b}`, `${b}->${a}`],
  );
  for (const d of within.directions) {
    assert.ok(Math.abs(d.clockSkewMs) < 1_000, `${d.source}->${d.target}: ${d.clockSkewMs}`);
    assert.deepEqual(d.warnings, []);
  }
  const [ab, ba] = within.directions;
  assert.ok(Math.abs(ab!.clockSkewMs + ba!.clockSkewMs) < 100, 'one direction sees the other skew negated');

  const strict = syncConfig(dbs, ['public.t'], 'conflicts: { maxClockSkewMs: 0 }');
  // Measured on one host the skew can come out as exactly 0, which no limit is below: read again then
  // (CI met it once).
  let over = await readStatus(strict);
  for (let i = 0; i < 20 && over.directions.some((d) => d.clockSkewMs === 0); i++)
    over = await readStatus(strict);
  for (const d of over.directions) {
    assert.equal(d.warnings.length, 1, d.warnings.join('; '));
    assert.match(
      d.warnings[0]!,
      new RegExp(
        `^clock of ${d.source} is \\d+ ms (ahead of|behind) ${d.target}'s \\(over conflicts\\.maxClockSkewMs=0\\).*fix: synchronize the nodes' clocks`,
      ),
    );
  }

  // run's sampler exports the skew per direction.
  const metrics = new Metrics();
  const controller = new AbortController();
  const sampling = sampleLag(strict, metrics, createLogger('silent'), controller.signal, 60_000);
  const text = async () => await metrics.registry.getSingleMetricAsString('pgbisync_clock_skew_seconds');
  for (let i = 0; i < 100 && !(await text()).includes(`direction="${b}->${a}"`); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  controller.abort();
  await sampling;
  for (const direction of [`${a}->${b}`, `${b}->${a}`]) {
    assert.match(
      await text(),
      new RegExp(`pgbisync_clock_skew_seconds\\{direction="${direction}"\\} -?[0-9.e-]+`),
    );
  }
});
