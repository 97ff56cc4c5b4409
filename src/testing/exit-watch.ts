/**
 * Loaded into every test file's process (scripts/test.sh runs `node --test --import` with it): once a
 * file's tests are all done, its process must end by itself. A handle left open (a timer, a socket, a
 * worker, a child process) would keep it alive, and the whole run with it, until CI's time ran out with
 * nothing to say which file or why (seen once: a file whose one test had passed never ended). Here such
 * a file fails after EXIT_GRACE_MS, and says what was still open.
 *
 * Only in a test runner's child (NODE_TEST_CONTEXT): the runner itself is given the same `--import`.
 */
import { after } from 'node:test';

/** Time a file's process has, after its last test, to close what it opened. */
const EXIT_GRACE_MS = Number(process.env.PGBISYNC_TEST_EXIT_GRACE_MS ?? 30_000);

type Timer = NodeJS.Timeout & { _destroyed?: boolean };

/**
 * Timers are no handles Node lists: the global setTimeout and setInterval are wrapped to know the live
 * ones, each with where it was made (a stack for an interval, the usual leak; the callback for a timeout).
 */
const timers = new Map<Timer, string>();

if (process.env.NODE_TEST_CONTEXT !== undefined) {
  watchTimers();
  after(() => {
    const timer = setTimeout(() => {
      process.stderr.write(
        `exit watch: this test file's process did not end ${EXIT_GRACE_MS} ms after its last test; still open:\n${openHandles()}\n`,
      );
      process.exit(1);
    }, EXIT_GRACE_MS);
    timer.unref();
  });
}

function watchTimers(): void {
  const { setTimeout: setT, setInterval: setI, clearTimeout: clearT, clearInterval: clearI } = globalThis;
  const forget = (t: unknown) => {
    if (t !== null && typeof t === 'object') timers.delete(t as Timer);
  };
  globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t: Timer = setT(
      (...a: unknown[]) => {
        timers.delete(t);
        fn(...a);
      },
      ms,
      ...args,
    );
    timers.set(t, `timeout ${ms} ms: ${String(fn).replace(/\s+/g, ' ').slice(0, 200)}`);
    return t;
  }) as typeof setTimeout;
  globalThis.setInterval = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t: Timer = setI(fn, ms, ...args);
    const where = (new Error().stack ?? '').split('\n').slice(2, 6).join(' <');
    timers.set(t, `interval ${ms} ms: ${String(fn).replace(/\s+/g, ' ').slice(0, 200)} made at ${where}`);
    return t;
  }) as typeof setInterval;
  // util.promisify(setTimeout) and the like keep working.
  for (const [wrapped, original] of [
    [globalThis.setTimeout, setT],
    [globalThis.setInterval, setI],
  ] as const) {
    Object.defineProperties(wrapped, Object.getOwnPropertyDescriptors(original));
  }
  globalThis.clearTimeout = ((t?: Timer | string | number) => {
    forget(t);
    clearT(t);
  }) as typeof clearTimeout;
  globalThis.clearInterval = ((t?: Timer | string | number) => {
    forget(t);
    clearI(t);
  }) as typeof clearInterval;
}

/** What keeps the event loop alive, one line each, with what identifies it (addresses, callbacks). */
function openHandles(): string {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const lines: string[] = [];
  for (const h of handles) {
    const kind = (h as object).constructor?.name ?? typeof h;
    const s = h as { remoteAddress?: string; remotePort?: number; localPort?: number; pid?: number };
    const spawned = (h as { spawnargs?: string[] }).spawnargs;
    if (s.remotePort !== undefined)
      lines.push(`  ${kind} to ${s.remoteAddress}:${s.remotePort} (local ${s.localPort})`);
    else if (spawned !== undefined) lines.push(`  ${kind} pid ${s.pid}: ${spawned.join(' ').slice(0, 300)}`);
    else lines.push(`  ${kind}`);
  }
  for (const [t, what] of timers) if (!t._destroyed && t.hasRef()) lines.push(`  ${what}`);
  return `${lines.join('\n')}\n  (resources: ${process.getActiveResourcesInfo().join(', ')})`;
}
