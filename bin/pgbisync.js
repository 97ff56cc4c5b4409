#!/usr/bin/env node
// Runs the CLI from its TypeScript sources (Node 24 strips types natively), or from dist/
// when the package was built and published without sources.
import { existsSync } from 'node:fs';

// V8 sizes the young generation from the machine's memory (two 64 MB semi-spaces here), which a
// replication process allocating fast fills before every scavenge: 16 MB semi-spaces cut the peak RSS of
// `npm run bench`'s one-way run from ~460 to ~360 MiB at the same throughput (measured; 4 and 8 MB cost
// throughput, a capped old generation thrashes). The flag only works at start-up, so the process replaces
// itself once (same pid: signals and supervisors see one process). A flag given by the caller wins.
// The new process also gets MALLOC_ARENA_MAX=2 unless the caller set it: glibc gives each thread that
// allocates (compression, DNS, the thread pool) an arena of its own that keeps its freed memory, about
// 30 MiB of the bench's peak RSS (measured: 359-378 -> 330 MiB, same throughput).
const SEMI_SPACE_FLAG = '--max-semi-space-size';
const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes(SEMI_SPACE_FLAG));
if (!given && typeof process.execve === 'function') {
  process.execve(
    process.execPath,
    [process.execPath, `${SEMI_SPACE_FLAG}=16`, ...process.execArgv, ...process.argv.slice(1)],
    { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' },
  );
}

const src = new URL('../src/cli/main.ts', import.meta.url);
const { main } = await import(existsSync(src) ? src.href : new URL('../dist/cli/main.js', import.meta.url).href);
await main(process.argv);
