/**
 * Which progress reports reach the log: per key (a node's table being copied), the first report, then
 * one every `intervalMs`, and always the last one (`ended`). A copy reports every range it sends, every
 * few milliseconds (1,331 reports for 1,000,000 rows): an operator needs a line every few seconds.
 */
export class ProgressGate {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #lastLogged = new Map<string, number>();

  constructor(intervalMs: number, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Whether this report is logged. After an ended one, the key's next report is a first one again. */
  admit(key: string, ended: boolean): boolean {
    const now = this.#now();
    const last = this.#lastLogged.get(key);
    const due = last === undefined || now - last >= this.#intervalMs;
    if (ended) this.#lastLogged.delete(key);
    else if (due) this.#lastLogged.set(key, now);
    return ended || due;
  }

  /** Forgets the keys that start with `prefix` (a capture started again: its copy reports anew). */
  forget(prefix: string): void {
    for (const key of this.#lastLogged.keys()) if (key.startsWith(prefix)) this.#lastLogged.delete(key);
  }
}
