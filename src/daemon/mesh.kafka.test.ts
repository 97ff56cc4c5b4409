/**
 * A three-node mesh where two nodes are databases of one PostgreSQL server: replication origins belong
 * to the server, so the appliers from the third node into each of them need origins of their own (one
 * origin named after the source alone was held by one of them, and the other failed forever with
 * "replication origin ... is already active").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases, query } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, node text NOT NULL)';

test('a mesh of three nodes, two of them on one server, carries every node changes to the others', async () => {
  await using dbs = await createTestDatabases('mesh');
  // Node c: another database on db1's server (its name contains the test's, so cleanup finds its origins).
  const cName = `${dbs.name}c`;
  const server1 = new URL(dbs.db1);
  const admin = Object.assign(new URL(server1), { pathname: '/postgres' }).toString();
  await query(admin, `CREATE DATABASE "${cName}"`);
  const c = Object.assign(new URL(server1), { pathname: `/${cName}` }).toString();
  const sql3 = (text: string) => query(c, text);
  try {
    for (const sql of [dbs.sql1, dbs.sql2, sql3]) await sql(TABLE);
    const config = parseConfig(
      `
kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${dbs.name}_a, url: "${dbs.db1}" }
  - { name: ${dbs.name}_b, url: "${dbs.db2}" }
  - { name: ${dbs.name}_c, url: "${c}" }
tables: [public.items]
apply: { maxWaitMs: 10 }`,
      'mesh test config',
    );
    await setup(config);
    {
      await using _sync = await startSync(config);
      const sqls = [dbs.sql1, dbs.sql2, sql3];
      await Promise.all(
        sqls.map((sql, i) =>
          sql(`INSERT INTO items SELECT g, 'n${i}' FROM generate_series(${i * 100 + 1}, ${i * 100 + 30}) g`),
        ),
      );
      await waitFor(
        'every node holding the 90 rows of all three',
        async () => {
          const rows = await Promise.all(sqls.map((sql) => tableRows(sql, 'items')));
          return rows.every((r) => r.length === 90 && JSON.stringify(r) === JSON.stringify(rows[0]));
        },
        60_000,
      );
      // Each applier into a database of the shared server has an origin of its own.
      const origins = await query(
        admin,
        `SELECT roname FROM pg_replication_origin WHERE roname LIKE 'pgbisync\\_${dbs.name}%' ORDER BY 1`,
      );
      const [na, nb, nc] = config.nodes.map((n) => n.name);
      assert.deepEqual(
        origins.rows.map((r) => r.roname),
        [`pgbisync_${na}@${nc}`, `pgbisync_${nb}@${na}`, `pgbisync_${nb}@${nc}`, `pgbisync_${nc}@${na}`],
      );
    }
    await teardown(config, { keepTopics: false });
  } finally {
    await query(
      admin,
      'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL',
      [cName],
    );
    await query(
      admin,
      'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1',
      [cName],
    );
    await query(admin, `DROP DATABASE IF EXISTS "${cName}" WITH (FORCE)`);
  }
});
