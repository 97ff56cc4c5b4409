/**
 * Tells whether this thread's event loop was kept from running for longer than a bound: a process
 * stopped by SIGSTOP, a VM paused, a host stalled. A timer notes the time every `tickMs`; a check sees
 * the gap since its last note, and the timer, running late, keeps what it saw: once seen, a stall stays
 * seen (the owner starts again with a new watch).
 *
 * Why: an owner whose lease session was ended meanwhile (it holds its lease only while it answers
 * heartbeats, src/daemon/lease.ts) must not write on waking before its next heartbeat tells it so. On
 * waking, what completed meanwhile (a Kafka acknowledgement that lets the next request go) may run
 * before or after the timers: either way the stall is seen.
 */
export class StallWatch {
  readonly #maxGapMs: number;
  #last = performance.now();
  #stalled: number | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(maxGapMs: number, tickMs = Math.min(500, maxGapMs / 4)) {
    this.#maxGapMs = maxGapMs;
    this.#timer = setInterval(() => {
      this.#stalled ??= this.#gap();
      this.#last = performance.now();
    }, tickMs);
    this.#timer.unref();
  }

  /** Milliseconds the loop did not run, once a stall longer than the bound was seen; else undefined. */
  stalledMs(): number | undefined {
    this.#stalled ??= this.#gap();
    return this.#stalled;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #gap(): number | undefined {
    const gap = performance.now() - this.#last;
    return gap > this.#maxGapMs ? Math.round(gap) : undefined;
  }
}
