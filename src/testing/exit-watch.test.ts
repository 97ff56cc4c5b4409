import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const WATCH = fileURLToPath(new URL('./exit-watch.ts', import.meta.url));

/** Runs `body` as a test file under `node --test --import exit-watch.ts` (grace 500 ms). */
function runFile(body: string) {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-exit-watch-'));
  try {
    const file = join(dir, 'case.test.mjs');
    writeFileSync(file, `import { test } from 'node:test';\n${body}\n`);
    return spawnSync(process.execPath, ['--test', '--import', WATCH, file], {
      encoding: 'utf8',
      // A runner of its own, not a child of this file's runner.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, PGBISYNC_TEST_EXIT_GRACE_MS: '500' },
      timeout: 30_000,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a test file whose process stays alive after its tests fails, naming what it left open', () => {
  const r = runFile("test('leaks a timer', () => { setInterval(function leftTicking() {}, 1000); });");
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout + r.stderr, /did not end 500 ms after its last test/);
  assert.match(r.stdout + r.stderr, /leftTicking/);
});

test('a test file that closes what it opened passes as before', () => {
  const r = runFile("test('clears its timer', () => { clearInterval(setInterval(() => {}, 1000)); });");
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
