/**
 * `pgbisync run` as a child process, for tests that crash it: a config file for a test's sync, start
 * (logs kept in a file when asked), and SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { testEnv } from './test-env.ts';

const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

/**
 * Writes a config file for `config`'s nodes and topic prefix (JSON is YAML) syncing `tables`, with
 * `extra` top-level sections; returns its path in a fresh temporary folder.
 */
export function writeRunConfig(config: Config, tables: readonly string[], extra: object = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgbisync-test-'));
  const path = join(dir, 'pgbisync.yaml');
  writeFileSync(
    path,
    JSON.stringify({
      kafka: { brokers: testEnv.kafkaBrokers(), topicPrefix: config.kafka.topicPrefix },
      nodes: config.nodes,
      tables,
      ...extra,
    }),
  );
  return path;
}

/** Starts `pgbisync run -c configPath` on a free HTTP port; its JSON logs go to `logPath` if given. */
export function startRun(configPath: string, logPath?: string): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'run', '-c', configPath, '--http-port', '0'], {
    stdio: ['ignore', 'ignore', logPath === undefined ? 'ignore' : 'pipe'],
    env: { ...process.env, PGBISYNC_LOG_FORMAT: 'json', PGBISYNC_LOG_LEVEL: 'info' },
  });
  if (logPath !== undefined) {
    let log = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      writeFileSync(logPath, log);
    });
  }
  return child;
}

/** SIGKILLs `child` (if it still runs) and waits until it is gone. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}
