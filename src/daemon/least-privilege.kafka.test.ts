/**
 * Two-way sync with the two roles of docs/security.md, neither a superuser: a setup role (owns the synced
 * tables, CREATE on the database, REPLICATION, the origin create/drop functions) runs setup and
 * teardown; a run role that starts with LOGIN REPLICATION only gets exactly the grants `doctor` names
 * (each FAIL's fix, executed as printed) and then runs the sync: snapshot, changes both ways, a
 * conflict resolved and recorded on both nodes. Its sessions are checked to be the run role's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { formatDoctor, runDoctor } from '../operate/doctor.ts';
import { setup, teardown } from '../operate/setup.ts';
import { StampKeeper } from '../operate/stamp-keeper.ts';
import { startSync, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases, query } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, qty int)';

function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

test('setup by a setup role, sync by a run role with only the grants doctor names', async () => {
  const servers = [testEnv.db1Url(), testEnv.db2Url()];
  const suffix = Math.random().toString(36).slice(2, 10);
  const [setupRole, runRole] = [`pgb_setup_${suffix}`, `pgb_run_${suffix}`];
  // Roles are per server; disposed after the databases (declared first), which hold their objects.
  await using _roles = {
    async [Symbol.asyncDispose]() {
      for (const server of servers) {
        for (const role of [runRole, setupRole]) {
          await query(server, `DROP OWNED BY ${role} CASCADE`).catch(() => undefined);
          await query(server, `DROP ROLE IF EXISTS ${role}`);
        }
      }
    },
  };
  await using dbs = await createTestDatabases();
  const sqls = [dbs.sql1, dbs.sql2];
  for (const sql of sqls) {
    await sql(`CREATE ROLE ${setupRole} LOGIN REPLICATION`);
    await sql(`CREATE ROLE ${runRole} LOGIN REPLICATION`);
    await sql(`REVOKE CREATE ON DATABASE ${dbs.name} FROM PUBLIC`);
    await sql(`GRANT CREATE ON DATABASE ${dbs.name} TO ${setupRole}`);
    await sql(
      `GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_drop(text) TO ${setupRole}`,
    );
    await sql(TABLE);
    await sql(`ALTER TABLE public.items OWNER TO ${setupRole}`);
  }
  await dbs.sql1(`INSERT INTO items SELECT g, 'seed ' || g, g FROM generate_series(1, 50) g`);
  const yaml = (role: string) => `
kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${dbs.name}_a, url: "${asRole(dbs.db1, role)}" }
  - { name: ${dbs.name}_b, url: "${asRole(dbs.db2, role)}" }
tables: [public.items]
apply: { maxWaitMs: 10 }
`;
  const setupConfig = parseConfig(yaml(setupRole), 'setup config');
  const runConfig = parseConfig(yaml(runRole), 'run config');
  await setup(setupConfig);

  // The run role has LOGIN REPLICATION only: doctor names every grant it lacks, each as a statement.
  const sick = await runDoctor(runConfig);
  const failed = sick.checks.filter((c) => c.status === 'FAIL');
  const failedChecks = (node: string) =>
    failed
      .filter((c) => c.node === node)
      .map((c) => c.check)
      .sort();
  for (const node of runConfig.nodes) {
    assert.deepEqual(
      failedChecks(node.name),
      ['origin_functions', 'pgbisync_schema', 'session_replication_role', 'table_privileges'],
      formatDoctor(sick),
    );
  }
  for (const check of failed) {
    assert.ok(check.fix?.startsWith('GRANT '), `${check.check}: ${check.fix}`);
    assert.ok(check.fix?.includes(runRole), `${check.check}: ${check.fix}`);
    const index = runConfig.nodes.findIndex((n) => n.name === check.node);
    await sqls[index]!(check.fix!);
  }
  const well = await runDoctor(runConfig);
  assert.deepEqual(
    well.checks.filter((c) => c.status === 'FAIL'),
    [],
    formatDoctor(well),
  );
  for (const sql of sqls) {
    const r = await sql(`SELECT rolsuper FROM pg_roles WHERE rolname = $1`, [runRole]);
    assert.equal(r.rows[0].rolsuper, false);
  }

  const rows1 = () => tableRows(dbs.sql1, 'items');
  const rows2 = () => tableRows(dbs.sql2, 'items');
  {
    await using sync = await startSync(runConfig);
    await waitForStreaming(runConfig, sqls);
    await waitFor('the snapshot on b', async () => (await rows2()).length === 50);
    // Every pgbisync session (walsenders included) is the run role's.
    for (const sql of sqls) {
      const users = await sql(
        `SELECT DISTINCT usename::text AS u FROM pg_stat_activity WHERE application_name LIKE 'pgbisync%'`,
      );
      assert.deepEqual(
        users.rows.map((r) => r.u),
        [runRole],
      );
    }
    await dbs.sql1(`INSERT INTO items SELECT g, 'a ' || g, g FROM generate_series(101, 120) g`);
    await dbs.sql2(`INSERT INTO items SELECT g, 'b ' || g, g FROM generate_series(201, 220) g`);
    await dbs.sql2(`UPDATE items SET qty = qty + 1000 WHERE id <= 10`);
    await dbs.sql1(`DELETE FROM items WHERE id BETWEEN 11 AND 15`);
    await waitFor('the nodes converge', async () => {
      const [r1, r2] = [await rows1(), await rows2()];
      return r1.length === 85 && JSON.stringify(r1) === JSON.stringify(r2);
    });
    await sync.stop();
  }
  // A conflict: the same row written on both nodes while the sync is stopped; b's write is the later.
  await dbs.sql1(`UPDATE items SET name = 'a wins?' WHERE id = 20`);
  await dbs.sql2(`UPDATE items SET name = 'b wins' WHERE id = 20`);
  {
    await using sync = await startSync(runConfig);
    await waitFor('the conflict resolved on both nodes', async () => {
      const [r1, r2] = [await rows1(), await rows2()];
      return JSON.stringify(r1) === JSON.stringify(r2) && r1.some((r) => r.includes('b wins'));
    });
    for (const sql of sqls) {
      await waitFor('the conflict recorded', async () => {
        const r = await sql(`SELECT count(*)::int AS n FROM pgbisync.conflicts WHERE key = '{"id": 20}'`);
        return r.rows[0].n === 1;
      });
    }
    await sync.stop();
  }
  // The run role keeps the nodes' commit times: it makes each node's stamp slot and sets its xmin
  // (every candidate held: minimum age 0).
  const held = await new StampKeeper({ minAgeXids: 0n }).round(runConfig, ['public.items']);
  assert.deepEqual(
    [...held.values()].map((h) => [h.made, h.hold !== null]),
    [
      [true, true],
      [true, true],
    ],
  );
  await teardown(setupConfig, { keepTopics: false });
  for (const sql of sqls) {
    const left = await sql(
      `SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = current_database()
                 OR slot_name LIKE 'pgbisync\\_\\_stamps\\_' || $1 || '%')::int AS slots,
              (SELECT count(*) FROM pg_publication)::int AS pubs`,
      [dbs.name],
    );
    assert.deepEqual(left.rows[0], { slots: 0, pubs: 0 });
  }
});
