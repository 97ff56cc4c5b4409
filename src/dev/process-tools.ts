/** Small process helpers for the dev stack: run a command, find a tool, check a port, wait for a pid. */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { ErrorCode, FatalError } from '../runtime/errors.ts';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion; rejects with its stderr when it exits non-zero. */
export function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 600_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error) {
          // The cause's message holds the command and its stderr; stdout (where Maven reports) only this.
          const output = stdout.trim().split('\n').slice(-20).join('\n');
          const shown = output === '' ? '' : `; its output ends with:\n${output}`;
          reject(new Error(`${file} ${args.join(' ')} failed${shown}`, { cause: error }));
        } else {
          resolvePromise({ stdout, stderr });
        }
      },
    );
  });
}

/** Absolute path of a program on PATH, or undefined. */
export function which(program: string): string | undefined {
  const result = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' });
  const found = result.stdout.trim();
  return result.status === 0 && found.length > 0 ? found : undefined;
}

export function requireTool(program: string, installHint: string): string {
  const found = which(program);
  if (found === undefined) {
    throw new FatalError(`${program} is not installed (not found on PATH)`, {
      code: ErrorCode.TOOL_MISSING,
      hint: installHint,
    });
  }
  return found;
}

/** True when nothing listens on 127.0.0.1:port. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.once('error', () => resolvePromise(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => resolvePromise(true));
    });
  });
}

export async function requireFreePort(port: number, what: string, flag: string): Promise<void> {
  if (!(await isPortFree(port))) {
    throw new FatalError(`port ${port} for ${what} is already in use`, {
      code: ErrorCode.PORT_IN_USE,
      hint: `stop what listens there (ss -ltnp 'sport = :${port}') or choose another port with ${flag}`,
    });
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(intervalMs);
  }
  return false;
}

/** Sends SIGTERM, waits up to `graceMs`, then SIGKILL. Resolves when the process is gone. */
export async function stopProcess(pid: number, graceMs: number): Promise<void> {
  if (!isProcessAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitFor(() => !isProcessAlive(pid), graceMs, 100)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(() => !isProcessAlive(pid), 5_000, 50);
}

/** The last `lines` lines of a log file, for error hints. */
export function tailFile(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log written)';
  }
}
