/**
 * A slot PostgreSQL cannot decode past one change: the walsender fails with the same error at the same
 * position on every START_REPLICATION (the torture test met `could not map filenumber ... to relation
 * OID`). Made here on a real server by a publication row filter that divides by zero for one row: from
 * that change on, decoding fails for good (the filter is read from the catalog as it was then, so
 * removing it later does not help). The capture must be blocked with PGB2006 and the fix instead of
 * restarting forever, the other direction running on; `pgbisync resync <node> --new-slot` drops the
 * slot and re-copies, so the row, the rows after it and a delete made while it was stuck reach the
 * other node.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SyncRunner } from '../daemon/sync-runner.ts';
import { resync } from '../operate/resync.ts';
import { setup, teardown } from '../operate/setup.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const captureOf = (runner: SyncRunner, node: string) => runner.states.get(`capture ${node}`);

test('a slot that fails to decode at the same change blocks its capture; resync --new-slot replaces it', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(`INSERT INTO items SELECT g, 'a' FROM generate_series(1, 4) g`);
    await waitFor('rows on b', async () => (await tableRows(dbs.sql2, 'items')).length === 4);

    // From here on a's slot cannot be decoded past the insert of id 5.
    await dbs.sql1(`ALTER PUBLICATION pgbisync_${a} SET TABLE public.items WHERE (1 / (id - 5) IS NOT NULL)`);
    try {
      await dbs.sql1("INSERT INTO items VALUES (5, 'stuck')");
      await dbs.sql1("INSERT INTO items VALUES (6, 'after')");
      await dbs.sql1('DELETE FROM items WHERE id = 2');
      await waitFor(
        `a's capture blocked with PGB2006 (state: ${JSON.stringify(captureOf(sync.runner, a))})`,
        async () => {
          const s = captureOf(sync.runner, a);
          return s?.state === 'blocked' && s.code === 'PGB2006';
        },
        60_000,
      );
      const blocked = captureOf(sync.runner, a)!;
      assert.match(
        blocked.lastError ?? '',
        new RegExp(
          `PostgreSQL cannot decode replication slot pgbisync_${a} past [0-9A-F]+/[0-9A-F]+: its walsender failed 3 times in a row at that position with "division by zero" \\(SQLSTATE 22012\\)`,
        ),
      );
      assert.match(blocked.fix ?? '', new RegExp(`pgbisync resync ${a} --new-slot`));
      // The other direction runs on.
      assert.equal(captureOf(sync.runner, b)?.state, 'running');
      await dbs.sql2("INSERT INTO items VALUES (100, 'b')");
      await waitFor(
        'b -> a runs on',
        async () => (await dbs.sql1('SELECT 1 FROM items WHERE id = 100')).rowCount === 1,
      );
      assert.equal((await dbs.sql2('SELECT 1 FROM items WHERE id IN (5, 6)')).rowCount, 0);

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
        new RegExp(`dropped replication slot pgbisync_${a} \\(confirmed up to `),
      );
      // The stuck row, the one after it and the delete made while stuck are on b; the nodes are equal.
      await waitFor('b equals a', async () => {
        const rows1 = JSON.stringify(await tableRows(dbs.sql1, 'items'));
        return rows1 === JSON.stringify(await tableRows(dbs.sql2, 'items'));
      });
      assert.deepEqual(
        (await dbs.sql2('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id),
        [1, 3, 4, 5, 6, 100],
      );
      await waitFor('a streams again', async () => captureOf(sync.runner, a)?.state === 'running');
      await dbs.sql1("INSERT INTO items VALUES (7, 'new slot')");
      await waitFor(
        'a -> b streams from the new slot',
        async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 7')).rowCount === 1,
      );
    } finally {
      await dbs.sql1(`ALTER PUBLICATION pgbisync_${a} SET TABLE public.items`);
    }
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
