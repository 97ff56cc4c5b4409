/**
 * `pgbisync tail` through the CLI on real Kafka: the events a sync captured, decoded one per line, from
 * the beginning, filtered by table, in JSON and text; a wrong node name is one clear error.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLsn } from '../pg/lsn.ts';
import { runCli } from '../testing/cli.ts';
import { writeRunConfig } from '../testing/run-process.ts';
import { startSync, syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { setup, teardown } from './setup.ts';
import type { TailEvent } from './tail.ts';

const cli = (args: string[]) => runCli(args, { timeoutMs: 20_000 });

test('tail prints the decoded events of a node: op, table, key, changed columns, LSN, commit time', async () => {
  await using dbs = await createTestDatabases();
  const ddl = `CREATE TABLE public.acct (id int PRIMARY KEY, owner text, balance int);
               ALTER TABLE public.acct REPLICA IDENTITY FULL;
               CREATE TABLE public.note (id int PRIMARY KEY, body text)`;
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.acct', 'public.note']);
  const [a] = config.nodes.map((n) => n.name) as [string];
  const path = writeRunConfig(config, ['public.acct', 'public.note']);
  await setup(config);
  {
    await using sync = await startSync(config);
    // Once this row crossed, the capture streams (a row written before its slot existed is a snapshot read).
    await dbs.sql1(`INSERT INTO note VALUES (1, 'hello')`);
    await waitFor('the note on b', async () => (await dbs.sql2('SELECT 1 FROM note')).rowCount === 1);
    await dbs.sql1(`INSERT INTO acct VALUES (1, 'ann', 10)`);
    await dbs.sql1(`UPDATE acct SET balance = 20 WHERE id = 1`);
    await waitFor(
      'the update on b',
      async () => (await dbs.sql2('SELECT 1 FROM acct WHERE balance = 20')).rowCount === 1,
    );
    await dbs.sql1(`DELETE FROM acct WHERE id = 1`);
    await waitFor('the delete on b', async () => (await dbs.sql2('SELECT 1 FROM acct')).rowCount === 0);
    await sync.stop();
  }
  const json = cli(['tail', a, '-c', path, '--from', 'beginning', '--table', 'acct', '--max', '4', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const events = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as TailEvent);
  assert.deepEqual(
    events.map((e) => `${e.op} ${e.table ?? ''} ${JSON.stringify(e.key)} ${JSON.stringify(e.changed)}`),
    [
      'c public.acct {"id":"1"} {"id":"1","owner":"ann","balance":"10"}',
      // REPLICA IDENTITY FULL: the before image is on the topic, so only the changed column shows.
      'u public.acct {"id":"1"} {"balance":"20"}',
      'd public.acct {"id":"1"} {}',
      'tombstone  {"id":"1"} {}',
    ],
  );
  // Three transactions in commit order: their LSNs grow.
  const lsns = events.slice(0, 3).map((e) => parseLsn(e.lsn ?? 'missing'));
  assert.ok(lsns[0]! < lsns[1]! && lsns[1]! < lsns[2]!, JSON.stringify(events));
  for (const e of events.slice(0, 3)) {
    assert.match(e.commitTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Math.abs(Date.parse(e.commitTime!) - Date.now()) < 120_000, e.commitTime!);
  }

  const text = cli(['tail', a, '-c', path, '--from', 'beginning', '--max', '5']);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trim().split('\n');
  assert.equal(lines.length, 5, text.stdout);
  // Streamed, or copied in a row batch when it committed before the slot existed.
  assert.match(
    text.stdout,
    /\b(c {2}public\.note {2}key id="1" {2}id="1" body="hello"|r {2}public\.note {2}1 rows \(a row batch\))/,
  );
  assert.match(text.stdout, /\bu {2}public\.acct {2}key id="1" {2}balance="20"/);

  const wrong = cli(['tail', 'nosuchnode', '-c', path]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /no node named 'nosuchnode'.*\n.*fix: name one of: /);
  await teardown(config, { keepTopics: false });
});
