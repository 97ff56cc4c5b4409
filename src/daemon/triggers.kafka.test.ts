/**
 * User triggers and rules on synced tables, two-way on real PostgreSQL and a real Kafka broker: an
 * ordinary trigger or rule fires where the application wrote and never again where pgbisync applies the
 * row (the applier writes with session_replication_role = replica, as PostgreSQL's own apply worker
 * does), so a trigger that stamps rows leaves the same stamp on every node; a trigger the user set to
 * ENABLE ALWAYS or ENABLE REPLICA does fire on applied rows. Foreign keys, whose checks are triggers
 * too, still hold on both nodes; a rule the applier's statements refuse blocks only its direction.
 * Checked with plain SQL on the nodes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, TOMBSTONE_TRIGGER, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';

/** A row stamped with the wall clock of the node that runs the trigger (the example). */
const STAMPED = `CREATE TABLE public.stamped (id int PRIMARY KEY, v int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON public.stamped FOR EACH ROW EXECUTE FUNCTION public.stamp()`;

async function both(dbs: TestDatabases, sql: string): Promise<void> {
  await dbs.sql1(sql);
  await dbs.sql2(sql);
}

test('a trigger stamping updated_at on both nodes leaves the same stamp on both', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, STAMPED);
  // Rows from before the sync reach db2 through the snapshot, which is applied like any change.
  await dbs.sql1('INSERT INTO stamped SELECT g, g FROM generate_series(1, 20) g');
  const config = syncConfig(dbs, ['public.stamped']);
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1('UPDATE stamped SET v = v + 1000 WHERE id <= 10');
    await dbs.sql1('INSERT INTO stamped SELECT g, g FROM generate_series(21, 30) g');
    await dbs.sql2('UPDATE stamped SET v = v + 2000 WHERE id BETWEEN 11 AND 15');
    await dbs.sql2('INSERT INTO stamped VALUES (31, 31)');
    // Every write reached the other node: 31 rows, db2's five updates on db1, equal values.
    const values = async (sql: typeof dbs.sql1) =>
      (await sql('SELECT id, v FROM stamped ORDER BY id')).rows.map((r) => `${r.id}:${r.v}`);
    await waitFor('the same values on both nodes', async () => {
      const [x, y] = await Promise.all([values(dbs.sql1), values(dbs.sql2)]);
      return x.length === 31 && x.includes('11:2011') && x.join() === y.join();
    });
    // Once the values arrived, so did the stamps written with them: each row holds the stamp of the node
    // where it was written, on both nodes.
    assert.deepEqual(await tableRows(dbs.sql2, 'stamped'), await tableRows(dbs.sql1, 'stamped'));
    const stamps = await dbs.sql1('SELECT count(DISTINCT updated_at)::int AS n FROM stamped');
    assert.ok(stamps.rows[0].n > 1, 'the trigger stamped the rows where they were written');
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('ordinary triggers and rules skip applied rows, ENABLE ALWAYS and ENABLE REPLICA triggers fire on them', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.items (id int PRIMARY KEY, v int)');
  // On db2 only: three triggers that log what they saw, in each firing mode, and a rule doing the same.
  await dbs.sql2(`CREATE TABLE public.fired (what text NOT NULL, op text NOT NULL, id int NOT NULL);
    CREATE FUNCTION public.log_fire() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO public.fired VALUES (TG_NAME, TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
      RETURN NULL;
    END $$;
    CREATE TRIGGER ordinary AFTER INSERT OR UPDATE OR DELETE ON public.items FOR EACH ROW EXECUTE FUNCTION public.log_fire();
    CREATE TRIGGER always AFTER INSERT OR UPDATE OR DELETE ON public.items FOR EACH ROW EXECUTE FUNCTION public.log_fire();
    CREATE TRIGGER replica AFTER INSERT OR UPDATE OR DELETE ON public.items FOR EACH ROW EXECUTE FUNCTION public.log_fire();
    ALTER TABLE public.items ENABLE ALWAYS TRIGGER always;
    ALTER TABLE public.items ENABLE REPLICA TRIGGER replica;
    CREATE RULE logged AS ON INSERT TO public.items DO ALSO INSERT INTO public.fired VALUES ('rule', 'INSERT', NEW.id)`);
  const config = syncConfig(dbs, ['public.items']);
  await setup(config);
  // pgbisync's own tombstone trigger stays ordinary (the applier writes applied deletes' tombstones
  // itself), and a re-run of setup puts it back to that when it was changed.
  const tombstoneMode = async (sql: typeof dbs.sql1) =>
    (
      await sql(
        `SELECT tgenabled AS mode FROM pg_trigger WHERE tgrelid = 'public.items'::regclass AND tgname = $1`,
        [TOMBSTONE_TRIGGER],
      )
    ).rows[0]?.mode as string;
  assert.equal(await tombstoneMode(dbs.sql2), 'O');
  await dbs.sql2(`ALTER TABLE public.items ENABLE ALWAYS TRIGGER ${TOMBSTONE_TRIGGER}`);
  await setup(config);
  assert.equal(await tombstoneMode(dbs.sql2), 'O');
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1('INSERT INTO items VALUES (1, 1), (2, 2)');
    await dbs.sql1('UPDATE items SET v = 10 WHERE id = 1');
    await dbs.sql1('DELETE FROM items WHERE id = 2');
    await dbs.sql2('INSERT INTO items VALUES (3, 3)');
    await waitFor('both nodes equal', async () => {
      const [x, y] = await Promise.all([tableRows(dbs.sql1, 'items'), tableRows(dbs.sql2, 'items')]);
      return JSON.stringify(x) === JSON.stringify(y) && x.length === 2 && x.some((r) => r.includes('10'));
    });
    const fired = await dbs.sql2(`SELECT what || ' ' || op || ' ' || id AS f FROM fired ORDER BY 1`);
    assert.deepEqual(
      fired.rows.map((r) => r.f),
      [
        // db1's writes, applied on db2 (an update arrives as a row to upsert: its row exists, so UPDATE).
        'always DELETE 2',
        'always INSERT 1',
        'always INSERT 2',
        'always INSERT 3',
        'always UPDATE 1',
        'ordinary INSERT 3',
        'replica DELETE 2',
        'replica INSERT 1',
        'replica INSERT 2',
        'replica UPDATE 1',
        'rule INSERT 3',
      ],
    );
    // The applied delete recorded its tombstone (the applier's own write) and no conflict.
    const tomb = await dbs.sql2(`SELECT key->>'id' AS id FROM pgbisync.tombstones`);
    assert.deepEqual(
      tomb.rows.map((r) => r.id),
      ['2'],
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('foreign keys, unchecked on applied rows, still hold on both nodes: commit order, cascades as changes', async () => {
  await using dbs = await createTestDatabases();
  await both(
    dbs,
    `CREATE TABLE public.parent (id int PRIMARY KEY, name text NOT NULL);
     CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent (id) ON DELETE CASCADE, v int)`,
  );
  const config = syncConfig(dbs, ['public.parent', 'public.child']);
  await setup(config);
  /** Children whose parent is missing: none, at any moment, on a node that applies whole transactions in order. */
  const orphans = async (sql: typeof dbs.sql1) =>
    (
      await sql(
        'SELECT count(*)::int AS n FROM child c WHERE NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id)',
      )
    ).rows[0].n as number;
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    // Parents and their children in one transaction each; then parents deleted (their children by the
    // cascade, which the source publishes as deletes of their own) and re-parented children.
    const work = (from: number) => `DO $$ BEGIN
        FOR i IN ${from}..${from + 49} LOOP
          INSERT INTO parent VALUES (i, 'p' || i);
          INSERT INTO child VALUES (i * 10, i, 0), (i * 10 + 1, i, 1);
          COMMIT;
        END LOOP;
        FOR i IN ${from}..${from + 9} LOOP DELETE FROM parent WHERE id = i; COMMIT; END LOOP;
        FOR i IN ${from + 10}..${from + 19} LOOP
          UPDATE child SET parent_id = i + 20 WHERE parent_id = i;
          DELETE FROM parent WHERE id = i;
          COMMIT;
        END LOOP;
      END $$`;
    const writing = Promise.all([dbs.sql1(work(1)), dbs.sql2(work(1001))]);
    let seen = 0;
    await waitFor('both nodes equal', async () => {
      assert.equal(await orphans(dbs.sql2), 0, 'a child without its parent on db2');
      assert.equal(await orphans(dbs.sql1), 0, 'a child without its parent on db1');
      seen++;
      for (const t of ['parent', 'child']) {
        const [x, y] = await Promise.all([tableRows(dbs.sql1, t), tableRows(dbs.sql2, t)]);
        if (x.length !== (t === 'parent' ? 60 : 160) || JSON.stringify(x) !== JSON.stringify(y)) return false;
      }
      return true;
    });
    await writing;
    assert.ok(seen > 1, 'checked while changes were being applied');
    await sync.stop();
  }
  // The constraint itself agrees: validating it anew finds nothing to object to on either node.
  for (const sql of [dbs.sql1, dbs.sql2]) {
    await sql(`ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey;
      ALTER TABLE child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES parent (id)`);
  }
  await teardown(config, { keepTopics: false });
});

test('an ON UPDATE rule on the target blocks only that direction with the cause, which resumes once it is gone', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.items (id int PRIMARY KEY, v int)');
  // INSERT ... ON CONFLICT refuses a table with an UPDATE rule, whether or not the rule would fire.
  await dbs.sql2(`CREATE TABLE public.log (id int);
    CREATE RULE logged AS ON UPDATE TO public.items DO ALSO INSERT INTO public.log VALUES (NEW.id)`);
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const toB = () => sync.runner.states.get(`apply ${a}->${b}`)!;
    await dbs.sql1('INSERT INTO items VALUES (1, 1)');
    await waitFor('a->b blocked', async () => toB().state === 'blocked');
    assert.match(toB().lastError ?? '', /does not support a statement the applier uses \(SQLSTATE 0A000\)/);
    assert.match(toB().fix ?? '', /a rule on the target table is the usual cause/);
    await dbs.sql2('INSERT INTO items VALUES (2, 2)');
    await waitFor(
      'b row on a',
      async () => (await dbs.sql1('SELECT 1 FROM items WHERE id = 2')).rowCount === 1,
    );
    await dbs.sql2('DROP RULE logged ON public.items');
    await waitFor(
      'row 1 on b once the rule is gone',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 1')).rowCount === 1,
      60_000,
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
