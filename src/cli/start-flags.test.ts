/**
 * bin/pgbisync.js restarts itself once with the heap flags and glibc setting that bound its memory
 * (README, Operations: Memory), and leaves them to a caller who sets them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'pgbisync.js');

/** A module that reports, on stderr, the node flags and glibc malloc settings of the process loading it. */
const probe = join(mkdtempSync(join(tmpdir(), 'pgbisync-flags-')), 'probe.mjs');
writeFileSync(
  probe,
  'const seen = { argv: process.execArgv, arena: process.env.MALLOC_ARENA_MAX ?? null, mmap: process.env.MALLOC_MMAP_THRESHOLD_ ?? null };\n' +
    "process.stderr.write(JSON.stringify(seen) + '\\n');\n",
);

interface Seen {
  readonly argv: string[];
  readonly arena: string | null;
  readonly mmap: string | null;
}

/** Runs `pgbisync --version` with `nodeFlags`; returns what the probe saw in the process that ran it. */
async function start(nodeFlags: string[], arena?: string, mmap?: string): Promise<Seen> {
  const env = { ...process.env };
  delete env.MALLOC_ARENA_MAX;
  delete env.MALLOC_MMAP_THRESHOLD_;
  delete env.NODE_OPTIONS;
  if (arena !== undefined) env.MALLOC_ARENA_MAX = arena;
  if (mmap !== undefined) env.MALLOC_MMAP_THRESHOLD_ = mmap;
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [...nodeFlags, '--import', probe, BIN, '--version'],
    { env },
  );
  assert.match(stdout, /^\d+\.\d+\.\d+/);
  const lines = stderr.trim().split('\n');
  // The probe runs in each process image: the last line is the one that ran the command.
  return JSON.parse(lines[lines.length - 1]!) as Seen;
}

test('starts with 16 MB semi-spaces, old-generation growth of 100%, MALLOC_ARENA_MAX=2 and a fixed mmap threshold', async () => {
  const seen = await start([]);
  assert.deepEqual(seen.argv.slice(0, 2), ['--max-semi-space-size=16', '--heap-growing-percent=100']);
  assert.equal(seen.arena, '2');
  assert.equal(seen.mmap, '131072');
});

test("a caller's --heap-growing-percent, MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ win", async () => {
  const seen = await start(['--heap-growing-percent=30'], '4', '65536');
  assert.equal(
    seen.argv.filter((a) => a.startsWith('--heap-growing-percent')).join(),
    '--heap-growing-percent=30',
  );
  assert.ok(seen.argv.includes('--max-semi-space-size=16'));
  assert.equal(seen.arena, '4');
  assert.equal(seen.mmap, '65536');
});

test("a caller's --max-semi-space-size turns the restart off", async () => {
  const seen = await start(['--max-semi-space-size=8']);
  assert.deepEqual(
    seen.argv.filter((a) => !a.startsWith('--import') && a !== probe),
    ['--max-semi-space-size=8'],
  );
  assert.equal(seen.arena, null);
  assert.equal(seen.mmap, null);
});
