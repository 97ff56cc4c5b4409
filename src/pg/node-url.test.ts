import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstHostUrl, hostUrl, isMultiHost, parseNodeUrl, withHostListOf } from './node-url.ts';

const MULTI =
  'postgres://app:pw%40x@h1:5432,h2:5433,[::1]/app?sslmode=require&target_session_attrs=read-write';

test('the hosts of a libpq multi-host URL, in order, with target_session_attrs', () => {
  assert.equal(isMultiHost(MULTI), true);
  assert.deepEqual(parseNodeUrl(MULTI), {
    hosts: [
      { host: 'h1', port: '5432' },
      { host: 'h2', port: '5433' },
      { host: '[::1]', port: '' },
    ],
    targetSessionAttrs: 'read-write',
  });
  for (const attrs of ['primary', 'any', 'read-only', 'standby'] as const)
    assert.equal(parseNodeUrl(`postgres://u@a,b/db?target_session_attrs=${attrs}`).targetSessionAttrs, attrs);
});

test('a one-host URL: one host, any session, and unchanged by firstHostUrl', () => {
  const url = 'postgres://postgres@127.0.0.1:28000/db1';
  assert.equal(isMultiHost(url), false);
  assert.deepEqual(parseNodeUrl(url), {
    hosts: [{ host: '127.0.0.1', port: '28000' }],
    targetSessionAttrs: 'any',
  });
  assert.equal(firstHostUrl(url), url);
});

test('each host as a one-host URL keeps user, password, database and parameters; new URL reads it', () => {
  const [, second] = parseNodeUrl(MULTI).hosts;
  const one = hostUrl(MULTI, second!);
  assert.equal(one, 'postgres://app:pw%40x@h2:5433/app?sslmode=require&target_session_attrs=read-write');
  const first = new URL(firstHostUrl(MULTI));
  assert.equal(first.hostname, 'h1');
  assert.equal(first.pathname.slice(1), 'app');
  assert.equal(decodeURIComponent(first.password), 'pw@x');
  // Without userinfo or path.
  assert.equal(firstHostUrl('postgres://a:1,b:2'), 'postgres://a:1');
  assert.equal(
    withHostListOf(MULTI, 'postgres://app:***@h1:5432/app?x=1'),
    'postgres://app:***@h1:5432,h2:5433,[::1]/app?x=1',
  );
});

test('malformed host lists and target_session_attrs are refused, naming what is wrong', () => {
  assert.throws(() => parseNodeUrl('postgres://u@a,,b/db'), /host 2 of the host list is not host\[:port\]/);
  assert.throws(() => parseNodeUrl('postgres://u@a,b:99999/db'), /host 2 of the host list/);
  assert.throws(() => parseNodeUrl('postgres://u@a,b:x/db'), /host 2 of the host list/);
  assert.throws(
    () => parseNodeUrl('postgres://u@a,b/db?target_session_attrs=prefer-standby'),
    /target_session_attrs must be one of any, read-write, read-only, primary, standby/,
  );
  assert.throws(() => parseNodeUrl('not a url'), /is not a URL/);
});
