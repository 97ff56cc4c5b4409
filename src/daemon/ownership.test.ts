/** The pure parts of ownership: lease keys, owner names, the instance from config and env, 55006 PIDs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import {
  applyComponent,
  captureComponent,
  leaseKey,
  ownedComponents,
  ownerAppName,
  parseOwnerAppName,
  standbyAppName,
} from '../operate/ownership.ts';
import { FatalError } from '../runtime/errors.ts';
import { resolveInstance } from './lease.ts';
import { leftoverPid } from './owned-component.ts';

const CONFIG = `
kafka: { brokers: [127.0.0.1:9092] }
nodes:
  - { name: db1, url: "postgres://u@h/db1" }
  - { name: db2, url: "postgres://u@h/db2" }
tables: [public.t]
`;

test('each component has its own stable lease key, a positive int4', () => {
  const names = ownedComponents(parseConfig(CONFIG, 'test')).map((c) => c.name);
  assert.deepEqual(names, ['capture db1', 'capture db2', 'apply db1->db2', 'apply db2->db1']);
  const keys = names.map(leaseKey);
  assert.equal(new Set(keys).size, keys.length);
  for (const k of keys) assert.ok(Number.isInteger(k) && k >= 0 && k <= 0x7fffffff);
  // Stable across versions: instances of two versions must contend for the same lock.
  assert.equal(leaseKey('capture db1'), leaseKey(captureComponent('db1').name));
  assert.deepEqual(applyComponent('db1', 'db2'), { name: 'apply db1->db2', node: 'db2' });
});

test('an owner application_name carries the instance and since when, and fits in 63 bytes', () => {
  const since = new Date('2026-12-04T10:00:00Z');
  const name = ownerAppName('x'.repeat(32), since);
  assert.ok(Buffer.byteLength(name) <= 63, name);
  assert.deepEqual(parseOwnerAppName(name), { instance: 'x'.repeat(32), since: since.toISOString() });
  const standby = standbyAppName('x'.repeat(32), 'apply db1->db2', true);
  assert.ok(Buffer.byteLength(standby) <= 63, standby);
  assert.equal(parseOwnerAppName(standby), undefined);
  assert.equal(parseOwnerAppName('pgbisync standby a'), undefined);
  assert.equal(parseOwnerAppName('psql'), undefined);
});

test('the instance comes from the config, the environment overriding it; a preferred node must exist', () => {
  const config = parseConfig(`${CONFIG}instance: { name: server1, prefer: [db1] }\n`, 'test');
  assert.deepEqual(resolveInstance(config, {}), { name: 'server1', prefer: ['db1'] });
  assert.deepEqual(resolveInstance(config, { PGBISYNC_INSTANCE: 'b', PGBISYNC_PREFER: 'db2, db1' }), {
    name: 'b',
    prefer: ['db2', 'db1'],
  });
  assert.match(resolveInstance(parseConfig(CONFIG, 'test'), {}).name, /^[A-Za-z0-9_.:-]{1,32}$/);
  assert.throws(
    () => resolveInstance(parseConfig(`${CONFIG}instance: { prefer: [db3] }\n`, 'test'), {}),
    (e: unknown) => e instanceof FatalError && /instance\.prefer\[0\]: no node named "db3"/.test(e.message),
  );
  assert.throws(
    () => resolveInstance(config, { PGBISYNC_PREFER: 'nope' }),
    (e: unknown) => e instanceof FatalError && /PGBISYNC_PREFER: no node named "nope"/.test(e.message),
  );
  assert.throws(() => resolveInstance(config, { PGBISYNC_INSTANCE: 'has space' }), FatalError);
  assert.throws(() => parseConfig(`${CONFIG}instance: { name: "a b" }\n`, 'test'), /instance\.name/);
});

test('the backend a 55006 names is found through the causes; other errors name none', () => {
  const pgError = (message: string, code: string) => Object.assign(new Error(message), { code });
  const slot = new Error('streaming failed', {
    cause: pgError('replication slot "pgbisync_a" is active for PID 4242', '55006'),
  });
  assert.equal(leftoverPid(slot), 4242);
  const origin = pgError('replication origin with ID 1 is already active for PID 77', '55006');
  assert.equal(leftoverPid(new AggregateError([new Error('x'), origin])), 77);
  assert.equal(leftoverPid(pgError('is active for PID 5', '57P01')), undefined);
  assert.equal(leftoverPid(new Error('active for PID 5')), undefined);
});
