import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

/** A process that installs the handler the way `run` does, then leaves a rejection unhandled. */
const SCRIPT = `
import { exitOnUnhandledRejection } from ${JSON.stringify(new URL('./last-resort.ts', import.meta.url).href)};
import { createLogger } from ${JSON.stringify(new URL('../observability/logger.ts', import.meta.url).href)};
exitOnUnhandledRejection(createLogger());
const cause = Object.assign(new Error('duplicate key value violates unique constraint "t_pkey"'), { code: '23505' });
Promise.reject(new Error('applying a -> b', { cause }));
setTimeout(() => console.log('still running'), 2000);
`;

test('an unhandled rejection in run is logged with its cause chain and ends the process with exit code 1', () => {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    encoding: 'utf8',
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
    timeout: 30_000,
  });
  assert.equal(child.status, 1, child.stderr);
  assert.equal(child.stdout, '', 'it stopped at once');
  const line = JSON.parse(child.stderr.trim().split('\n').at(-1)!);
  assert.equal(line.level, 60);
  assert.match(line.msg, /^unhandled promise rejection, a pgbisync bug: stopping/);
  assert.equal(line.reason, 'applying a -> b: duplicate key value violates unique constraint "t_pkey"');
  assert.match(line.err.stack, /caused by: Error: duplicate key value/);
});

/** A process that stopped the way `run` does, then leaves `leftOpen` (JavaScript) open or not. */
function stoppedRun(leftOpen: string) {
  const script = `
import { exitIfLingering } from ${JSON.stringify(new URL('./last-resort.ts', import.meta.url).href)};
import { createLogger } from ${JSON.stringify(new URL('../observability/logger.ts', import.meta.url).href)};
${leftOpen}
process.exitCode = 3;
exitIfLingering(createLogger(), 300);
`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
    timeout: 30_000,
  });
}

test('a stopped run that something keeps alive says what and exits with its code', () => {
  const child = stoppedRun('setInterval(() => {}, 1000);');
  assert.equal(child.status, 3, child.stderr);
  const line = JSON.parse(child.stderr.trim().split('\n').at(-1)!);
  assert.equal(line.level, 40);
  assert.match(line.msg, /^still running 300 ms after stopping, a pgbisync bug/);
  assert.deepEqual(line.open, ['Timeout']);
});

test('a stopped run that closed everything ends at once, without a warning', () => {
  const child = stoppedRun('clearInterval(setInterval(() => {}, 1000));');
  assert.equal(child.status, 3, child.stderr);
  assert.equal(child.stderr, '');
});
