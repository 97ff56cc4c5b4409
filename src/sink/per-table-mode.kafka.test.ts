/**
 * `mode: per-table` both ways: each table's events on its own topic `<prefix>.<node>.<schema>.<table>`
 * (Debezium's naming), applied per table in per-key order with session_replication_role = replica, so a
 * foreign key between two synced tables does not depend on which topic is read first. Loop-free and
 * convergent like the default mode.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { serverName } from '../kafka/topics.ts';
import { setup, teardown } from '../operate/setup.ts';
import { readStatus } from '../operate/status.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const DDL = `CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL);
CREATE TABLE public.orders (id int PRIMARY KEY, account int NOT NULL REFERENCES public.accounts (id), amount int);`;

test('per-table topics: both ways, foreign keys across tables, each change crossing once', () =>
  perTableBothWays(''));

test('per-table topics with schemaless events: the same, each record read by its stored schema', () =>
  perTableBothWays('capture: { schemasEnabled: false }'));

async function perTableBothWays(extraYaml: string): Promise<void> {
  await using dbs = await createTestDatabases();
  await dbs.sql1(DDL);
  await dbs.sql2(DDL);
  const config = syncConfig(dbs, ['public.accounts', 'public.orders'], `mode: per-table\n${extraYaml}`);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  // Each node writes accounts and their orders in one transaction each, then deletes some of both.
  const work = (from: number) => `DO $$ BEGIN
      FOR i IN ${from}..${from + 99} LOOP
        INSERT INTO accounts VALUES (i, 'owner ' || i);
        INSERT INTO orders VALUES (i, i, i * 10), (i + 100000, i, 1);
        COMMIT;
      END LOOP;
      FOR i IN ${from}..${from + 9} LOOP
        DELETE FROM orders WHERE account = i;
        DELETE FROM accounts WHERE id = i;
        COMMIT;
      END LOOP;
      UPDATE orders SET amount = amount + 1 WHERE account BETWEEN ${from + 10} AND ${from + 19};
    END $$`;
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await Promise.all([dbs.sql1(work(1)), dbs.sql2(work(1001))]);
    await waitFor(
      'both nodes equal',
      async () => {
        for (const t of ['accounts', 'orders']) {
          const [x, y] = await Promise.all([tableRows(dbs.sql1, t), tableRows(dbs.sql2, t)]);
          if (x.length !== (t === 'accounts' ? 180 : 360) || JSON.stringify(x) !== JSON.stringify(y))
            return false;
        }
        return true;
      },
      90_000,
    );
    for (const direction of [`apply ${a}->${b}`, `apply ${b}->${a}`]) {
      assert.equal(sync.runner.states.get(direction)?.state, 'running', direction);
    }
    // status reads the per-table topics and the per-topic positions: nothing left to apply.
    await waitFor('status healthy without lag', async () => {
      const report = await readStatus(config);
      return report.healthy && report.directions.every((d) => d.kafkaLag === 0 && d.topicEndOffset === 380);
    });
    const report = await readStatus(config);
    assert.deepEqual(
      report.directions.map((d) => d.topic),
      [a, b].map((n) => `${serverName(config, n)}.public.accounts,${serverName(config, n)}.public.orders`),
    );
    await sync.stop();
  }
  // Each change crossed once: a node's topics hold only its own writes. Per node: accounts 100 inserts,
  // 10 deletes + 10 tombstones; orders 200 inserts, 20 deletes + 20 tombstones, 20 updates.
  const admin = new KafkaAdmin(kafkaOptions(config, 'test'));
  try {
    for (const node of [a, b]) {
      const end = async (table: string) =>
        (await admin.endOffsets(`${serverName(config, node)}.public.${table}`)).get(0);
      assert.equal(await end('accounts'), 120n, `${node} accounts topic`);
      assert.equal(await end('orders'), 260n, `${node} orders topic`);
    }
  } finally {
    await admin.close();
  }
  await teardown(config, { keepTopics: false });
}
