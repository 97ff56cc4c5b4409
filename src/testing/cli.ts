/** Runs pgbisync's CLI (bin/pgbisync.js) as a user does, for tests that drive it from outside. */
import { spawnSync } from 'node:child_process';

export const BIN = new URL('../../bin/pgbisync.js', import.meta.url).pathname;

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `pgbisync <args>`, waited for (killed after `timeoutMs`); its exit code and output. */
export function runCli(
  args: readonly string[],
  o: { readonly timeoutMs?: number; readonly env?: NodeJS.ProcessEnv } = {},
): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: o.timeoutMs ?? 120_000,
    ...(o.env === undefined ? {} : { env: o.env }),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
