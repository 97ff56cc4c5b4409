/**
 * The capture side's ack order, in one place.
 *
 * Rule (no loss): the slot's flush LSN may advance to a transaction's end LSN only after Kafka
 * acknowledged every event of that transaction AND of every earlier transaction. Transactions are
 * tracked in commit order; acknowledgements may arrive in any order, confirmation advances in order.
 *
 * Keepalives: the server's walEnd says nothing of the publication is pending before it. Such a position
 * becomes confirmable once everything tracked before it is acknowledged, which lets the slot advance
 * while the synced tables are idle but the database is busy (no unbounded WAL retention).
 *
 * A failed acknowledgement poisons the tracker: nothing after it is ever confirmed; the capture restarts
 * and re-reads from the slot's last confirmed position (at-least-once).
 */
export class AckTracker {
  readonly #pending: { lsn: bigint; acked: boolean }[] = [];
  readonly #onConfirm: (lsn: bigint) => void;
  #confirmed: bigint;
  #failed: unknown;

  /** `onConfirm` is called with each new, strictly increasing, confirmable LSN. */
  constructor(startLsn: bigint, onConfirm: (lsn: bigint) => void) {
    this.#confirmed = startLsn;
    this.#onConfirm = onConfirm;
  }

  get confirmedLsn(): bigint {
    return this.#confirmed;
  }

  get failure(): unknown {
    return this.#failed;
  }

  /**
   * Tracks a transaction whose events are being sent; `acked` settles when Kafka acknowledged all of
   * them. Must be called in commit order.
   */
  track(endLsn: bigint, acked: Promise<unknown>): void {
    const entry = { lsn: endLsn, acked: false };
    this.#pending.push(entry);
    acked.then(
      () => {
        entry.acked = true;
        this.#drain();
      },
      (error: unknown) => {
        this.#failed ??= error;
      },
    );
  }

  /** A keepalive position: confirmable once everything tracked before it is acknowledged. */
  idle(walEnd: bigint): void {
    if (this.#pending.length === 0) {
      this.#advance(walEnd);
    } else {
      this.#pending.push({ lsn: walEnd, acked: true });
    }
  }

  #drain(): void {
    if (this.#failed !== undefined) return;
    let last: bigint | undefined;
    while (this.#pending.length > 0 && this.#pending[0]?.acked === true) {
      last = this.#pending.shift()?.lsn;
    }
    if (last !== undefined) this.#advance(last);
  }

  #advance(lsn: bigint): void {
    if (this.#failed !== undefined || lsn <= this.#confirmed) return;
    this.#confirmed = lsn;
    this.#onConfirm(lsn);
  }
}
