/** The bench's knobs: BENCH_PGBISYNC_CONFIG parsing and how it merges into the config pgbisync gets. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeConfig, readSettings } from './settings.ts';

function withEnv<T>(name: string, value: string | undefined, body: () => T): T {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return body();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

test('BENCH_PGBISYNC_CONFIG: a JSON object, {} when unset, a clear error otherwise', () => {
  assert.deepEqual(
    withEnv('BENCH_PGBISYNC_CONFIG', undefined, () => readSettings().pgbisyncConfig),
    {},
  );
  assert.deepEqual(
    withEnv('BENCH_PGBISYNC_CONFIG', '{"apply":{"maxBatchRows":2000}}', () => readSettings().pgbisyncConfig),
    { apply: { maxBatchRows: 2000 } },
  );
  assert.throws(
    () => withEnv('BENCH_PGBISYNC_CONFIG', 'apply: 1', () => readSettings()),
    /^Error: BENCH_PGBISYNC_CONFIG: not JSON/,
  );
  assert.throws(
    () => withEnv('BENCH_PGBISYNC_CONFIG', '[1]', () => readSettings()),
    /^Error: BENCH_PGBISYNC_CONFIG: expected a JSON object/,
  );
});

test('overrides merge into the written config key by key; lists and values are replaced', () => {
  const base = {
    kafka: { brokers: ['127.0.0.1:9092'], topicPrefix: 'bench_x' },
    tables: ['public.bulk', 'public.steady'],
    http: { port: 0 },
  };
  assert.deepEqual(
    mergeConfig(base, { kafka: { compression: 'none' }, tables: ['public.bulk'], apply: { maxWaitMs: 5 } }),
    {
      kafka: { brokers: ['127.0.0.1:9092'], topicPrefix: 'bench_x', compression: 'none' },
      tables: ['public.bulk'],
      http: { port: 0 },
      apply: { maxWaitMs: 5 },
    },
  );
  assert.deepEqual(base.kafka, { brokers: ['127.0.0.1:9092'], topicPrefix: 'bench_x' });
});
