/**
 * A node restored from a disk snapshot of its data folder: same system identifier and timeline, its
 * WAL positions gone back, so its new transactions reuse positions the other nodes applied. Made here
 * by sending to a's topic what such a node's capture sends: a transaction at the commit LSN of one b
 * applied, committed a minute after the last one b applied, changing a row. Before, b took it for a
 * re-sent one and skipped it: lost for good. Now a -> b is blocked with PGB4005 and the fix, and
 * `pgbisync resync a --new-slot` brings b to a's rows again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resync } from '../operate/resync.ts';
import { teardown } from '../operate/setup.ts';
import { accountsOnBothNodes, accountAfter as after, sendAgain } from '../testing/accounts-fixture.ts';
import { readTopic, startSync, tableRows, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('a transaction reusing an applied WAL position, committed later than the applied one, blocks the direction; resync --new-slot recovers', async () => {
  await using dbs = await createTestDatabases();
  const { config, topic, balanceOnB } = await accountsOnBothNodes(dbs);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  {
    await using sync = await startSync(config);
    await waitFor('the copy on b', async () => (await dbs.sql2('SELECT 1 FROM acct')).rowCount === 4);
    await dbs.sql1('UPDATE acct SET balance = 90 WHERE id = 1');
    await dbs.sql1('UPDATE acct SET balance = 120 WHERE id = 2');
    await waitFor('both on b', async () => (await balanceOnB(2)) === 120 && (await balanceOnB(1)) === 90);
    await sync.stop();
  }
  const records = await readTopic(config, topic, (rs) => rs.some((r) => after(r)?.balance === 120));
  const first = records.find((r) => after(r)?.id === 1 && after(r)?.balance === 90);
  assert.ok(first?.value != null, 'the first update is on the topic');
  // The restored node's new transaction: the first update's WAL position, a minute later, id 1 -> 55.
  const value = JSON.parse(first.value.toString());
  value.payload.after.balance = 55;
  value.payload.source.ts_ms += 60_000;
  value.payload.source.ts_us += 60_000_000;
  delete value.payload.source.ts_ns;
  await sendAgain(config, topic, [{ ...first, value: Buffer.from(JSON.stringify(value)) }]);
  // What the restored node holds: that write, and its slot past it (it sent it: the record above).
  await dbs.sql1('UPDATE acct SET balance = 55 WHERE id = 1');
  await dbs.sql1(`SELECT pg_replication_slot_advance('pgbisync_${a}', pg_current_wal_lsn())`);
  {
    await using sync = await startSync(config);
    const toB = () => sync.runner.states.get(`apply ${a}->${b}`);
    await waitFor(
      `a -> b blocked with PGB4005 (state: ${JSON.stringify(toB())})`,
      async () => toB()?.state === 'blocked' && toB()?.code === 'PGB4005',
      60_000,
    );
    assert.match(
      toB()?.lastError ?? '',
      new RegExp(`source ${a}: a transaction at commit LSN .* committed at .*, after the applied one`),
    );
    assert.match(toB()?.fix ?? '', new RegExp(`pgbisync resync ${a} --new-slot`));
    assert.equal(await balanceOnB(1), 90, 'nothing of it applied meanwhile');
    const lines: string[] = [];
    const done = await resync(config, a, {
      wait: true,
      newSlot: true,
      stallTimeoutMs: 60_000,
      onProgress: (l) => lines.push(l),
    });
    assert.equal(done.applied, true, lines.join('\n'));
    assert.match(
      lines.join('\n'),
      new RegExp(
        `${b} had not applied ${topic}\\[0\\] from offset \\d+: what the old slot sent is superseded`,
      ),
    );
    await waitFor('b equals a', async () => {
      const rows1 = JSON.stringify(await tableRows(dbs.sql1, 'acct'));
      return rows1 === JSON.stringify(await tableRows(dbs.sql2, 'acct'));
    });
    assert.equal(await balanceOnB(1), 55);
    await dbs.sql1('UPDATE acct SET balance = 77 WHERE id = 3');
    await waitFor('a -> b streams on', async () => (await balanceOnB(3)) === 77);
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
