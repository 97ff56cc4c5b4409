/**
 * Which transaction a node's stamp slot holds (../operate/stamp-keeper.ts): the oldest one whose rows may
 * still meet an older change from another node, so their commit times must stay readable.
 *
 * A mark is a node's snapshot xmin read at a time of its clock: every transaction that committed after
 * that time has an xid from the mark on (it was running then, or began later). Holding a mark's xid keeps
 * the commit times of every row written after the mark's time. The hold is the newest mark not later than
 * the node's watermark, the time before which no change can still arrive from another node; it only
 * moves forward, and never further back than `maxAgeXids` xids (PostgreSQL forces vacuums to freeze old
 * xids before they wrap around: a hold must not fight them).
 */

/** A node's snapshot xmin (a full xid) and when it was read (ms since the Unix epoch, the node's clock). */
export interface XidMark {
  readonly atMs: number;
  readonly xid: bigint;
}

export interface HoldChoice {
  /** The xid to hold, or null when nothing is to be held yet (no mark). */
  readonly hold: bigint | null;
  /** True when the watermark asked for an older hold than `maxAgeXids` allows. */
  readonly capped: boolean;
}

/**
 * The hold, given the marks so far (oldest first), the watermark (undefined: unknown, so nothing may be
 * let go), the slot's current xmin (null: none), the next xid to be assigned and the largest age allowed.
 */
export function chooseHold(
  marks: readonly XidMark[],
  watermarkMs: number | undefined,
  held: bigint | null,
  nextXid: bigint,
  maxAgeXids: bigint,
): HoldChoice {
  let wanted: bigint | null = held;
  if (watermarkMs !== undefined) {
    let newest: XidMark | undefined;
    for (const m of marks)
      if (m.atMs <= watermarkMs && (newest === undefined || m.xid > newest.xid)) newest = m;
    if (newest !== undefined && (wanted === null || newest.xid > wanted)) wanted = newest.xid;
  }
  // A slot without an xmin holds from the oldest mark on: better than nothing until the watermark tells.
  if (wanted === null) wanted = marks[0]?.xid ?? null;
  if (wanted === null || nextXid - wanted <= maxAgeXids) return { hold: wanted, capped: false };
  const young = marks.find((m) => nextXid - m.xid <= maxAgeXids);
  return { hold: young?.xid ?? nextXid, capped: true };
}

/** The marks still worth keeping once `hold` is held: the hold's own mark and every later one. */
export function marksFrom(marks: readonly XidMark[], hold: bigint | null): XidMark[] {
  if (hold === null) return [...marks];
  return marks.filter((m) => m.xid >= hold);
}
