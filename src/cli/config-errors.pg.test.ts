/**
 * Bad configuration through the real CLI: each case is one clear line naming the culprit, the driver's
 * own words once (on a `caused by:` line, never pasted into the first), a fix where one exists, and a
 * non-zero exit code.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PASSWORD_ROLE } from '../dev/postgres-server.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

function runCli(args: string[], yaml: string): { code: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-cli-'));
  try {
    const file = join(dir, 'pgbisync.yaml');
    writeFileSync(file, yaml);
    const r = spawnSync(process.execPath, [BIN, ...args, '-c', file], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('bad configs fail with one line naming the culprit and a non-zero exit', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.t (id int PRIMARY KEY)');
  await dbs.sql2('CREATE TABLE public.t (id int PRIMARY KEY)');
  const base = (nodes: string, tables = '[public.t]') =>
    `kafka: { brokers: ["127.0.0.1:1"] }\nnodes:\n${nodes}\ntables: ${tables}\n`;
  const good = `  - { name: a, url: "${dbs.db1}" }\n  - { name: b, url: "${dbs.db2}" }`;
  const url2 = new URL(dbs.db2);
  // The dev servers make this one role authenticate with a password.
  await dbs.sql2(
    `DO $$ BEGIN CREATE ROLE ${PASSWORD_ROLE} LOGIN PASSWORD 'right'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
  );
  const wrongPassword = `${url2.protocol}//${PASSWORD_ROLE}:wrong@${url2.host}${url2.pathname}`;
  const cases: { name: string; yaml: string; first: RegExp; cause?: RegExp; fix?: RegExp }[] = [
    {
      name: 'unknown field',
      yaml: `${base(good)}colour: red\n`,
      first: /^error: .*pgbisync\.yaml: \(root\): unknown field 'colour'$/,
    },
    {
      name: 'bad URL',
      yaml: base(`  - { name: a, url: "mysql://x" }\n  - { name: b, url: "${dbs.db2}" }`),
      first: /^error: .*nodes\[0\]\.url: must be a postgres:\/\/ URL$/,
    },
    {
      name: 'unreachable node',
      yaml: base(
        `  - { name: a, url: "${dbs.db1}" }\n  - { name: b, url: "postgres://postgres@127.0.0.1:1/x" }`,
      ),
      first: /^error: connecting to node b: failed$/,
      cause: /^caused by: .*ECONNREFUSED/,
      fix: /fix: check that the server is running/,
    },
    {
      name: 'missing database',
      yaml: base(
        `  - { name: a, url: "${dbs.db1}" }\n  - { name: b, url: "${url2.protocol}//${url2.username}@${url2.host}/no_such_db" }`,
      ),
      first: /^error: connecting to node b: the database named in the node url does not exist$/,
      cause: /^caused by: database "no_such_db" does not exist$/,
      fix: /fix: create the database/,
    },
    {
      name: 'wrong password',
      yaml: base(`  - { name: a, url: "${dbs.db1}" }\n  - { name: b, url: "${wrongPassword}" }`),
      first: /^error: connecting to node b: authentication failed \(SQLSTATE 28P01\)$/,
      cause: /^caused by: password authentication failed for user "pgbisync_password_check"$/,
      fix: /fix: check the user and password in the node url/,
    },
    {
      name: 'missing table',
      yaml: base(good, '[public.t, public.nope]'),
      first: /^error: table public\.nope does not exist on node a$/,
      fix: /fix: create it on a/,
    },
  ];
  for (const c of cases) {
    const r = runCli(['setup'], c.yaml);
    assert.equal(r.code, 1, `${c.name}: exit code (stderr: ${r.stderr})`);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[0] ?? '', c.first, `${c.name}: ${r.stderr}`);
    if (c.cause !== undefined) {
      const causes = lines.filter((l) => l.startsWith('caused by: '));
      assert.equal(causes.length, 1, `${c.name}: one cause line: ${r.stderr}`);
      assert.match(causes[0] ?? '', c.cause, c.name);
    }
    if (c.fix !== undefined) assert.match(r.stderr, c.fix, c.name);
    assert.ok(!r.stderr.includes(':wrong@'), `${c.name}: a password leaked into the output`);
  }
});
