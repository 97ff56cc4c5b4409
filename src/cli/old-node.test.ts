/**
 * `bin/pgbisync.js` started by a Node older than 24 (the machine's /usr/bin/node here, 20): it hands
 * over to the project's Node when a checkout has one in .cache/node, and otherwise prints the fix on one
 * line (it used to die with ERR_UNKNOWN_FILE_EXTENSION ".ts").
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;
const OLD_NODE = '/usr/bin/node';
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

function oldNodeMajor(): number {
  if (!existsSync(OLD_NODE)) return 0;
  const r = spawnSync(OLD_NODE, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

const major = oldNodeMajor();
const skip = major === 0 || major >= 24 ? `needs a Node older than 24 at ${OLD_NODE}` : false;
const env = { ...process.env, PGBISYNC_NODE: '', PGBISYNC_NODE_HANDOVER: '' };

test('an old node hands over to the checkout Node and the command runs', { skip }, () => {
  const r = spawnSync(OLD_NODE, [BIN, '--version'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), VERSION);
  assert.doesNotMatch(r.stderr, /ERR_UNKNOWN_FILE_EXTENSION/);
});

test('an old node hands its exit status over', { skip }, () => {
  const r = spawnSync(OLD_NODE, [BIN, 'no-such-command'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /no-such-command/);
});

test('an old node without a Node 24 to hand over to prints the fix on one line', { skip }, () => {
  // The launcher alone, outside the checkout: no .cache/node beside it.
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-old-node-'));
  try {
    mkdirSync(join(dir, 'bin'));
    copyFileSync(BIN, join(dir, 'bin', 'pgbisync.js'));
    const r = spawnSync(OLD_NODE, [join(dir, 'bin', 'pgbisync.js'), '--version'], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0] ?? '',
      /^pgbisync: needs Node\.js 24 or newer, but \/usr\/bin\/node is v\d+.*PGBISYNC_NODE/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
