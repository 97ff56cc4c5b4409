/**
 * `pgbisync run`'s last line of defence against a promise rejection nobody handled. Every failure of a
 * component is meant to reach the supervisor, which restarts or blocks that component alone while the
 * others run on (DESIGN section 2); an unhandled rejection is a bug that escaped it, and node would end
 * the process with nothing but the raw error and its internal stack. This logs it as what it is, with
 * its cause chain, and exits 1. It handles nothing: it only makes the crash say why.
 */
import type { Logger } from '../observability/logger.ts';
import { describeError } from '../runtime/errors.ts';

/** Exit code of a process stopped by an unhandled rejection (the same as any fatal error's). */
export const UNHANDLED_REJECTION_EXIT_CODE = 1;

/** Makes an unhandled rejection log its error and cause chain, then exit; returns the uninstaller. */
export function exitOnUnhandledRejection(log: Logger): () => void {
  const onRejection = (reason: unknown) => {
    log.fatal(
      { err: reason, reason: describeError(reason) },
      'unhandled promise rejection, a pgbisync bug: stopping (report it with this line; started again, every component resumes where it stopped)',
    );
    process.exit(UNHANDLED_REJECTION_EXIT_CODE);
  };
  process.on('unhandledRejection', onRejection);
  return () => process.off('unhandledRejection', onRejection);
}

/** Time `pgbisync run` has, once stopped, to close what it opened before it exits anyway. */
export const STOP_LINGER_MS = 5_000;

/**
 * Arms an exit for a stopped `pgbisync run` whose process would not end by itself: every connection,
 * timer and thread is meant to be closed by then, and the process ends as soon as the last one is (this
 * timer does not keep it alive). One left open is a pgbisync bug that would keep a stopped daemon alive
 * until its supervisor killed it (systemd after 90 s, Kubernetes after its grace period): after `ms` it
 * is logged, with what was still open, and the process exits with the code it had.
 */
export function exitIfLingering(log: Logger, ms = STOP_LINGER_MS): void {
  setTimeout(() => {
    log.warn(
      { open: process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap') },
      `still running ${ms} ms after stopping, a pgbisync bug (report it with this line): exiting`,
    );
    process.exit();
  }, ms).unref();
}
