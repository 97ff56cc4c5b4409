/**
 * A capture fenced off by a takeover whose records land after its successor's, against real PostgreSQL
 * and Kafka. Each start of a capture takes a run (`pgbisync.run` on every transaction's first record,
 * above every earlier run's of the node); the applier stores the newest it read with its position and
 * drops a transaction that starts with an older one. Before, such a late transaction was applied, and its
 * commit LSN (the fenced capture had gone further in the WAL than its successor had sent yet) made the
 * applier skip what the successor sent next: lost for good.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_LSN_HEADER, LAST_HEADER, runOf } from '../kafka/wire-headers.ts';
import { teardown } from '../operate/setup.ts';
import { formatLsn, parseLsn } from '../pg/lsn.ts';
import { accountsOnBothNodes, accountAfter as after, sendAgain } from '../testing/accounts-fixture.ts';
import { readTopic, startSync, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test("a fenced capture's late transaction is dropped by its run, not applied ahead of its successor's", async () => {
  await using dbs = await createTestDatabases();
  const { config, topic, balanceOnB } = await accountsOnBothNodes(dbs);
  const storedRun = async (): Promise<bigint> =>
    BigInt((await dbs.sql2('SELECT capture_run::text AS r FROM pgbisync.apply_progress')).rows[0]?.r);
  // Run 1: T, a transfer (two changes, one transaction).
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await dbs.sql2('SELECT 1 FROM acct')).rowCount === 4);
    await dbs.sql1(
      'BEGIN; UPDATE acct SET balance = 90 WHERE id = 1; UPDATE acct SET balance = 110 WHERE id = 2; COMMIT',
    );
    await waitFor('T on b', async () => (await balanceOnB(2)) === 110);
    await sync.stop();
  }
  const runOne = await storedRun();
  // Run 2 (another start: a takeover's successor): Y.
  {
    await using sync = await startSync(config);
    await dbs.sql1('UPDATE acct SET balance = 130 WHERE id = 3');
    await waitFor('Y on b', async () => (await balanceOnB(3)) === 130);
    await sync.stop();
  }
  const runTwo = await storedRun();
  assert.ok(runTwo > runOne, `run 2 (${runTwo}) is above run 1 (${runOne}), and stored by b`);
  const records = await readTopic(config, topic, (rs) => rs.some((r) => after(r)?.balance === 130));
  const first = records.find((r) => after(r)?.id === 1 && after(r)?.balance === 90);
  const last = records.find((r) => after(r)?.id === 2 && after(r)?.balance === 110);
  const y = records.find((r) => after(r)?.id === 3 && after(r)?.balance === 130);
  assert.ok(first !== undefined && last !== undefined && y !== undefined, 'T and Y are on the topic');
  assert.equal(runOf(first.headers), runOne, "T's first record names run 1");
  assert.equal(runOf(last.headers), undefined, "T's last record names none");
  assert.equal(runOf(y.headers), runTwo, "Y's names run 2");
  // T as run 1, fenced off, would send it once it ran again having read further in the WAL than run 2
  // has sent yet: the same records, its commit LSN far ahead.
  const ahead = parseLsn((await dbs.sql1('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l) + 0x1000_0000n;
  assert.ok(last.headers.has(LAST_HEADER));
  const late = [
    first,
    { ...last, headers: new Map([...last.headers, [COMMIT_LSN_HEADER, formatLsn(ahead)]]) },
  ];
  await sendAgain(config, topic, late);
  // Z, sent by run 3 after the late records: applied (before, skipped below the late commit LSN).
  await dbs.sql1('UPDATE acct SET balance = 70 WHERE id = 4');
  {
    await using sync = await startSync(config);
    await waitFor('Z on b', async () => (await balanceOnB(4)) === 70);
    // Counted as dropped by run (its start) and by order (its end, which then fit nowhere).
    const dropped = (await sync.metrics.staleDropped.get()).values;
    const count = (reason: string) => dropped.find((v) => v.labels.reason === reason)?.value ?? 0;
    assert.deepEqual([count('run'), count('order')], [1, 1], JSON.stringify(dropped));
    assert.deepEqual(await tableRows(dbs.sql2, 'acct'), await tableRows(dbs.sql1, 'acct'));
    const lsn = (await dbs.sql2('SELECT commit_lsn::text AS l FROM pgbisync.apply_progress')).rows[0].l;
    assert.ok(parseLsn(lsn) < ahead, `the late commit LSN was not stored (${lsn})`);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
