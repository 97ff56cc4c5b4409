/**
 * Tells whether this thread's event loop was kept from running for longer than a bound: a process
 * stopped by SIGSTOP, a VM paused, a host stalled. A timer notes the time every `tickMs`; a check made
 * when the loop runs again, before that timer's next turn, sees the gap since its last note.
 *
 * Why: an owner whose lease session was ended meanwhile (it holds its lease only while it answers
 * heartbeats, src/daemon/lease.ts) must not write on waking before its next heartbeat tells it so. On
 * waking, the loop runs the callbacks of I/O that completed during the stop (a Kafka acknowledgement that
 * lets the next request go) before its timers: a check there still sees the gap.
 */
export class StallWatch {
  readonly #maxGapMs: number;
  #last = performance.now();
  readonly #timer: NodeJS.Timeout;

  constructor(maxGapMs: number, tickMs = Math.min(500, maxGapMs / 4)) {
    this.#maxGapMs = maxGapMs;
    this.#timer = setInterval(() => {
      this.#last = performance.now();
    }, tickMs);
    this.#timer.unref();
  }

  /** Milliseconds the loop did not run, when more than the bound; undefined otherwise. */
  stalledMs(): number | undefined {
    const gap = performance.now() - this.#last;
    return gap > this.#maxGapMs ? Math.round(gap) : undefined;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
