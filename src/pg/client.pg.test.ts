/**
 * A session that dies while idle (its server restarted, its backend terminated) must not end the process:
 * a bare node-postgres client does exactly that (an 'error' event without a listener), which took every
 * direction down when one node restarted. Each case runs in a child process, so the crash it guards
 * against is observed rather than suffered.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { testEnv } from '../testing/test-env.ts';

const run = promisify(execFile);
const CLIENT_MODULE = new URL('./client.ts', import.meta.url).href;

/** Connects, has its own backend terminated by another session while idle, then queries again. */
function script(make: 'bare' | 'ours'): string {
  return `
    import pg from 'pg';
    import { newPgClient } from ${JSON.stringify(CLIENT_MODULE)};
    const url = process.env.URL;
    const lost = [];
    const client = ${make === 'bare' ? 'new pg.Client({ connectionString: url })' : 'newPgClient({ connectionString: url }, (e) => lost.push(e.message))'};
    await client.connect();
    const pid = (await client.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    const killer = new pg.Client({ connectionString: url });
    await killer.connect();
    await killer.query('SELECT pg_terminate_backend($1)', [pid]);
    await killer.end();
    await new Promise((r) => setTimeout(r, 500));
    const next = await client.query('SELECT 1').then(() => 'answered', (e) => 'rejected');
    console.log(JSON.stringify({ lost: lost.length, next }));
  `;
}

async function runScript(make: 'bare' | 'ours'): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--input-type=module', '-e', script(make)], {
      env: { ...process.env, URL: testEnv.db1Url() },
      cwd: new URL('../..', import.meta.url).pathname,
    });
    return { code: 0, ...r };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('a bare pg client whose idle session is terminated ends the process', async () => {
  const r = await runScript('bare');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Emitted 'error' event on Client instance/);
});

test('a client from newPgClient reports the loss and fails its next query; the process lives on', async () => {
  const r = await runScript('ours');
  assert.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout.trim()) as { lost: number; next: string };
  assert.ok(seen.lost >= 1, 'the loss reaches onLost');
  assert.equal(seen.next, 'rejected');
});

test('every session detects a dead peer within a bound: server keepalives and tcp_user_timeout, client keepalives', async () => {
  const { CLIENT_KEEPALIVE_DELAY_MS, newPgClient, SERVER_TCP_SETTINGS } = await import('./client.ts');
  // A caller's own startup options are kept beside ours.
  const client = newPgClient({
    connectionString: testEnv.db1Url(),
    options: '-c idle_session_timeout=60000',
  });
  await client.connect();
  try {
    const r = await client.query<Record<string, string>>(
      `SELECT current_setting('tcp_keepalives_idle') AS tcp_keepalives_idle,
              current_setting('tcp_keepalives_interval') AS tcp_keepalives_interval,
              current_setting('tcp_keepalives_count') AS tcp_keepalives_count,
              current_setting('tcp_user_timeout') AS tcp_user_timeout,
              current_setting('idle_session_timeout') AS idle_session_timeout`,
    );
    assert.deepEqual({ ...r.rows[0] }, { ...SERVER_TCP_SETTINGS, idle_session_timeout: '1min' });
    const connection = (client as unknown as { connection: Record<string, unknown> }).connection;
    assert.equal(connection._keepAlive, true);
    assert.equal(connection._keepAliveInitialDelayMillis, CLIENT_KEEPALIVE_DELAY_MS);
  } finally {
    await client.end();
  }
});
