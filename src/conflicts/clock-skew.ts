/**
 * Clock skew between nodes, and the applier's rule that keeps last-writer-wins right under it.
 *
 * A version's time is its commit timestamp, taken from the clock of the server that committed it. When a
 * node's clock runs ahead, its writes carry times in the other nodes' future: a node that applied such a
 * version and then updated the row locally would stamp its update with its own, earlier, clock. Its own
 * copy holds the update; every other node keeps the version the update replaced, as the later one: the
 * nodes differ for good.
 *
 * The rule (as PGD's maximum clock skew): the applier commits a transaction only once the target's clock
 * has passed the transaction's commit time. It queues `pg_sleep` up to that time ahead of it
 * (CLOCK_WAIT_SQL, run by the target server, so it is exact against the clock that stamps local commits),
 * and the transaction's rows stay locked by it meanwhile. Any local write that replaces an applied
 * version therefore commits after it, with a later time, and wins on every node. A commit time more than
 * `conflicts.maxClockSkewMs` ahead is not waited for: the direction is blocked (PGB4004) and retried,
 * and applies it once the target's clock has come within the limit (an operator fixes the clocks).
 *
 * Whether to wait is decided on pgbisync's host with the target's clock offset, measured when the
 * applier connects. The measure is a range (the server read its clock somewhere between sending and
 * receiving), and the decision takes the side that waits: a transaction whose commit time may be ahead
 * of the target's clock gets the wait statement, which costs nothing when it is not (the statement
 * sleeps for the remaining time, if any). Only transactions committed within the last few
 * milliseconds of the target's clock pay the extra statement.
 *
 * Writes that did not see each other (true concurrent conflicts) are still ordered by their servers'
 * clocks, skew included, as under any timestamp-based last-writer-wins: what the rule guarantees is that
 * a write made after seeing a version is stamped after it.
 *
 * `status`, `doctor` and the daemon's metric report the skew between every two nodes from the same
 * measure, and warn above `conflicts.maxClockSkewMs`.
 */
import type { Queryable } from '../pg/table-catalog.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';

export const DEFAULT_MAX_CLOCK_SKEW_MS = 5_000;

/**
 * A server's clock against pgbisync's host: the server's time minus the host's, in milliseconds, as a
 * range (`lowMs` <= true offset <= `highMs`: the server read its clock between the query's sending and
 * its answer), and its middle.
 */
export interface ClockOffset {
  readonly lowMs: number;
  readonly highMs: number;
  readonly offsetMs: number;
}

/**
 * The host's wall clock in ms since the Unix epoch, the basis of measures and decisions. Date.now(), not
 * performance.timeOrigin + performance.now(): that one is the monotonic clock from the process's start,
 * which drifts from the wall clock the servers read (a CI test measured a server on the same host 18 ms
 * "ahead" by it); a whole millisecond is precise enough, the measured range is at least as wide.
 */
const hostClockMs = () => Date.now();

/** Reads `db`'s server clock (`clock_timestamp()`, the clock that stamps its commits) against the host's. */
export async function readClockOffset(db: Queryable): Promise<ClockOffset> {
  const sentMs = hostClockMs();
  const r = await db.query<{ ms: string }>(
    'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::numeric(20, 3)::text AS ms',
  );
  const receivedMs = hostClockMs();
  const serverMs = Number(r.rows[0]?.ms);
  const lowMs = serverMs - receivedMs;
  const highMs = serverMs - sentMs;
  return { lowMs, highMs, offsetMs: (lowMs + highMs) / 2 };
}

/** How far `a`'s clock runs ahead of `b`'s (negative: behind), from two offsets measured on one host. */
export function skewMs(a: ClockOffset, b: ClockOffset): number {
  return a.offsetMs - b.offsetMs;
}

/**
 * The warning for a direction whose source clock is more than `maxSkewMs` away from its target's, or
 * undefined. The fix names the limit and what to do.
 */
export function skewWarning(
  source: string,
  target: string,
  skew: number,
  maxSkewMs: number,
): string | undefined {
  if (Math.abs(skew) <= maxSkewMs) return undefined;
  const how = skew > 0 ? 'ahead of' : 'behind';
  return `clock of ${source} is ${Math.abs(Math.round(skew))} ms ${how} ${target}'s (over conflicts.maxClockSkewMs=${maxSkewMs}): applying waits for the later clock, and beyond the limit blocks; fix: synchronize the nodes' clocks (NTP, chrony)`;
}

/**
 * Waits, on the target server, until its clock has passed $1 (the transaction's commit time) by 1 us.
 * Queued right before the transaction's commit (see ClockGuard).
 */
export const CLOCK_WAIT_SQL =
  'SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) + 0.000001))';

/**
 * Slack of the decision to wait, over the measured range: the target's clock may have drifted from the
 * host's since the measure. A transaction committed up to this long before the target's estimated clock
 * still gets the (then instant) wait statement.
 */
const WAIT_SLACK_MS = 2;

/** A direction's commit time too far ahead of its target's clock: blocked until the clocks agree. */
export class ClockSkewError extends BlockedError {
  constructor(source: string, target: string, commitIso: string, aheadMs: number, maxSkewMs: number) {
    super(
      `${source}'s transaction committed at ${commitIso} is ${Math.round(aheadMs)} ms ahead of ${target}'s clock, over conflicts.maxClockSkewMs=${maxSkewMs}`,
      {
        code: ErrorCode.CLOCK_SKEW,
        hint: `synchronize the clocks of ${source} and ${target} (NTP, chrony); the direction applies it once ${target}'s clock is within conflicts.maxClockSkewMs of it (or raise that limit)`,
      },
    );
  }
}

/** The applier's side of the rule: one per target connection. */
export class ClockGuard {
  readonly #source: string;
  readonly #target: string;
  readonly #maxSkewMs: number;
  #offset: ClockOffset = { lowMs: 0, highMs: 0, offsetMs: 0 };

  constructor(source: string, target: string, maxSkewMs: number) {
    this.#source = source;
    this.#target = target;
    this.#maxSkewMs = maxSkewMs;
  }

  /** Measures the target's clock (when the applier connects). */
  async measure(db: Queryable): Promise<void> {
    this.#offset = await readClockOffset(db);
  }

  /**
   * Whether a transaction committed at `commitTimeUs` needs CLOCK_WAIT_SQL before it commits: its time
   * may be ahead of the target's clock. Throws ClockSkewError when it is surely more than the limit
   * ahead.
   */
  needsWait(commitTimeUs: bigint, commitIso: string, hostNowMs = hostClockMs()): boolean {
    const commitMs = Number(commitTimeUs) / 1000;
    const aheadSurelyMs = commitMs - (hostNowMs + this.#offset.highMs);
    if (aheadSurelyMs > this.#maxSkewMs) {
      throw new ClockSkewError(this.#source, this.#target, commitIso, aheadSurelyMs, this.#maxSkewMs);
    }
    return commitMs > hostNowMs + this.#offset.lowMs - WAIT_SLACK_MS;
  }
}
