/**
 * PostgreSQL's slot-creation bug (./decode-failure.ts, isSlotCreationBug): a TRUNCATE that commits while
 * the capture's slot is being created, with an older transaction still open when the creation moves on,
 * is missing from the slot's historic catalog; a write to the truncated table's new file then fails to
 * decode on every attempt ("could not map filenumber ... to relation OID"). Made here on a real server
 * with the sequence of the torture test's failure (seed 733001; any table truncated, synced or not). The
 * slot confirmed nothing since its creation, so the capture must replace it (a new slot, its tables
 * copied again) and lose nothing, instead of restarting forever on the same error.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import type { SyncRunner } from '../daemon/sync-runner.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const captureOf = (runner: SyncRunner, node: string) => runner.states.get(`capture ${node}`);

test('a slot poisoned by a TRUNCATE committed during its creation is replaced; nothing is lost', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(`${ddl}; CREATE TABLE public.scratch (id int PRIMARY KEY)`);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.items']);
  const [a] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  await dbs.sql1("INSERT INTO items VALUES (1, 'before')");
  const session = async () => {
    const c = new pg.Client({ connectionString: dbs.db1 });
    await c.connect();
    return c;
  };
  const xidOf = async (c: pg.Client) =>
    (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
  /** Waits until a's capture, creating its slot, waits for transaction `xid` to end. */
  const creationWaitsFor = (xid: string) =>
    waitFor(`the slot creation waiting for ${xid}`, async () => {
      const r = await dbs.sql1(
        `SELECT 1 FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
          WHERE s.application_name = $1 AND l.locktype = 'transactionid' AND NOT l.granted
            AND l.transactionid::text = $2`,
        [`pgbisync-capture-${a}`, xid],
      );
      return r.rowCount === 1;
    });
  const [older, spanning, writer] = [await session(), await session(), await session()];
  try {
    // A transaction open before the slot's creation starts: the creation waits for it.
    await older.query('BEGIN');
    const olderXid = await xidOf(older);
    await using sync = await startSync(config);
    await creationWaitsFor(olderXid);
    // One that begins now and stays open past that wait; a TRUNCATE commits meanwhile.
    await spanning.query('BEGIN');
    const spanningXid = await xidOf(spanning);
    await dbs.sql1('TRUNCATE scratch');
    await older.query('COMMIT');
    await creationWaitsFor(spanningXid);
    // A write to the truncated table's new file, begun before the slot is consistent, committed after.
    await writer.query('BEGIN');
    await writer.query('INSERT INTO scratch VALUES (1)');
    await writer.query("INSERT INTO items VALUES (2, 'poison')");
    await spanning.query('COMMIT');
    const created = async () =>
      (await dbs.sql1('SELECT consistent_lsn::text AS lsn FROM pgbisync.capture_state WHERE node = $1', [a]))
        .rows[0]?.lsn as string | undefined;
    await waitFor('the slot created', async () => (await created()) !== undefined);
    const first = await created();
    await writer.query('COMMIT');
    await dbs.sql1("INSERT INTO items VALUES (3, 'after')");

    // The slot cannot decode the write: the capture replaces it and copies again; every row arrives.
    await waitFor(
      `every row on b (capture of a: ${JSON.stringify(captureOf(sync.runner, a))})`,
      async () =>
        JSON.stringify(await tableRows(dbs.sql1, 'items')) ===
        JSON.stringify(await tableRows(dbs.sql2, 'items')),
      90_000,
    );
    assert.equal((await dbs.sql2('SELECT count(*)::int AS n FROM items')).rows[0].n, 3);
    assert.notEqual(await created(), first, 'a new slot replaced the poisoned one');
    await waitFor('a streams from the new slot', async () => captureOf(sync.runner, a)?.state === 'running');
    await dbs.sql1("INSERT INTO items VALUES (4, 'new slot')");
    await waitFor(
      'row 4 on b',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 4')).rowCount === 1,
    );
    await sync.stop();
  } finally {
    for (const c of [older, spanning, writer]) await c.end().catch(() => undefined);
  }
  await teardown(config, { keepTopics: false });
});
