/**
 * A target that does not match the source blocks only that direction: the applier reports the table,
 * the column and both types, the other direction goes on, nothing is truncated or dropped, and once the
 * operator fixes the target the stream resumes from the same event.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup, teardown } from '../operate/setup.ts';
import { sleep } from '../runtime/sleep.ts';
import { startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

test('a schema mismatch blocks only its stream, names table, column and types, and resumes once fixed', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.item (id int PRIMARY KEY, code text, qty int)');
  // b: no qty column yet, and a code column too narrow for a's values.
  await dbs.sql2('CREATE TABLE public.item (id int PRIMARY KEY, code varchar(3))');
  const config = syncConfig(dbs, ['public.item']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const toB = () => sync.runner.states.get(`apply ${a}->${b}`)!;
    const rowsOn = async (sql: typeof dbs.sql1) =>
      (await sql('SELECT id, code FROM item ORDER BY id')).rows.map((r) => `${r.id}:${r.code}`);

    // 1. A column missing on the target.
    await dbs.sql1(`INSERT INTO item VALUES (1, 'ab', 5)`);
    await waitFor('a->b blocked', async () => toB().state === 'blocked');
    assert.match(
      toB().lastError ?? '',
      /column public\.item\.qty \(source type integer\) does not exist on the target/,
    );
    assert.match(toB().fix ?? '', /ALTER TABLE public\.item ADD COLUMN "qty" integer/);
    // Blocked through its retries (about 0.5, 1.5 and 3.5 s after the first failure): each retry took
    // the component's lease again, which read 'starting' and then 'running' for a moment.
    const states = new Set<string>();
    for (const started = Date.now(); Date.now() - started < 4_000; ) {
      states.add(toB().state);
      await sleep(10);
    }
    assert.deepEqual([...states], ['blocked']);
    // The other direction is not blocked.
    await dbs.sql2(`INSERT INTO item VALUES (100, 'xy')`);
    await waitFor('b row on a', async () => (await rowsOn(dbs.sql1)).includes('100:xy'));
    assert.equal(toB().state, 'blocked');
    assert.deepEqual(await rowsOn(dbs.sql2), ['100:xy']);

    await dbs.sql2('ALTER TABLE item ADD COLUMN qty int');
    await waitFor('row 1 on b after the fix', async () => (await rowsOn(dbs.sql2)).includes('1:ab'), 60_000);
    assert.equal((await dbs.sql2('SELECT qty FROM item WHERE id = 1')).rows[0].qty, 5);
    await waitFor('a->b running again', async () => toB().state === 'running');

    // 2. A value the target's type does not take: never truncated, the message names both types.
    await dbs.sql1(`INSERT INTO item VALUES (2, 'abcdef', 1)`);
    await waitFor('a->b blocked on the value', async () => toB().state === 'blocked');
    assert.match(
      toB().lastError ?? '',
      /column public\.item\.code \(target type character varying\(3\), source type text\) rejects the value 'abcdef': value too long for type character varying\(3\)/,
    );
    assert.match(toB().fix ?? '', /ALTER TABLE public\.item ALTER COLUMN code TYPE text/);
    assert.deepEqual(await rowsOn(dbs.sql2), ['1:ab', '100:xy'], 'nothing truncated, nothing skipped');
    // Later transactions wait behind the blocked one (commit order is kept).
    await dbs.sql1(`UPDATE item SET code = 'zz' WHERE id = 1`);

    await dbs.sql2('ALTER TABLE item ALTER COLUMN code TYPE text');
    await waitFor(
      'rows on b after the fix',
      async () => JSON.stringify(await rowsOn(dbs.sql2)) === JSON.stringify(['1:zz', '2:abcdef', '100:xy']),
      60_000,
    );
    assert.deepEqual(await rowsOn(dbs.sql1), await rowsOn(dbs.sql2));
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});

test('a value the target rejects in a row batch of the initial copy is named the same way', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.item (id int PRIMARY KEY, code text)');
  await dbs.sql2('CREATE TABLE public.item (id int PRIMARY KEY, code varchar(3))');
  await dbs.sql1(`INSERT INTO item VALUES (1, 'ab'), (2, 'abcdef'), (3, NULL)`); // copied: one batch
  const config = syncConfig(dbs, ['public.item']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await setup(config);
  {
    await using sync = await startSync(config);
    const toB = () => sync.runner.states.get(`apply ${a}->${b}`)!;
    await waitFor('a->b blocked on the value', async () => toB().state === 'blocked');
    assert.match(
      toB().lastError ?? '',
      /column public\.item\.code \(target type character varying\(3\), source type text\) rejects the value 'abcdef': value too long for type character varying\(3\)/,
    );
    assert.equal(
      (await dbs.sql2('SELECT count(*)::int AS n FROM item')).rows[0].n,
      0,
      'nothing of the batch',
    );
    await dbs.sql2('ALTER TABLE item ALTER COLUMN code TYPE text');
    await waitFor(
      'the copy on b after the fix',
      async () => {
        const rows = (await dbs.sql2('SELECT count(*)::int AS n FROM item')).rows[0].n;
        return rows === 3;
      },
      60_000,
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
