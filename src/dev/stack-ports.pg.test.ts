/**
 * `dev up` with other ports for an existing state folder: a part that runs elsewhere makes `up` refuse
 * with the fix (it used to start the rest around db1's old port and fail with "does not accept
 * connections"), and a stopped server starts on the port asked for (it used to keep the port of its
 * first start). Starts servers of its own beside the test stack's ports (db1's port + 6 and + 7).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { testEnv } from '../testing/test-env.ts';
import { serverDataRoot } from './paths.ts';
import { PostgresServer } from './postgres-server.ts';
import { DEFAULT_STACK, DevStack } from './stack.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

test('dev up refuses ports a running part does not use, and a stopped server moves to the port asked for', async () => {
  const base = Number(new URL(testEnv.db1Url()).port) + 6;
  const [oldPort, newPort] = [base, base + 1];
  const stateDir = mkdtempSync(join(tmpdir(), 'pgbisync-ports-'));
  const pgMajor = testEnv.pgMajor() || 18;
  const stack = new DevStack({ ...DEFAULT_STACK, stateDir, pgMajor, db1Port: oldPort });
  const [db1] = stack.servers;
  assert.ok(db1 !== undefined);
  try {
    await db1.start();
    writeFileSync(join(stateDir, 'state.json'), JSON.stringify({ options: stack.options }));
    assert.equal(db1.runningPort(), oldPort);

    const up = spawnSync(
      process.execPath,
      [BIN, 'dev', 'up', '--pg', String(pgMajor), '--state-dir', stateDir, '--db1-port', String(newPort)],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(up.status, 1, up.stderr);
    assert.match(up.stderr, new RegExp(`db1 runs on ${oldPort}, not ${newPort}`));
    assert.match(up.stderr, /pgbisync dev down --state-dir/);
    assert.equal(db1.runningPort(), oldPort, 'the running server is left alone');

    await db1.stop();
    const moved = new PostgresServer({ ...db1.spec, port: newPort });
    await moved.start();
    assert.equal(moved.runningPort(), newPort);
    assert.equal(await moved.isReady(), true);
    assert.equal(await db1.isReady(), false, 'nothing listens on the old port any more');
    await moved.stop();
  } finally {
    await db1.stop().catch(() => undefined);
    rmSync(serverDataRoot(stateDir), { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  }
});
