/**
 * No secret in any output: setup, doctor, run (its whole log, /status, /healthz), status --json and
 * teardown, as real processes against the real stack, with a known secret in every field that can hold
 * one (a URL's password, `?password=` and `?sslpassword=` in a URL, `kafka.sasl.password`,
 * `kafka.tls.key`). Every byte they print is grepped for each secret. The Kafka secrets cannot work
 * against the plaintext test broker: a second config with them is run until it fails, and its start-up
 * log and its errors are grepped the same way (the start-up log printed `kafka.tls.key` before).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from '../testing/cli.ts';
import { waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { testEnv } from '../testing/test-env.ts';

const ENV = { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'debug' };

const URL_PASSWORD = 'UrlPw-7f3a9c';
const QUERY_PASSWORD = 'QueryPw-51be2d';
const SSL_PASSWORD = 'SslKeyPw-c04e11';
const SASL_PASSWORD = 'SaslPw-9d8e7f';
const KEY_BODY = 'MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDsecretkeybody';
const TLS_KEY = `-----BEGIN PRIVATE KEY-----\n${KEY_BODY}\n-----END PRIVATE KEY-----\n`;
const SECRETS = [URL_PASSWORD, QUERY_PASSWORD, SSL_PASSWORD, SASL_PASSWORD, KEY_BODY];

function cli(args: string[]): { code: number | null; output: string } {
  const r = runCli(args, { env: ENV });
  return { code: r.code, output: r.stdout + r.stderr };
}

/** `pgbisync run` until `until` resolves (or it exits), then SIGTERM; everything it printed. */
async function runUntil(
  args: string[],
  until: (output: () => string) => Promise<void>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [BIN, 'run', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: ENV,
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await until(() => output);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
  // SIGTERM while run was still starting up used to be lost (its components kept retrying forever):
  // a run that does not stop within the grace is killed and reported.
  const grace = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(grace);
  assert.notEqual(child.signalCode, 'SIGKILL', `run did not stop on SIGTERM:\n${output.slice(-3000)}`);
  return { code, output };
}

function assertNoSecret(what: string, output: string): void {
  for (const secret of SECRETS) {
    assert.ok(!output.includes(secret), `${what} printed the secret ${secret}:\n${output}`);
  }
}

test('setup, doctor, run, /status, status --json and teardown never print a secret', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.accounts (id int PRIMARY KEY, owner text)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const withSecret = (url: string, f: (u: URL) => void) => {
    const u = new URL(url);
    f(u);
    return u.toString();
  };
  // The dev servers trust local connections: the passwords are sent nowhere, but flow through every path.
  const url1 = withSecret(dbs.db1, (u) => {
    u.password = URL_PASSWORD;
  });
  const url2 = withSecret(dbs.db2, (u) => {
    u.searchParams.set('password', QUERY_PASSWORD);
    u.searchParams.set('sslpassword', SSL_PASSWORD);
  });
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-secrets-'));
  const base = {
    nodes: [
      { name: a, url: url1 },
      { name: b, url: url2 },
    ],
    tables: ['public.accounts'],
    apply: { maxWaitMs: 10 },
  };
  const plain = join(dir, 'plain.yaml');
  writeFileSync(
    plain,
    JSON.stringify({ kafka: { brokers: testEnv.kafkaBrokers(), topicPrefix: `test.${dbs.name}` }, ...base }),
  );
  const c = ['-c', plain];

  const doctor = cli(['doctor', ...c]);
  assertNoSecret('doctor', doctor.output);
  const setup = cli(['setup', ...c]);
  assert.equal(setup.code, 0, setup.output);
  assertNoSecret('setup', setup.output);

  const served: string[] = [];
  const run = await runUntil([...c, '--http-port', '0'], async (output) => {
    await dbs.sql1(`INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 20) g`);
    await waitFor(`rows on db2 (run log: ${output()})`, async () => {
      const n = (await dbs.sql2('SELECT count(*)::int AS n FROM accounts')).rows[0].n as number;
      return n === 20;
    });
    const http = /"http":"(http:\/\/[^"]+)"/.exec(output())?.[1];
    assert.ok(http !== undefined, `run logs its HTTP address: ${output()}`);
    for (const path of ['/status', '/healthz', '/metrics'])
      served.push(await (await fetch(http + path)).text());
    const status = cli(['status', ...c, '--json']);
    assert.equal(status.code, 0, status.output);
    served.push(status.output);
  });
  assert.equal(run.code, 0, run.output);
  assert.match(run.output, /"msg":"starting"/);
  assertNoSecret('run', run.output);
  assertNoSecret('/status, /healthz, /metrics, status --json', served.join('\n'));

  // The same nodes with Kafka secrets, against a broker that speaks neither TLS nor SASL: every
  // command fails, and neither its start-up log nor its errors may show them.
  const secure = join(dir, 'secure.yaml');
  writeFileSync(
    secure,
    JSON.stringify({
      kafka: {
        brokers: testEnv.kafkaBrokers(),
        topicPrefix: `test.${dbs.name}`,
        sasl: { mechanism: 'scram-sha-256', username: 'sync', password: SASL_PASSWORD },
        tls: { key: TLS_KEY, rejectUnauthorized: true },
      },
      ...base,
    }),
  );
  const s = ['-c', secure];
  const failing = await runUntil([...s, '--http-port', '0', '--duration', '8'], async (output) => {
    await waitFor('run logs its start', async () => output().includes('"msg":"starting"'));
  });
  assert.match(failing.output, /"key":"\*\*\*"/, 'the start-up log shows tls.key masked');
  assertNoSecret('run with Kafka secrets', failing.output);
  for (const command of ['doctor', 'status']) {
    const r = cli([command, ...s]);
    assert.notEqual(r.code, 0, r.output);
    assertNoSecret(command, r.output);
  }

  const teardown = cli(['teardown', ...c]);
  assert.equal(teardown.code, 0, teardown.output);
  assertNoSecret('teardown', teardown.output);
});
