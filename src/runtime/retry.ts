/**
 * Runs a step that may meet a node or broker that is down for a moment (a restart, a failover): a
 * RetryableError is tried again with exponential backoff until the step succeeds or `signal` aborts;
 * anything else (fatal, blocked, a bug) is the caller's at once. For start-up checks of a daemon, which
 * must wait for its nodes rather than exit while one of them restarts.
 */
import { RetryableError } from './errors.ts';
import { sleep } from './sleep.ts';

export interface RetryOptions {
  readonly signal: AbortSignal;
  /** Told before each wait: the failure and how long until the next try. */
  readonly onRetry?: (error: RetryableError, delayMs: number) => void;
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
}

/** Resolves with `step`'s result; rejects with its non-retryable error, or its last one when aborted. */
export async function retryTransient<T>(step: () => Promise<T>, o: RetryOptions): Promise<T> {
  let delayMs = o.minDelayMs ?? 500;
  for (;;) {
    try {
      return await step();
    } catch (error) {
      if (!(error instanceof RetryableError) || o.signal.aborted) throw error;
      o.onRetry?.(error, delayMs);
      await sleep(delayMs, o.signal);
      if (o.signal.aborted) throw error;
      delayMs = Math.min(delayMs * 2, o.maxDelayMs ?? 30_000);
    }
  }
}
