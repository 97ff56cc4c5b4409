/**
 * SIGHUPs that came while `run` was loading: bin/pgbisync.js listens for them from its first moments
 * (their default action ends the process) and hands the count over here once `run` listens itself.
 */
const KEY = Symbol.for('pgbisync.earlyHangups');

interface EarlyHangups {
  /** Stops bin's listener; how many SIGHUPs it counted. */
  readonly take: () => number;
}

/** How many SIGHUPs came before `run` listened (0 when started otherwise); call once it listens. */
export function takeEarlyHangups(): number {
  const holder = globalThis as { [KEY]?: EarlyHangups };
  const early = holder[KEY];
  if (early === undefined) return 0;
  delete holder[KEY];
  return early.take();
}
