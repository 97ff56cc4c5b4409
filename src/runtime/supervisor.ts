/**
 * Runs long-lived components (captures, appliers) and restarts one that fails with a retryable error,
 * with exponential backoff (a transaction that lost a race with a local write is retried at once). A
 * BlockedError (one stream waits for an operator) is retried the same way but reported as blocked, while
 * the other components run on. Input one stream cannot read (a MalformedInputError: bytes of its
 * replication stream or a record of its topic; a FatalError for a type it has no mapping for) blocks that
 * stream alone the same way: every other direction runs on. Any other FatalError (an operator must act:
 * configuration, credentials, prerequisites) stops everything: the whole run rejects with it, after
 * every component has stopped.
 */
import {
  BlockedError,
  ErrorCode,
  FatalError,
  isConcurrentApplyFailure,
  MalformedInputError,
  RetryableError,
} from './errors.ts';
import { sleep } from './sleep.ts';

export interface Component {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

export interface SupervisorHooks {
  onRestart?(component: string, error: unknown, delayMs: number): void;
  /** The component failed with a BlockedError and is retried after `delayMs`. */
  onBlocked?(component: string, error: BlockedError, delayMs: number): void;
  onStopped?(component: string): void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A blocked stream checks at least this often whether its target was fixed. */
const MAX_BLOCKED_BACKOFF_MS = 10_000;
/**
 * A transaction that lost a race with a local write (deadlock, serialization failure) is applied again
 * at once: nothing is wrong, so the backoff neither applies nor grows.
 */
const CONCURRENT_RETRY_MS = 50;
/** A component that ran this long without failing starts its backoff over. */
const HEALTHY_AFTER_MS = 60_000;

/** Resolves when `signal` aborts and every component stopped; rejects on the first fatal error. */
export async function supervise(
  components: readonly Component[],
  signal: AbortSignal,
  hooks: SupervisorHooks = {},
): Promise<void> {
  const inner = new AbortController();
  const stop = () => inner.abort();
  // An abort listener never fires for a signal aborted already (SIGTERM while `run` was starting up).
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });
  let fatal: unknown;
  const loops = components.map(async (component) => {
    let backoffMs = MIN_BACKOFF_MS;
    while (!inner.signal.aborted) {
      const started = Date.now();
      try {
        await component.run(inner.signal);
        if (inner.signal.aborted) break;
        // A component that returns on its own without being asked to stop is restarted like a failure.
        throw new RetryableError(`${component.name} stopped without being asked to`, {
          code: ErrorCode.COMPONENT_ENDED,
          hint: 'nothing if it runs again; if it keeps stopping, the warnings before this one say why',
        });
      } catch (error) {
        if (inner.signal.aborted) break;
        const stuck = streamBlocked(error);
        if (stuck === undefined && error instanceof FatalError) {
          fatal ??= error;
          inner.abort();
          break;
        }
        if (isConcurrentApplyFailure(error)) {
          hooks.onRestart?.(component.name, error, CONCURRENT_RETRY_MS);
          await sleep(CONCURRENT_RETRY_MS, inner.signal);
          continue;
        }
        if (Date.now() - started > HEALTHY_AFTER_MS) backoffMs = MIN_BACKOFF_MS;
        if (stuck !== undefined) hooks.onBlocked?.(component.name, stuck, backoffMs);
        else hooks.onRestart?.(component.name, error, backoffMs);
        await sleep(backoffMs, inner.signal);
        backoffMs = Math.min(backoffMs * 2, stuck !== undefined ? MAX_BLOCKED_BACKOFF_MS : MAX_BACKOFF_MS);
      }
    }
    hooks.onStopped?.(component.name);
  });
  await Promise.all(loops);
  signal.removeEventListener('abort', stop);
  if (fatal !== undefined) throw fatal;
}

/** Fatal codes that concern one stream's input, not the whole run (see the module comment). */
const STREAM_INPUT_CODES: ReadonlySet<string> = new Set([ErrorCode.TYPE_UNSUPPORTED]);

/** The error as one stream's blocked state, or undefined when it is not one (retry, or stop all). */
function streamBlocked(error: unknown): BlockedError | undefined {
  if (error instanceof BlockedError) return error;
  const input =
    error instanceof MalformedInputError ||
    (error instanceof FatalError && STREAM_INPUT_CODES.has(error.code));
  if (!input) return undefined;
  return new BlockedError(error.message, {
    code: error.code,
    hint:
      error.hint ??
      'this stream cannot read its input; it is retried and resumes from the same place once the input is fixed',
    cause: error.cause,
  });
}
