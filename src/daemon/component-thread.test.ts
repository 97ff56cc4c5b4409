import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { ComponentThread } from './component-thread.ts';

const config = parseConfig(
  `
kafka: { brokers: ['127.0.0.1:1'] }
nodes:
  - { name: a, url: 'postgres://127.0.0.1:1/a' }
  - { name: b, url: 'postgres://127.0.0.1:1/b' }
tables: [public.items]
threads: true
`,
  'test config',
);

test('an attempt on the worker thread fails with the error class and code it failed with there', async () => {
  const strays: Error[] = [];
  const thread = new ComponentThread({ config, tables: ['public.items'] }, (e) => strays.push(e));
  try {
    for (let attempt = 1; attempt <= 2; attempt++) {
      // The same worker runs the next attempt.
      await assert.rejects(
        thread.run({ kind: 'capture', node: 'missing' }, new AbortController().signal, () => undefined),
        (error: unknown) => {
          assert.ok(error instanceof FatalError, `attempt ${attempt}: ${String(error)}`);
          assert.equal(error.code, ErrorCode.CONFIG_INVALID);
          assert.match(error.message, /no node named missing/);
          return true;
        },
      );
    }
  } finally {
    await thread.close();
  }
  assert.deepEqual(strays, []);
});
