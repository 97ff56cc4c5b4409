/**
 * A SIGHUP while `run` is still loading its modules must not end it (long torture seed 12: a daemon
 * restarted by a fault, frozen at once, then sent the addtable SIGHUP, died of it when thawed: loading
 * the CLI took 2.7 s on the loaded machine, and only then did `run` listen). bin/pgbisync.js counts such
 * SIGHUPs and `run` follows them with a reload once its daemon exists.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'pgbisync.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('run survives a SIGHUP that comes while it loads, before it could listen itself', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-early-hangup-'));
  // Nodes that never answer: run stays in its start-up checks, alive, until stopped.
  writeFileSync(
    join(dir, 'pgbisync.yaml'),
    `kafka: { brokers: ["127.0.0.1:9"], topicPrefix: early }
nodes:
  - { name: a, url: "postgres://postgres@127.0.0.1:9/x" }
  - { name: b, url: "postgres://postgres@127.0.0.1:9/y" }
tables: [public.t]
`,
  );
  const run = spawn(process.execPath, [BIN, 'run', '-c', join(dir, 'pgbisync.yaml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  let log = '';
  run.stderr.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<void>((r) => run.once('exit', () => r()));
  try {
    // bin/pgbisync.js restarts itself with its flags (same pid); the SIGHUP goes once that process has
    // started and long before the CLI has loaded (it logs "starting" once loaded).
    const cmdline = () => {
      try {
        return readFileSync(`/proc/${run.pid}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    };
    for (let i = 0; i < 5_000 && !cmdline().includes('--max-semi-space-size'); i++) await sleep(1);
    assert.ok(cmdline().includes('--max-semi-space-size'), 'run restarted itself with its flags');
    await sleep(100);
    assert.doesNotMatch(log, /"msg":"starting"/, 'the CLI has not loaded yet');
    run.kill('SIGHUP');
    await sleep(1_500);
    assert.equal(run.signalCode, null, `run ended by the SIGHUP: ${log.slice(-1000)}`);
    assert.equal(run.exitCode, null, log.slice(-1000));
    for (let i = 0; i < 300 && !/"msg":"starting"/.test(log); i++) await sleep(100);
    assert.match(log, /"msg":"starting"/, 'run went on loading');
    run.kill('SIGTERM');
    await exited;
    assert.equal(run.signalCode, null, log.slice(-1000));
  } finally {
    if (run.exitCode === null && run.signalCode === null) run.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
