/**
 * Which transaction a node's stamp slot holds (../operate/stamp-keeper.ts): the oldest one whose rows may
 * still meet an older change from another node, so their commit times must stay readable — once that
 * matters.
 *
 * A mark is a node's snapshot xmin read at a time of its clock: every transaction that committed after
 * that time has an xid from the mark on (it was running then, or began later). Holding a mark's xid keeps
 * the commit times of every row written after the mark's time. The candidate is the newest mark not later
 * than the node's watermark, the time before which no change can still arrive from another node (the
 * oldest mark while the watermark is unknown, or older than every mark).
 *
 * A hold is not free: vacuum keeps every dead row version younger than it, and a workload updating the
 * same rows then slows down badly (measured: a hold kept through the bench's two minutes took its writers
 * from 2,068 to 678-781 changes/s, at nearly four times the whole pipeline's CPU). So the slot holds nothing while the candidate is younger than
 * `minAgeXids` (half of the server's `vacuum_freeze_min_age`: vacuum does not freeze younger rows in its
 * normal course, and commit timestamps are truncated only behind frozen xids), and holds the candidate
 * once it is older; it never reaches back more than `maxAgeXids` (PostgreSQL forces vacuums to freeze old
 * xids before they wrap around: a hold must not fight them).
 */

/** A node's snapshot xmin (a full xid) and when it was read (ms since the Unix epoch, the node's clock). */
export interface XidMark {
  readonly atMs: number;
  readonly xid: bigint;
}

export interface HoldChoice {
  /** The xid to hold, or null when nothing is to be held (the slot's xmin is cleared). */
  readonly hold: bigint | null;
  /** True when the watermark asked for an older hold than `maxAgeXids` allows. */
  readonly capped: boolean;
}

export interface HoldLimits {
  /** A candidate younger than this many xids is not held. */
  readonly minAgeXids: bigint;
  /** A hold never reaches back further than this many xids. */
  readonly maxAgeXids: bigint;
}

/** The mark a hold would take: the newest one not later than the watermark, else the oldest one. */
export function candidateMark(
  marks: readonly XidMark[],
  watermarkMs: number | undefined,
): XidMark | undefined {
  let newest: XidMark | undefined;
  if (watermarkMs !== undefined) {
    for (const m of marks)
      if (m.atMs <= watermarkMs && (newest === undefined || m.xid > newest.xid)) newest = m;
  }
  return newest ?? marks[0];
}

/**
 * The hold, given the marks so far (oldest first), the watermark (undefined: unknown), the slot's current
 * xmin (null: none) and the next xid to be assigned. While the watermark is unknown or older than every
 * mark (a process restarted during a long lag has no mark that old), what the slot holds stays; else the
 * hold follows the candidate, forward only, or goes while the candidate is young.
 */
export function chooseHold(
  marks: readonly XidMark[],
  watermarkMs: number | undefined,
  held: bigint | null,
  nextXid: bigint,
  limits: HoldLimits,
): HoldChoice {
  const candidate = candidateMark(marks, watermarkMs);
  if (candidate === undefined) return { hold: held, capped: false };
  const known = watermarkMs !== undefined && candidate.atMs <= watermarkMs;
  let wanted: bigint | null;
  if (!known && held !== null) wanted = held;
  else if (nextXid - candidate.xid < limits.minAgeXids) wanted = null;
  else wanted = held !== null && held > candidate.xid ? held : candidate.xid;
  if (wanted === null || nextXid - wanted <= limits.maxAgeXids) return { hold: wanted, capped: false };
  const young = marks.find((m) => nextXid - m.xid <= limits.maxAgeXids);
  return { hold: young?.xid ?? nextXid, capped: true };
}

/** The marks still worth keeping: from the candidate (or the hold, if older) on. */
export function marksFrom(marks: readonly XidMark[], from: bigint | undefined): XidMark[] {
  if (from === undefined) return [...marks];
  return marks.filter((m) => m.xid >= from);
}
