/**
 * A stale part of a transaction read first by an applier that just started, against real PostgreSQL
 * and Kafka. A capture stopped mid-transaction (killed; or fenced off by a takeover and sending, once
 * it runs again, what it still held) leaves the transaction's first records on the topic without its
 * end. An applier started again at its stored position reads such a part before any record that
 * carries our transaction marker: it must still know the part for ours and drop it, not take the next
 * transaction's start for the end of a Debezium-style group and apply the part on its own (which wrote
 * the transaction's old row versions over newer ones for good, or showed half a transaction).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LAST_HEADER } from '../kafka/wire-headers.ts';
import { teardown } from '../operate/setup.ts';
import { accountsOnBothNodes, accountAfter as after, sendAgain } from '../testing/accounts-fixture.ts';
import { readTopic, startSync, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('a stale part read first after a start is dropped, not applied over newer versions', async () => {
  await using dbs = await createTestDatabases();
  const { config, topic, balanceOnB } = await accountsOnBothNodes(dbs);
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await dbs.sql2('SELECT 1 FROM acct')).rowCount === 4);
    // T: a transfer (two changes, one transaction); then V, a newer version of T's first row.
    await dbs.sql1(
      'BEGIN; UPDATE acct SET balance = 90 WHERE id = 1; UPDATE acct SET balance = 110 WHERE id = 2; COMMIT',
    );
    await dbs.sql1('UPDATE acct SET balance = 95 WHERE id = 1');
    await waitFor('V on b', async () => (await balanceOnB(1)) === 95);
    await sync.stop();
  }
  // T's first record, as a capture stopped after sending it left it: without the transaction's end.
  const records = await readTopic(config, topic, (rs) => rs.some((r) => after(r)?.balance === 95));
  const first = records.find((r) => after(r)?.id === 1 && after(r)?.balance === 90);
  assert.ok(first !== undefined, 'T is on the topic');
  assert.equal(first.headers.has(LAST_HEADER), false, "T's first record is not its last");
  await sendAgain(config, topic, [first]);
  // The next transaction the capture sends follows the stale part on the topic; its first record is
  // not its last (a one-record transaction's marker would tell the topic's kind at once).
  await dbs.sql1(
    'BEGIN; UPDATE acct SET balance = 130 WHERE id = 3; UPDATE acct SET balance = 70 WHERE id = 4; COMMIT',
  );
  {
    await using sync = await startSync(config);
    await waitFor('row 3 on b', async () => (await balanceOnB(3)) === 130);
    // The applier has read past the stale part: had it applied it, row 1 would read 90 on b.
    assert.equal(await balanceOnB(1), 95);
    assert.deepEqual(await tableRows(dbs.sql2, 'acct'), await tableRows(dbs.sql1, 'acct'));
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
