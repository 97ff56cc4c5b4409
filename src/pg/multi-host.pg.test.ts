/**
 * Node URLs with several hosts (./node-url.ts): every session made by newPgClient, and the replication
 * connection, goes to the first host that answers and gives the session target_session_attrs asks for,
 * trying the hosts in order; none does: one error naming every host tried. A read-only host here is the
 * test's database on db1 with default_transaction_read_only = on (the test database has the same name on
 * db1 and db2); a real standby is in src/dev/standby.pg.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { PASSWORD_ROLE } from '../dev/postgres-server.ts';
import { FatalError, RetryableError } from '../runtime/errors.ts';
import { classifyPgError } from '../runtime/pg-errors.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { NoMatchingHostError, newPgClient } from './client.ts';
import { ReplicationConnection } from './replication/replication-connection.ts';

/** A port nothing listens on (connections to it are refused). */
async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const hostOf = (url: string): string => new URL(url).host;

/** postgres://postgres@<hosts>/<the test database>?target_session_attrs=<attrs> */
function urlOf(dbs: TestDatabases, hosts: readonly string[], attrs?: string, user = 'postgres'): string {
  const query = attrs === undefined ? '' : `?target_session_attrs=${attrs}`;
  return `postgres://${user}@${hosts.join(',')}/${dbs.name}${query}`;
}

/** The port of the server a session of `url` lands on. */
async function portOf(url: string): Promise<number> {
  const client = newPgClient({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query<{ p: string }>("SELECT current_setting('port') AS p")).rows[0]?.p);
  } finally {
    await client.end();
  }
}

test('a refused host is skipped; read-write skips a read-only host; read-only, primary and any take the first', async () => {
  await using dbs = await createTestDatabases('mh');
  const [db1, db2] = [hostOf(dbs.db1), hostOf(dbs.db2)];
  const [port1, port2] = [Number(new URL(dbs.db1).port), Number(new URL(dbs.db2).port)];
  const refused = `127.0.0.1:${await refusedPort()}`;
  assert.equal(await portOf(urlOf(dbs, [refused, db1])), port1);
  assert.equal(await portOf(urlOf(dbs, [refused, db2], 'read-write')), port2);

  await dbs.sql1(`ALTER DATABASE "${dbs.name}" SET default_transaction_read_only = on`);
  assert.equal(await portOf(urlOf(dbs, [db1, db2], 'read-write')), port2);
  assert.equal(await portOf(urlOf(dbs, [db1, db2], 'read-only')), port1);
  assert.equal(await portOf(urlOf(dbs, [db1, db2], 'primary')), port1);
  assert.equal(await portOf(urlOf(dbs, [db1, db2], 'any')), port1);
  assert.equal(await portOf(urlOf(dbs, [db1, db2])), port1);
  // One host that does not match: the same check, the same error.
  await assert.rejects(portOf(urlOf(dbs, [db1], 'read-write')), /tried 127\.0\.0\.1:\d+ \(read-only/);

  // The replication connection follows the same rule (its check runs on the walsender session).
  const conn = await ReplicationConnection.connect(
    urlOf(dbs, [refused, db1, db2], 'read-write'),
    'pgbisync-test-multi-host',
  );
  try {
    const r = await conn.command<{ port: string }>('SHOW port');
    assert.equal(Number(r.rows[0]?.port), port2);
  } finally {
    await conn.close();
  }
  await dbs.sql2(`ALTER DATABASE "${dbs.name}" SET default_transaction_read_only = on`);
  await assert.rejects(
    ReplicationConnection.connect(urlOf(dbs, [db1, db2], 'read-write'), 'pgbisync-test-multi-host'),
    /no host of the node url gives a target_session_attrs=read-write session/,
  );
});

test('no host matches: one retryable error naming every host tried and why; all refusing the password: an authentication failure', async () => {
  await using dbs = await createTestDatabases('mh');
  const db1 = hostOf(dbs.db1);
  const refused = `127.0.0.1:${await refusedPort()}`;
  await dbs.sql1(`ALTER DATABASE "${dbs.name}" SET default_transaction_read_only = on`);
  const error = await portOf(urlOf(dbs, [refused, db1], 'read-write')).then(
    () => assert.fail('connected'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof NoMatchingHostError, String(error));
  assert.equal(
    error.message.replace(/ECONNREFUSED [\d.:]+/, 'ECONNREFUSED'),
    `no host of the node url gives a target_session_attrs=read-write session; tried ${refused} (connect ECONNREFUSED), ${db1} (read-only: transaction_read_only = on)`,
  );
  assert.ok(classifyPgError(error, 'connecting') instanceof RetryableError);

  const [r1, r2] = [`127.0.0.1:${await refusedPort()}`, `127.0.0.1:${await refusedPort()}`];
  await assert.rejects(portOf(urlOf(dbs, [r1, r2])), (e: Error) => {
    assert.match(
      e.message,
      /^no host of the node url answered; tried 127\.0\.0\.1:\d+ \(connect ECONNREFUSED/,
    );
    assert.equal((e as NoMatchingHostError).code, 'ECONNREFUSED');
    return true;
  });

  const db2 = hostOf(dbs.db2);
  const wrong = urlOf(dbs, [db1, db2], 'read-write', `${PASSWORD_ROLE}:wrong`);
  const auth = await portOf(wrong).then(
    () => assert.fail('connected'),
    (e: unknown) => e,
  );
  assert.equal((auth as NoMatchingHostError).code, '28P01');
  assert.ok(classifyPgError(auth, 'connecting') instanceof FatalError);
  assert.ok(!String((auth as Error).message).includes('wrong'), 'no password in the message');
});
