/**
 * Schema changes while syncing: `pgbisync ddl` adds a column on both nodes under two-way load (no
 * direction stays blocked, no row lost, recorded in pgbisync.ddl_log on both), refuses a rename with the
 * reason; schema.addMissingColumns adds a column made on one node by hand to the other when its first
 * event arrives (it blocked the direction until an operator added it).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, type FatalError } from '../runtime/errors.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { applyDdl } from './ddl.ts';
import { setup, teardown } from './setup.ts';
import { readStatus } from './status.ts';

test('ddl adds a column on every node under two-way load; no direction stays blocked', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2])
    await sql('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  await using sync = await startSync(config);
  await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
  let withNote = false;
  let stop = false;
  const load = (sql: typeof dbs.sql1, first: number) =>
    (async () => {
      for (let id = first; !stop; id++) {
        await (withNote
          ? sql("INSERT INTO items (id, v, note) VALUES ($1, 'x', 'after')", [id])
          : sql("INSERT INTO items (id, v) VALUES ($1, 'x')", [id]));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
  const loads = [load(dbs.sql1, 1), load(dbs.sql2, 1_000_000)];
  await new Promise((r) => setTimeout(r, 500));
  await assert.rejects(
    applyDdl(config, 'ALTER TABLE items RENAME COLUMN v TO w', { force: false, onProgress: () => {} }),
    (error: FatalError) =>
      error.code === ErrorCode.CONFIG_INVALID && /renaming a synced table or column/.test(error.message),
  );
  const lines: string[] = [];
  const result = await applyDdl(config, "ALTER TABLE items ADD COLUMN note text DEFAULT 'none'", {
    force: false,
    onProgress: (l) => lines.push(l),
  });
  assert.deepEqual(result.tables, ['public.items']);
  withNote = true;
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(loads);
  await waitFor(
    'both nodes equal',
    async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return x.length > 0 && JSON.stringify(x) === JSON.stringify(y);
    },
    60_000,
  );
  for (const sql of [dbs.sql1, dbs.sql2]) {
    const notes = await sql("SELECT count(*)::int AS n FROM items WHERE note = 'after'");
    assert.ok(notes.rows[0].n > 0, 'rows written with the new column crossed');
    const log = await sql('SELECT statement FROM pgbisync.ddl_log');
    assert.deepEqual(log.rows, [{ statement: "ALTER TABLE items ADD COLUMN note text DEFAULT 'none'" }]);
  }
  for (const [name, state] of sync.runner.states)
    assert.equal(state.state, 'running', `${name}: ${JSON.stringify(state)}`);
  await sync.stop();
  await teardown(config, { keepTopics: false });
});

test('schema.addMissingColumns adds a column made on one node to the other at its first event', async () => {
  await using dbs = await createTestDatabases();
  for (const sql of [dbs.sql1, dbs.sql2])
    await sql('CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)');
  const config = syncConfig(dbs, ['public.items'], 'schema: { addMissingColumns: true }');
  await setup(config);
  await using sync = await startSync(config);
  await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
  await dbs.sql1('ALTER TABLE items ADD COLUMN qty numeric(10,2)');
  // status warns of the drift, with the fix, without failing.
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  const drifted = await readStatus(config);
  const toB = drifted.directions.find((d) => d.source === a)!;
  assert.match(
    toB.warnings.join('\n'),
    new RegExp(
      `schema drift in public\\.items: column qty exists on ${a} but not on ${b}; fix: .*pgbisync ddl`,
    ),
  );
  assert.equal(toB.healthy, true);
  await dbs.sql1("INSERT INTO items VALUES (1, 'a', 12.5)");
  await waitFor('row 1 with its new column on b', async () => {
    const r = await dbs
      .sql2('SELECT qty::text AS q FROM items WHERE id = 1')
      .catch(() => ({ rows: [] as { q: string }[] }));
    return r.rows[0]?.q === '12.50';
  });
  const type = await dbs.sql2(
    "SELECT format_type(atttypid, atttypmod) AS t, attnotnull AS nn FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'qty'",
  );
  assert.deepEqual(type.rows[0], { t: 'numeric(10,2)', nn: false });
  const settled = await readStatus(config);
  assert.deepEqual(
    settled.directions.flatMap((d) => d.warnings.filter((w) => w.includes('schema drift'))),
    [],
  );
  await sync.stop();
  await teardown(config, { keepTopics: false });
});
