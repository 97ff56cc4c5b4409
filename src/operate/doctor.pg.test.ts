/**
 * `pgbisync doctor` against real PostgreSQL nodes (and the test broker for the Kafka checks): a good
 * setup passes; each broken prerequisite is one FAIL naming the culprit, with its fix.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { PGBISYNC_SCHEMA_SQL } from '../pg/pgbisync-schema.ts';
import { syncConfig } from '../testing/sync-fixture.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';
import { formatDoctor, runDoctor } from './doctor.ts';
import type { DoctorReport } from './doctor-report.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

const fails = (r: DoctorReport) => r.checks.filter((c) => c.status === 'FAIL');

function yamlFor(dbs: TestDatabases, tables: string, nodeB = dbs.db2): string {
  return `kafka: { brokers: [${testEnv.kafkaBrokers().join(', ')}], topicPrefix: test.${dbs.name} }
nodes:
  - { name: ${dbs.name}_a, url: "${dbs.db1}" }
  - { name: ${dbs.name}_b, url: "${nodeB}" }
tables: ${tables}
`;
}

async function both(dbs: TestDatabases, sql: string): Promise<void> {
  await dbs.sql1(sql);
  await dbs.sql2(sql);
}

test('a good setup passes, sequence-filled keys only warn', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY, v text)');
  await both(dbs, 'CREATE TABLE public.s (id bigserial PRIMARY KEY, v text)');
  const report = await runDoctor(syncConfig(dbs, ['public.t', 'public.s']));
  assert.deepEqual(fails(report), [], formatDoctor(report));
  assert.equal(report.ok, true);
  const names = new Set(report.checks.map((c) => c.check));
  for (const expected of [
    'connection',
    'server_version',
    'wal_level',
    'track_commit_timestamp',
    'replication_slots',
    'wal_senders',
    'replication_role',
    'create_publication',
    'session_replication_role',
    'table public.t',
    'columns public.t',
    'broker',
  ]) {
    assert.ok(names.has(expected), `missing check ${expected}:\n${formatDoctor(report)}`);
  }
  const seq = report.checks.filter((c) => c.check === 'sequences public.s');
  assert.equal(seq.length, 2);
  assert.ok(seq.every((c) => c.status === 'warn' && /interleave-sequences/.test(c.fix ?? '')));
  // Both servers run on this host's clock: b's is within the default limit of a's.
  const clock = report.checks.filter((c) => c.check === 'clock_skew');
  assert.equal(clock.length, 1);
  assert.equal(clock[0]?.node, `${dbs.name}_b`);
  assert.equal(clock[0]?.status, 'ok');
  assert.match(
    clock[0]?.detail ?? '',
    new RegExp(`^\\d+ ms (ahead of|behind) ${dbs.name}_a's clock \\(limit 5000 ms\\)$`),
  );
});

test('a table without primary key fails with the fix; a missing table fails naming it', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.nokey (id int NOT NULL, v text)');
  await both(dbs, 'CREATE TABLE public.nokey_u (id int NOT NULL UNIQUE, v text)');
  await dbs.sql1('CREATE TABLE public.only_a (id int PRIMARY KEY)');
  const report = await runDoctor(syncConfig(dbs, ['public.nokey', 'public.nokey_u', 'public.only_a']));
  assert.equal(report.ok, false);
  const f = fails(report);
  const nokey = f.filter((c) => c.check === 'table public.nokey');
  assert.equal(nokey.length, 2, formatDoctor(report)); // on each node
  assert.match(nokey[0]!.detail, /public\.nokey has no primary key/);
  assert.match(nokey[0]!.fix ?? '', /^ALTER TABLE "public"\."nokey" ADD PRIMARY KEY \(/);
  const withUnique = f.find((c) => c.check === 'table public.nokey_u');
  assert.match(withUnique?.fix ?? '', /ADD PRIMARY KEY USING INDEX nokey_u_id_key;$/);
  const missing = f.filter((c) => c.check === 'table public.only_a');
  assert.deepEqual(
    missing.map((c) => [c.node, c.detail]),
    [[`${dbs.name}_b`, `table public.only_a does not exist on ${dbs.name}_b`]],
  );
  assert.match(missing[0]!.fix ?? '', /create public\.only_a on .*_b with the same definition as on .*_a/);
});

test('different column types across nodes fail naming the column', async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.t (id int PRIMARY KEY, amount numeric(10,2), note text)');
  await dbs.sql2('CREATE TABLE public.t (id int PRIMARY KEY, amount text, extra int)');
  const report = await runDoctor(syncConfig(dbs, ['public.t']));
  const f = fails(report);
  assert.deepEqual(
    f.map((c) => [c.node, c.check, c.detail]),
    [
      [
        `${dbs.name}_b`,
        'columns public.t',
        `column amount is numeric(10,2) on ${dbs.name}_a but text on ${dbs.name}_b`,
      ],
      [
        `${dbs.name}_b`,
        'columns public.t',
        `column note (text) exists on ${dbs.name}_a but not on ${dbs.name}_b`,
      ],
      [
        `${dbs.name}_b`,
        'columns public.t',
        `column extra (integer) exists on ${dbs.name}_b but not on ${dbs.name}_a`,
      ],
    ],
    formatDoctor(report),
  );
  assert.equal(
    f[0]!.fix,
    `on ${dbs.name}_b: ALTER TABLE "public"."t" ALTER COLUMN "amount" TYPE numeric(10,2);`,
  );
});

test('an unreachable node, an unknown role and a missing database are one clear FAIL each', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY)');
  const url = new URL(dbs.db2);
  const cases: { url: string; detail: RegExp; fix: RegExp }[] = [
    {
      url: `postgres://postgres@127.0.0.1:1/${dbs.name}`,
      detail: /^cannot reach PostgreSQL at 127\.0\.0\.1:1 \(.*ECONNREFUSED.*\)$/,
      fix: /^start PostgreSQL at 127\.0\.0\.1:1 or fix host\/port in nodes\[1\]\.url/,
    },
    {
      // The dev servers trust every connection, so a wrong password cannot be shown; an unknown role is
      // the authentication failure (SQLSTATE class 28) they do produce.
      url: `postgres://no_such_role:secret@${url.host}/${dbs.name}`,
      detail: /^authentication rejected at .*: role "no_such_role" does not exist$/,
      fix: /^CREATE ROLE "no_such_role" LOGIN REPLICATION/,
    },
    {
      url: `postgres://postgres@${url.host}/no_such_db`,
      detail: /^database no_such_db does not exist at /,
      fix: /^CREATE DATABASE "no_such_db";/,
    },
  ];
  for (const c of cases) {
    const report = await runDoctor(parseConfig(yamlFor(dbs, '[public.t]', c.url), 'test'));
    const nodeB = report.checks.filter((x) => x.node === `${dbs.name}_b`);
    assert.equal(nodeB.length, 1, formatDoctor(report));
    assert.equal(nodeB[0]!.status, 'FAIL');
    assert.match(nodeB[0]!.detail, c.detail);
    assert.match(nodeB[0]!.fix ?? '', c.fix);
    assert.ok(!formatDoctor(report).includes('secret'), 'no password in the output');
    assert.equal(report.ok, false);
  }
});

test('the CLI prints a line per check with fixes, exits 1 on FAIL, and --json', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.nokey (id int, v text)');
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-doctor-'));
  const file = join(dir, 'pgbisync.yaml');
  writeFileSync(file, yamlFor(dbs, '[public.nokey]'));
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, 'doctor', '-c', file, ...args], { encoding: 'utf8', timeout: 120_000 });
  const text = run();
  assert.equal(text.status, 1, text.stderr);
  const lines = text.stdout.trim().split('\n');
  assert.ok(
    lines.some((l) => /^ok {4}\S+_a {2}wal_level +logical$/.test(l)),
    text.stdout,
  );
  const failAt = lines.findIndex((l) =>
    /^FAIL {2}\S+_a {2}table public\.nokey +public\.nokey has no primary key/.test(l),
  );
  assert.ok(failAt >= 0, text.stdout);
  assert.match(lines[failAt + 1] ?? '', /^ {6}fix: ALTER TABLE "public"\."nokey" ADD PRIMARY KEY/);
  assert.match(lines.at(-1) ?? '', /^doctor: \d+ ok, 0 warn, 2 FAIL$/);

  const json = run('--json');
  assert.equal(json.status, 1, json.stderr);
  const parsed = JSON.parse(json.stdout) as DoctorReport;
  assert.equal(parsed.ok, false);
  assert.ok(parsed.checks.every((c) => ['ok', 'warn', 'FAIL'].includes(c.status) && 'fix' in c));
});

test('an unreachable Kafka broker fails naming the brokers', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY)');
  const yaml = yamlFor(dbs, '[public.t]').replace(/brokers: \[[^\]]*\]/, 'brokers: ["127.0.0.1:1"]');
  const report = await runDoctor(parseConfig(yaml, 'test'));
  assert.deepEqual(
    fails(report).map((c) => [c.node, c.check]),
    [['kafka', 'broker']],
  );
  assert.match(fails(report)[0]!.detail, /^cannot reach Kafka at 127\.0\.0\.1:1 \(.*ECONNREFUSED.*\)$/);
});

test('a user without REPLICATION, origin functions, CREATE or table ownership gets each grant', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY)');
  const role = `${dbs.name}_user`;
  await both(dbs, `CREATE ROLE ${role} LOGIN`);
  try {
    await both(dbs, `REVOKE CREATE ON DATABASE ${dbs.name} FROM PUBLIC`);
    const as = (url: string) => {
      const u = new URL(url);
      u.username = role;
      return u.toString();
    };
    const yaml = yamlFor(dbs, '[public.t]', as(dbs.db2)).replace(
      `url: "${dbs.db1}"`,
      `url: "${as(dbs.db1)}"`,
    );
    const report = await runDoctor(parseConfig(yaml, 'test'));
    const a = fails(report).filter((c) => c.node === `${dbs.name}_a`);
    const fixOf = (check: string) => a.find((c) => c.check === check)?.fix;
    assert.equal(fixOf('replication_role'), `ALTER ROLE "${role}" REPLICATION;`, formatDoctor(report));
    assert.match(
      fixOf('origin_functions') ?? '',
      new RegExp(
        `^GRANT EXECUTE ON FUNCTION .*pg_replication_origin_session_setup\\(text.*\\).* TO "${role}";$`,
      ),
    );
    assert.equal(fixOf('create_publication'), `GRANT CREATE ON DATABASE "${dbs.name}" TO "${role}";`);
    assert.equal(fixOf('table public.t'), `ALTER TABLE "public"."t" OWNER TO "${role}";`);
    // Appliers write with session_replication_role = replica in every mode.
    const grant = `GRANT SET ON PARAMETER session_replication_role TO "${role}";`;
    assert.equal(fixOf('session_replication_role'), grant);
    const perTable = await runDoctor(parseConfig(`${yaml}\nmode: per-table\n`, 'test'));
    assert.equal(
      fails(perTable).find((c) => c.node === `${dbs.name}_a` && c.check === 'session_replication_role')?.fix,
      grant,
    );
    await dbs.sql1(grant);
    const granted = await runDoctor(parseConfig(yaml, 'test'));
    assert.equal(
      granted.checks.find((c) => c.node === `${dbs.name}_a` && c.check === 'session_replication_role')
        ?.status,
      'ok',
    );
  } finally {
    await dbs.sql1(`DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await dbs.sql2(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  }
});

test('user triggers that skip applied rows warn with ENABLE ALWAYS; rules that break applying fail', async () => {
  await using dbs = await createTestDatabases();
  await both(
    dbs,
    `CREATE TABLE public.t (id int PRIMARY KEY, v int, updated_at timestamptz);
     CREATE TABLE public.u (id int PRIMARY KEY, v int);
     CREATE TABLE public.plain (id int PRIMARY KEY);
     CREATE TABLE public.audit (id int);
     CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
     CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION public.stamp();
     CREATE TRIGGER always_stamp BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.stamp();
     ALTER TABLE public.t ENABLE ALWAYS TRIGGER always_stamp;
     CREATE RULE audited AS ON INSERT TO public.t DO ALSO INSERT INTO public.audit VALUES (NEW.id);
     CREATE RULE on_update AS ON UPDATE TO public.u DO ALSO INSERT INTO public.audit VALUES (NEW.id)`,
  );
  const config = syncConfig(dbs, ['public.t', 'public.u', 'public.plain']);
  const report = await runDoctor(config);
  const a = report.checks.filter((c) => c.node === `${dbs.name}_a`);
  const t = a.filter((c) => c.check === 'triggers public.t');
  assert.deepEqual(
    t.map((c) => c.status),
    ['warn', 'warn'],
    formatDoctor(report),
  );
  assert.match(t[0]!.detail, /^rule\(s\) audited on public\.t do not fire on rows pgbisync applies/);
  assert.match(t[1]!.detail, /^trigger\(s\) stamp on public\.t do not fire on rows pgbisync applies/);
  assert.match(
    t[1]!.fix ?? '',
    /^only if one must run on applied rows too: ALTER TABLE "public"\."t" ENABLE ALWAYS TRIGGER "stamp";/,
  );
  const u = a.filter((c) => c.check === 'triggers public.u');
  assert.deepEqual(
    u.map((c) => [c.status, c.fix]),
    [
      [
        'FAIL',
        'DROP RULE "on_update" ON "public"."u";  (do its work in a trigger instead; ALTER TABLE ... ENABLE ALWAYS TRIGGER runs that on applied rows too)',
      ],
    ],
  );
  assert.equal(
    a.filter((c) => c.check === 'triggers public.plain').length,
    0,
    'no line for a table without any',
  );
  assert.equal(report.ok, false);
  // The statement doctor gives makes the trigger fire on applied rows: it warns no more.
  await dbs.sql1(t[1]!.fix!.replace(/^only if one must run on applied rows too: /, '').replace(/;.*$/, ';'));
  await dbs.sql1('DROP RULE audited ON public.t');
  const after = await runDoctor(config);
  assert.deepEqual(
    after.checks
      .filter((c) => c.node === `${dbs.name}_a` && c.check === 'triggers public.t')
      .map((c) => [c.status, c.detail]),
    [['ok', 'trigger(s) always_stamp, stamp fire on applied rows (ENABLE ALWAYS / REPLICA)']],
  );
});

test('TOASTable columns without REPLICA IDENTITY FULL warn with the ALTER TABLE and its cost', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.docs (id int PRIMARY KEY, body text)');
  await both(dbs, 'CREATE TABLE public.full_docs (id int PRIMARY KEY, body text)');
  await both(dbs, 'ALTER TABLE public.full_docs REPLICA IDENTITY FULL');
  await both(dbs, 'CREATE TABLE public.nums (id int PRIMARY KEY, n bigint)');
  const report = await runDoctor(syncConfig(dbs, ['public.docs', 'public.full_docs', 'public.nums']));
  assert.deepEqual(fails(report), [], formatDoctor(report));
  const warned = report.checks.filter((c) => c.status === 'warn' && /TOASTable/.test(c.detail));
  assert.deepEqual(
    warned.map((c) => c.check),
    ['table public.docs', 'table public.docs'],
  );
  assert.ok(
    warned.every((c) => /REPLICA IDENTITY FULL;.*more WAL/.test(c.fix ?? '')),
    formatDoctor(report),
  );
});

test('a slot gone after its capture streamed from it fails, with resync as the fix', async () => {
  await using dbs = await createTestDatabases();
  await both(dbs, 'CREATE TABLE public.t (id int PRIMARY KEY)');
  const config = syncConfig(dbs, ['public.t']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  await dbs.sql1(PGBISYNC_SCHEMA_SQL);
  // The capture of a streamed (its snapshot completed), then its slot went away.
  await dbs.sql1('INSERT INTO pgbisync.capture_state (node, slot, snapshot_done_at) VALUES ($1, $2, now())', [
    a,
    `pgbisync_${a}`,
  ]);
  const slotCheck = (r: DoctorReport, node: string) =>
    r.checks.find((c) => c.node === node && c.check === 'slot');
  const lost = await runDoctor(config);
  assert.equal(lost.ok, false);
  assert.equal(slotCheck(lost, a)?.status, 'FAIL', formatDoctor(lost));
  assert.match(
    slotCheck(lost, a)!.detail,
    new RegExp(`^capture of node ${a}: replication slot pgbisync_${a} is gone`),
  );
  assert.match(slotCheck(lost, a)!.fix ?? '', new RegExp(`^run \`pgbisync resync ${a}\``));
  // b's capture never ran: no slot yet is fine.
  assert.deepEqual(
    [slotCheck(lost, b)?.status, slotCheck(lost, b)?.detail],
    ['ok', `pgbisync_${b} not created yet (the capture creates it on its first start)`],
  );
  await dbs.sql1("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [`pgbisync_${a}`]);
  const found = await runDoctor(config);
  assert.equal(slotCheck(found, a)?.status, 'ok', formatDoctor(found));
  assert.match(slotCheck(found, a)!.detail, /idle, wal_status reserved/);
});
