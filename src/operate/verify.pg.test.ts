/**
 * `pgbisync verify` and `--repair` on real PostgreSQL nodes, written to out of band (no sync running):
 * verify names exactly the differing keys, repair copies the last-writer-wins winner under the winner's
 * replication origin and commit time, and a second verify finds the tables identical.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { syncConfig } from '../testing/sync-fixture.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';
import { type TableComparison, type VerifyReport, verify } from './verify.ts';
import { repair } from './verify-repair.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

const ITEMS = `CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric(10,2), at timestamptz,
  tags text[], doc jsonb, ratio float8)`;
const FILL = `INSERT INTO public.items
  SELECT i, 'item ' || i, i * 1.25, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute',
         ARRAY['a', i::text], jsonb_build_object('n', i), i / 3.0
    FROM generate_series(2, 200, 2) i`;

async function both(dbs: TestDatabases, sql: string): Promise<void> {
  await dbs.sql1(sql);
  await dbs.sql2(sql);
}

/** Differing keys of one comparison as sorted "kind key" strings. */
function diffs(c: TableComparison | undefined): string[] {
  return (c?.keys ?? []).map((k) => `${k.kind} ${Object.values(k.key).join(',')}`).sort();
}

const byTable = (r: VerifyReport, table: string) => r.tables.find((t) => t.table === table);

test('identical tables verify ok, over many chunks', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, ITEMS);
  await both(dbs, FILL);
  const { report, differences } = await verify(syncConfig(dbs, ['public.items']), { chunkRows: 7 });
  const t = byTable(report, 'public.items')!;
  assert.equal(report.identical, true, JSON.stringify(report));
  assert.equal(t.referenceRows, 100);
  assert.equal(t.nodeRows, 100);
  assert.equal(t.chunks, 15);
  assert.equal(differences.length, 0);
});

test('nodes that sort keys differently (collation) still verify identical, and differences are exact', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.words (w text COLLATE "C" PRIMARY KEY, n int)');
  await dbs.sql2('CREATE TABLE public.words (w text COLLATE "und-x-icu" PRIMARY KEY, n int)');
  const fill = `INSERT INTO public.words SELECT x, length(x)
    FROM unnest(ARRAY['a', 'B', 'c', 'D', '_e', 'f1', 'F0', 'g', 'H', '_i', 'j', 'K']) x`;
  await both(dbs, fill);
  const config = syncConfig(dbs, ['public.words']);
  const same = await verify(config, { chunkRows: 3 });
  assert.equal(same.report.identical, true, JSON.stringify(same.report));
  await dbs.sql2("UPDATE public.words SET n = 0 WHERE w = '_e'");
  const differ = await verify(config, { chunkRows: 3 });
  assert.deepEqual(diffs(byTable(differ.report, 'public.words')), ['different _e']);
});

test('out-of-band writes are listed by key; --repair copies the winner and verify is then identical', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, ITEMS);
  await both(dbs, FILL);
  const a = `${dbs.name}_a`;
  const b = `${dbs.name}_b`;
  const config = syncConfig(dbs, ['public.items']);
  // A logical slot on each node that shows only local changes: repair writes must not appear in it.
  for (const sql of [dbs.sql1, dbs.sql2])
    await sql("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", [`${dbs.name}_probe`]);

  await dbs.sql2("UPDATE public.items SET name = 'changed on b' WHERE id = 6"); // different, b newer
  await dbs.sql2('DELETE FROM public.items WHERE id = 10'); // only on a; no tombstone: the row wins
  await dbs.sql2("INSERT INTO public.items (id, name) VALUES (51, 'new on b')"); // only on b, mid-range
  await dbs.sql2("INSERT INTO public.items (id, name) VALUES (1001, 'tail on b')"); // after a's last key
  await dbs.sql1("INSERT INTO public.items (id, name) VALUES (999, 'new on a')"); // only on a
  await dbs.sql1('UPDATE public.items SET price = 0 WHERE id = 100'); // different, a newer

  const first = await verify(config, { chunkRows: 10 });
  const t = byTable(first.report, 'public.items')!;
  assert.equal(first.report.identical, false);
  assert.deepEqual(diffs(t), [
    'different 100',
    'different 6',
    'only-on-node 1001',
    'only-on-node 51',
    'only-on-reference 10',
    'only-on-reference 999',
  ]);
  assert.deepEqual([t.onlyOnReference, t.onlyOnNode, t.different], [2, 2, 2]);

  const [repaired] = await repair(config, first.differences);
  assert.deepEqual(
    {
      toA: repaired?.copiedToReference,
      toB: repaired?.copiedToNode,
      delA: repaired?.deletedOnReference,
      delB: repaired?.deletedOnNode,
      unresolved: repaired?.unresolved,
    },
    { toA: 3, toB: 3, delA: 0, delB: 0, unresolved: 0 },
  );
  const second = await verify(config, { chunkRows: 10 });
  assert.equal(second.report.identical, true, JSON.stringify(second.report));

  // Winners: b's update of 6, a's row 10 (restored on b), a's update of 100.
  const row = async (sql: TestDatabases['sql1'], id: number) =>
    (
      await sql(
        `SELECT name, price::text, pg_xact_commit_timestamp(t.xmin)::text AS ts,
                (SELECT roname FROM pg_replication_origin o
                  WHERE o.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident) AS origin
           FROM public.items t WHERE id = $1`,
        [id],
      )
    ).rows[0] as { name: string; price: string | null; ts: string; origin: string | null };
  const [a6, b6] = [await row(dbs.sql1, 6), await row(dbs.sql2, 6)];
  assert.equal(a6.name, 'changed on b');
  assert.equal(a6.ts, b6.ts, 'the copy carries the winner commit time');
  assert.equal(a6.origin, `pgbisync_${b}@${a}`);
  assert.equal(b6.origin, null);
  const b10 = await row(dbs.sql2, 10);
  assert.equal(b10.name, 'item 10');
  assert.equal(b10.ts, (await row(dbs.sql1, 10)).ts);
  assert.equal(b10.origin, `pgbisync_${a}@${b}`);
  assert.equal((await row(dbs.sql2, 100)).price, '0.00');
  assert.equal((await row(dbs.sql1, 1001)).origin, `pgbisync_${b}@${a}`);

  // Local-only changes since the probe slots: the out-of-band writes, none of the repair writes. The
  // slot functions decode WAL up to the flushed position only, and the test servers commit
  // asynchronously: a synchronous commit that writes WAL (a transactional message, not a table change)
  // first flushes everything before it (seen in CI: 0 changes read on a).
  const local = async (sql: TestDatabases['sql1']) => {
    await sql(
      "SELECT set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, 'pgbisync-test', 'flush')",
    );
    return (
      await sql(
        `SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'only-local', '1', 'skip-empty-xacts', '1')
          WHERE data LIKE 'table public.items:%'`,
        [`${dbs.name}_probe`],
      )
    ).rows.length;
  };
  assert.equal(await local(dbs.sql1), 2, 'a: its own insert of 999 and update of 100');
  assert.equal(await local(dbs.sql2), 4, 'b: its own update, delete and two inserts');
});

test('a newer tombstone makes the delete win', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY, v text)');
  await both(dbs, "INSERT INTO public.t SELECT i, 'v' || i FROM generate_series(1, 30) i");
  // The delete trigger setup installs: it dates deletes in pgbisync.tombstones.
  for (const url of [dbs.db1, dbs.db2]) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await ensurePgbisyncSchema(c);
    await c.query(
      "CREATE TRIGGER pgbisync_tombstone AFTER DELETE ON public.t FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone('id')",
    );
    await c.end();
  }
  await dbs.sql2('DELETE FROM public.t WHERE id = 12');
  const config = syncConfig(dbs, ['public.t']);
  const first = await verify(config, { chunkRows: 8 });
  assert.deepEqual(diffs(byTable(first.report, 'public.t')), ['only-on-reference 12']);
  const [r] = await repair(config, first.differences);
  assert.equal(r?.deletedOnReference, 1);
  assert.equal(r?.copiedToNode, 0);
  assert.equal((await dbs.sql1('SELECT 1 FROM public.t WHERE id = 12')).rowCount, 0);
  // a's tombstone now carries b's delete time and origin.
  const tomb = await dbs.sql1(
    `SELECT (SELECT roname FROM pg_replication_origin o
              WHERE o.roident = (pg_xact_commit_timestamp_origin(b.xmin)).roident) AS origin
       FROM pgbisync.tombstones b WHERE table_name = 'public.t'`,
  );
  assert.equal(tomb.rows[0]?.origin, `pgbisync_${dbs.name}_b@${dbs.name}_a`);
  assert.equal((await verify(config, { chunkRows: 8 })).report.identical, true);
});

test('a newer TRUNCATE on one node makes an older row the other node holds alone go, and a newer one stay', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY, v text)');
  for (const url of [dbs.db1, dbs.db2]) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await ensurePgbisyncSchema(c);
    await c.query(
      'CREATE TRIGGER pgbisync_truncate AFTER TRUNCATE ON public.t FOR EACH STATEMENT EXECUTE FUNCTION pgbisync.record_truncate()',
    );
    await c.end();
  }
  // a holds 1 (written before b's truncate) and 3 (after it); b truncated in between and holds 2.
  await dbs.sql1("INSERT INTO public.t VALUES (1, 'old')");
  await dbs.sql2('TRUNCATE public.t');
  await dbs.sql2("INSERT INTO public.t VALUES (2, 'b')");
  await dbs.sql1("INSERT INTO public.t VALUES (3, 'new')");
  const config = syncConfig(dbs, ['public.t']);
  const first = await verify(config, { chunkRows: 8 });
  assert.deepEqual(diffs(byTable(first.report, 'public.t')).sort(), [
    'only-on-node 2',
    'only-on-reference 1',
    'only-on-reference 3',
  ]);
  await repair(config, first.differences);
  // Row 1 is older than b's truncate: deleted on a (it was copied to b: the truncate's tombstone was not
  // looked at). Row 3 is newer: copied to b.
  assert.deepEqual((await dbs.sql1('SELECT id FROM public.t ORDER BY id')).rows, [{ id: 2 }, { id: 3 }]);
  assert.deepEqual((await dbs.sql2('SELECT id FROM public.t ORDER BY id')).rows, [{ id: 2 }, { id: 3 }]);
  assert.equal((await verify(config, { chunkRows: 8 })).report.identical, true);
});

test('a trigger stamping rows on both nodes does not re-stamp the copies repair writes', async () => {
  await using dbs = await createTestDatabases();
  await both(
    dbs,
    `CREATE TABLE public.stamped (id int PRIMARY KEY, v int NOT NULL, updated_at timestamptz);
     CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
     CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON public.stamped FOR EACH ROW EXECUTE FUNCTION public.stamp()`,
  );
  await dbs.sql1('INSERT INTO public.stamped SELECT i, i FROM generate_series(1, 5) i');
  await dbs.sql2('INSERT INTO public.stamped SELECT i, i FROM generate_series(1, 5) i');
  await dbs.sql2('UPDATE public.stamped SET v = 0 WHERE id = 3');
  const config = syncConfig(dbs, ['public.stamped']);
  const first = await verify(config, { chunkRows: 10 });
  // Stamped on each node by its own clock: every row differs, b's are the later versions.
  assert.equal(diffs(byTable(first.report, 'public.stamped')).length, 5);
  const [r] = await repair(config, first.differences);
  assert.equal(r?.copiedToReference, 5);
  assert.equal(
    (await verify(config, { chunkRows: 10 })).report.identical,
    true,
    'the copies kept the stamps of b',
  );
});

test('a composite primary key, through the CLI: exit 1 listing keys, --repair exits 0', async () => {
  await using dbs = await createTestDatabases();
  await both(
    dbs,
    'CREATE TABLE public.acct (tenant text, id int, balance numeric, note text, PRIMARY KEY (tenant, id))',
  );
  await both(
    dbs,
    `INSERT INTO public.acct SELECT t, i, i * 10, NULL FROM unnest(ARRAY['acme', 'b co', 'zeta']) t,
       generate_series(1, 40) i`,
  );
  await dbs.sql1("UPDATE public.acct SET note = 'x' WHERE tenant = 'b co' AND id = 7");
  await dbs.sql2("DELETE FROM public.acct WHERE tenant = 'zeta' AND id = 40");
  await dbs.sql2("INSERT INTO public.acct VALUES ('acme', 41, 0, 'b only')");
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-verify-'));
  const file = join(dir, 'pgbisync.yaml');
  writeFileSync(
    file,
    `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}] }
nodes:
  - { name: ${dbs.name}_a, url: "${dbs.db1}" }
  - { name: ${dbs.name}_b, url: "${dbs.db2}" }
tables: [public.acct]
`,
  );
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, 'verify', '-c', file, '--chunk-rows', '16', ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  const text = run();
  assert.equal(text.status, 1, text.stderr);
  assert.match(
    text.stdout,
    /public\.acct {2}\S+_a vs \S+_b {2}DIFFERENT {2}3 differing rows \(1 only on \S+_a, 1 only on \S+_b, 1 different\)/,
  );
  assert.match(text.stdout, /only on \S+_a +\(tenant, id\)=\(zeta, 40\)/);
  assert.match(text.stdout, /only on \S+_b +\(tenant, id\)=\(acme, 41\)/);
  assert.match(text.stdout, /different +\(tenant, id\)=\(b co, 7\)/);
  assert.match(text.stdout.trim(), /verify: 1 of 1 tables differ$/);

  const fixed = run('--repair', '--json');
  assert.equal(fixed.status, 0, fixed.stdout + fixed.stderr);
  const out = JSON.parse(fixed.stdout) as { identical: boolean; after: VerifyReport; before: VerifyReport };
  assert.equal(out.identical, true);
  assert.equal(out.before.identical, false);
  assert.equal(out.after.tables[0]?.identical, true);
  assert.equal(run().status, 0);
  assert.equal(
    (await dbs.sql2("SELECT note FROM public.acct WHERE tenant = 'b co' AND id = 7")).rows[0]?.note,
    'x',
  );
});
