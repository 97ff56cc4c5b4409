import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from './load.ts';
import {
  isSecretName,
  redactConfig,
  redactText,
  redactUrl,
  registerSecrets,
  secretValues,
} from './redact.ts';

const KEY_PEM = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQ\n-----END PRIVATE KEY-----\n';

/** A config with a secret in every field that can hold one. */
function secretConfig() {
  return parseConfig(
    JSON.stringify({
      kafka: {
        brokers: ['k1:9093'],
        sasl: { mechanism: 'scram-sha-256', username: 'sync', password: 'sasl-Pa55word' },
        tls: { ca: 'CA-PEM', cert: 'CERT-PEM', key: KEY_PEM },
      },
      nodes: [
        { name: 'a', url: 'postgres://app:url%40Pa55@h1:5432/app?sslmode=verify-full' },
        { name: 'b', url: 'postgres://app@h2:5432/app?password=query-Pa55&sslpassword=keyPa55phrase' },
      ],
      tables: ['public.accounts'],
      conflicts: { tables: { 'public.tokens': { policy: 'source-wins' } } },
    }),
    'c.yaml',
    {},
  );
}

const SECRETS = [
  'sasl-Pa55word',
  'MIIEvQIBADANBgkqhkiG9w0BAQ',
  'url@Pa55',
  'url%40Pa55',
  'query-Pa55',
  'keyPa55phrase',
];

test('the redacted config masks every secret-bearing field: URL password, ?password=, sasl, tls.key', () => {
  const text = JSON.stringify(redactConfig(secretConfig()));
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${secret} in ${text}`);
  // What is not secret stays readable: the operator needs it to recognise the config.
  for (const kept of ['CA-PEM', 'CERT-PEM', 'sslmode=verify-full', 'app@h2', 'public.tokens', 'sync']) {
    assert.ok(text.includes(kept), `${kept} missing from ${text}`);
  }
});

test('secretValues lists each secret of the config', () => {
  const values = secretValues(secretConfig());
  for (const secret of ['sasl-Pa55word', KEY_PEM, 'url%40Pa55', 'url@Pa55', 'query-Pa55', 'keyPa55phrase']) {
    assert.ok(values.includes(secret), `${JSON.stringify(secret)} not in ${JSON.stringify(values)}`);
  }
  assert.ok(!values.includes('CA-PEM'));
});

test('redactText masks registered values, also JSON-escaped (a PEM key in a JSON log line)', () => {
  registerSecrets(secretConfig());
  const line = JSON.stringify({ msg: 'failed', err: `bad key ${KEY_PEM} and sasl-Pa55word, url@Pa55` });
  const masked = redactText(line);
  for (const secret of SECRETS) assert.ok(!masked.includes(secret), masked);
  assert.ok(!masked.includes('MIIEvQIBADANBgkqhkiG9w0BAQ'), masked);
});

test('redactText masks URL passwords and password pairs it was never told of', () => {
  const cases: [string, string][] = [
    ['connect postgres://u:hunter2x@h:5432/db failed', 'connect postgres://u:***@h:5432/db failed'],
    [
      'postgresql://u@h/db?sslmode=require&password=hunter3y',
      'postgresql://u@h/db?sslmode=require&password=***',
    ],
    ['  password: hunter4z', '  password: ***'],
    ['{"password":"hunter5w"}', '{"password":"***"}'],
    ['password authentication failed for user app', 'password authentication failed for user app'],
  ];
  for (const [input, expected] of cases) assert.equal(redactText(input), expected);
});

test('redactUrl masks the password and secret parameters, keeps the rest', () => {
  assert.equal(
    redactUrl('postgres://u:p4ss@h:5432/db?sslmode=verify-full&password=x&sslrootcert=/ca.pem'),
    'postgres://u:***@h:5432/db?sslmode=verify-full&password=***&sslrootcert=%2Fca.pem',
  );
  assert.equal(redactUrl('not a url'), 'not a url');
});

test('a URL with several hosts: password and secret parameters masked, the host list kept', () => {
  const url = 'postgres://u:p4ss%40w@h1:5432,h2:5433/db?target_session_attrs=read-write&password=x2y';
  assert.equal(
    redactUrl(url),
    'postgres://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write&password=***',
  );
  const values = secretValues({ url });
  for (const secret of ['p4ss%40w', 'p4ss@w', 'x2y']) assert.ok(values.includes(secret), secret);
  assert.equal(redactText(`connect ${url} failed`).includes('p4ss'), false);
});

test('isSecretName: one rule for current and future fields', () => {
  for (const name of ['password', 'sslpassword', 'key', 'sslkey', 'token', 'clientSecret', 'privateKey'])
    assert.ok(isSecretName(name), name);
  for (const name of ['ca', 'cert', 'username', 'keepTopics', 'public.tokens', 'topicPrefix'])
    assert.ok(!isSecretName(name), name);
});
