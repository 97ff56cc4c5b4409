/**
 * Two-way sync entirely over TLS with authentication on both systems (`dev up --secure`): PostgreSQL
 * with `sslmode=verify-full` and a SCRAM password (the role is refused without TLS), Kafka over its
 * SASL_SSL listener (`kafka.tls.ca`, `kafka.sasl` SCRAM-SHA-256). Every pgbisync session, walsenders
 * included, is checked to be encrypted. Then a wrong CA, a wrong password and a plaintext attempt each
 * fail in `doctor` with one line naming the node or the broker, and the fix.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { ensureTlsMaterial } from '../dev/tls-material.ts';
import { formatDoctor, runDoctor } from '../operate/doctor.ts';
import { setup, teardown } from '../operate/setup.ts';
import { readStatus } from '../operate/status.ts';
import { FatalError } from '../runtime/errors.ts';
import { startSync, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const TABLE = 'CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)';

test('two-way sync over TLS with SCRAM on PostgreSQL and SASL_SSL on Kafka; wrong CA, password or plaintext fail clearly', async () => {
  const secure = testEnv.secure();
  const ca = readFileSync(secure.caFile, 'utf8');
  const otherCa = (await ensureTlsMaterial(mkdtempSync(join(tmpdir(), 'pgbisync-other-ca-')), 'other'))
    .caFile;
  await using dbs = await createTestDatabases();
  const sqls = [dbs.sql1, dbs.sql2];
  for (const sql of sqls) await sql(TABLE);
  await dbs.sql1(`INSERT INTO items SELECT g, 'seed ' || g FROM generate_series(1, 30) g`);

  const url = (dbUrl: string, o: { password?: string; params?: Record<string, string> } = {}) => {
    const u = new URL(dbUrl);
    u.username = secure.pg.user;
    u.password = o.password ?? secure.pg.password;
    for (const [k, v] of Object.entries(o.params ?? { sslmode: 'verify-full', sslrootcert: secure.caFile }))
      u.searchParams.set(k, v);
    return u.toString();
  };
  type Kafka = Record<string, unknown>;
  const goodKafka: Kafka = {
    brokers: secure.kafka.brokers,
    topicPrefix: `test.${dbs.name}`,
    tls: { ca },
    sasl: {
      mechanism: secure.kafka.mechanism,
      username: secure.kafka.username,
      password: secure.kafka.password,
    },
  };
  const config = (o: { url1?: string; kafka?: Kafka } = {}) =>
    parseConfig(
      JSON.stringify({
        kafka: o.kafka ?? goodKafka,
        nodes: [
          { name: `${dbs.name}_a`, url: o.url1 ?? url(dbs.db1) },
          { name: `${dbs.name}_b`, url: url(dbs.db2) },
        ],
        tables: ['public.items'],
        apply: { maxWaitMs: 10 },
      }),
      'tls config',
    );
  const good = config();
  const healthy = await runDoctor(good);
  assert.deepEqual(
    healthy.checks.filter((c) => c.status === 'FAIL'),
    [],
    formatDoctor(healthy),
  );

  await setup(good);
  {
    await using sync = await startSync(good);
    await waitForStreaming(good, sqls);
    await dbs.sql1(`INSERT INTO items SELECT g, 'a ' || g FROM generate_series(101, 120) g`);
    await dbs.sql2(`INSERT INTO items SELECT g, 'b ' || g FROM generate_series(201, 220) g`);
    await dbs.sql2(`UPDATE items SET name = 'b touched' WHERE id <= 5`);
    await waitFor('the nodes converge', async () => {
      const [r1, r2] = [await tableRows(dbs.sql1, 'items'), await tableRows(dbs.sql2, 'items')];
      return r1.length === 70 && JSON.stringify(r1) === JSON.stringify(r2);
    });
    for (const sql of sqls) {
      const r = await sql(
        `SELECT count(*)::int AS sessions, count(*) FILTER (WHERE s.ssl)::int AS encrypted,
                count(*) FILTER (WHERE a.backend_type = 'walsender')::int AS walsenders
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name LIKE 'pgbisync%' AND a.usename = $1`,
        [secure.pg.user],
      );
      const row = r.rows[0] as { sessions: number; encrypted: number; walsenders: number };
      assert.ok(row.sessions >= 2 && row.walsenders === 1, JSON.stringify(row));
      assert.equal(row.encrypted, row.sessions, JSON.stringify(row));
    }
    await sync.stop();
  }
  await teardown(good, { keepTopics: false });

  // Each failure: one FAIL line naming where (the node's host:port or the broker) and the fix.
  const node = `${dbs.name}_a`;
  const pgAt = `127.0.0.1:${new URL(dbs.db1).port}`;
  const failure = async (c: ReturnType<typeof config>, who: string, check: string) => {
    const report = await runDoctor(c);
    const found = report.checks.find((x) => x.node === who && x.check === check && x.status === 'FAIL');
    assert.ok(found !== undefined, formatDoctor(report));
    assert.ok(!found.detail.includes('\n') && !(found.fix ?? '').includes('\n'), formatDoctor(report));
    return found;
  };
  const wrongCaConfig = config({
    url1: url(dbs.db1, { params: { sslmode: 'verify-full', sslrootcert: otherCa } }),
  });
  const wrongCa = await failure(wrongCaConfig, node, 'connection');
  // Outside doctor too: status (and run at its start) stop with the node and the fix, no retrying.
  await assert.rejects(
    readStatus(wrongCaConfig),
    (e: FatalError) =>
      e instanceof FatalError &&
      e.message ===
        `connecting to node ${node}: the server's TLS certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)` &&
      /sslrootcert=/.test(e.hint ?? ''),
  );
  assert.match(wrongCa.detail, new RegExp(`TLS.*${pgAt}`));
  assert.match(wrongCa.fix ?? '', /sslrootcert=.*nodes\[0\]\.url/);
  const wrongPassword = await failure(
    config({ url1: url(dbs.db1, { password: 'wrong' }) }),
    node,
    'connection',
  );
  assert.match(
    wrongPassword.detail,
    new RegExp(`password authentication failed for user ${secure.pg.user} at ${pgAt}`),
  );
  assert.match(wrongPassword.fix ?? '', /nodes\[0\]\.url/);
  const plaintext = await failure(
    config({ url1: url(dbs.db1, { params: { sslmode: 'disable' } }) }),
    node,
    'connection',
  );
  assert.match(plaintext.detail, new RegExp(`${pgAt}.*without TLS`));
  assert.match(plaintext.fix ?? '', /sslmode=verify-full.*nodes\[0\]\.url/);

  const broker = secure.kafka.brokers.join(',');
  const kafkaWrongCa = await failure(
    config({ kafka: { ...goodKafka, tls: { ca: readFileSync(otherCa, 'utf8') } } }),
    'kafka',
    'broker',
  );
  assert.match(kafkaWrongCa.detail, new RegExp(`TLS.*${broker}`));
  assert.match(kafkaWrongCa.fix ?? '', /kafka\.tls\.ca/);
  const kafkaWrongPassword = await failure(
    config({ kafka: { ...goodKafka, sasl: { ...(goodKafka.sasl as object), password: 'wrong' } } }),
    'kafka',
    'broker',
  );
  assert.match(kafkaWrongPassword.detail, new RegExp(`${broker}.*SASL`));
  assert.match(kafkaWrongPassword.fix ?? '', /kafka\.sasl/);
  const kafkaPlain = await failure(
    config({ kafka: { brokers: secure.kafka.brokers, topicPrefix: `test.${dbs.name}` } }),
    'kafka',
    'broker',
  );
  assert.match(kafkaPlain.detail, new RegExp(broker));
  assert.match(kafkaPlain.fix ?? '', /kafka\.tls.*kafka\.sasl/);
});
