/**
 * A capture whose replication connection cannot open (here: a role without REPLICATION) fails with the
 * server's reason and leaves no session behind. Its admin session, opened first, used to stay open: a
 * socket that kept a stopped `pgbisync run` (and a test file's process) alive, and a backend on the node.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { Capture } from './capture.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';

test('a capture whose replication connection is refused fails and closes its admin session', async () => {
  await using dbs = await createTestDatabases();
  const role = `pgbisync_norepl_${randomUUID().slice(0, 8)}`;
  await dbs.sql1(`CREATE ROLE ${role} LOGIN NOREPLICATION`);
  try {
    const url = new URL(dbs.db1);
    url.username = role;
    const node = `${dbs.name}_a`;
    const capture = new Capture({
      node,
      url: url.toString(),
      tables: [],
      encoder: new DebeziumChangeEncoder({ serverName: 's', database: dbs.name, connectorVersion: 'test' }),
      producer: { send: async () => assert.fail('nothing is sent') },
      topicFor: () => 's',
      snapshot: 'never',
      snapshotChunkRows: 1000,
      maxBatchEvents: 1000,
    });
    await assert.rejects(capture.run(new AbortController().signal), /replication|permission|WAL sender/i);
    const sessions = async () =>
      (
        await dbs.sql1('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [
          `pgbisync-capture-${node}`,
        ])
      ).rows[0].n;
    await waitFor('no capture session left', async () => (await sessions()) === 0, 5_000);
  } finally {
    await dbs.sql1(`DROP ROLE IF EXISTS ${role}`);
  }
});
