/**
 * One table of conflict cases for both forms of the policy (../conflicts/policy.ts): the SQL guard
 * (./policy.pg.test.ts evaluates it on a real server) and its TypeScript twin. Each expected result is
 * written from the rules (docs/architecture.md, "Convergence"), not computed by the code under test.
 */
import type { ConflictPolicy, RowVersion } from '../conflicts/policy.ts';

export interface ConflictCase {
  readonly name: string;
  readonly policy: ConflictPolicy;
  /** The incoming change: its source's commit time and node. */
  readonly incoming: RowVersion;
  /** The version already on the target. */
  readonly existing: RowVersion;
  /** Does the incoming change replace the existing version? */
  readonly wins: boolean;
}

/** 2026-01-01 00:00:00 UTC in microseconds since the Unix epoch. */
const T0 = 1_767_225_600_000_000n;

/** A version `offsetUs` microseconds after T0 (null: unknown or frozen commit time) written by `node`. */
const v = (offsetUs: bigint | null, node: string): RowVersion => ({
  commitUs: offsetUs === null ? null : T0 + offsetUs,
  node,
});

/** A version stamped with the Unix epoch itself: what the snapshot sends for a row of unknown time. */
const epoch = (node: string): RowVersion => ({ commitUs: 0n, node });

/** A row version's commit time as the SQL form sees it: timestamptz text, the Unix epoch when unknown. */
export function sqlTime(version: RowVersion): string {
  const us = version.commitUs;
  if (us === null) return '1970-01-01 00:00:00+00';
  const ms = new Date(Number(us / 1000n)).toISOString().slice(0, 23); // 2026-01-01T00:00:00.000
  return `${ms}${String(us % 1000n).padStart(3, '0')}+00`;
}

const LWW: ConflictPolicy = { policy: 'last-writer-wins' };
const SOURCE: ConflictPolicy = { policy: 'source-wins' };
const PRIORITY_B: ConflictPolicy = { policy: 'node-priority', priorityNode: 'b' };
const S = 1_000_000n;

export const CONFLICT_CASES: readonly ConflictCase[] = [
  // last-writer-wins
  {
    name: 'later commit from another node',
    policy: LWW,
    incoming: v(S, 'a'),
    existing: v(0n, 'b'),
    wins: true,
  },
  {
    name: 'earlier commit from another node',
    policy: LWW,
    incoming: v(0n, 'b'),
    existing: v(S, 'a'),
    wins: false,
  },
  { name: 'one microsecond later', policy: LWW, incoming: v(1n, 'a'), existing: v(0n, 'b'), wins: true },
  { name: 'one microsecond earlier', policy: LWW, incoming: v(0n, 'b'), existing: v(1n, 'a'), wins: false },
  { name: 'equal times, greater node', policy: LWW, incoming: v(0n, 'b'), existing: v(0n, 'a'), wins: true },
  { name: 'equal times, smaller node', policy: LWW, incoming: v(0n, 'a'), existing: v(0n, 'b'), wins: false },
  {
    name: 'equal times, names compared bytewise',
    policy: LWW,
    incoming: v(0n, 'b_2'),
    existing: v(0n, 'b1'),
    wins: true,
  },
  { name: 'same source, earlier clock', policy: LWW, incoming: v(0n, 'a'), existing: v(S, 'a'), wins: true },
  { name: 'same source, equal time', policy: LWW, incoming: v(0n, 'a'), existing: v(0n, 'a'), wins: true },
  { name: 'existing time unknown', policy: LWW, incoming: v(-S, 'a'), existing: v(null, 'b'), wins: true },
  { name: 'incoming time unknown', policy: LWW, incoming: v(null, 'b'), existing: v(-S, 'a'), wins: false },
  {
    name: 'both unknown, greater node',
    policy: LWW,
    incoming: v(null, 'b'),
    existing: v(null, 'a'),
    wins: true,
  },
  {
    name: 'both unknown, smaller node',
    policy: LWW,
    incoming: v(null, 'a'),
    existing: v(null, 'b'),
    wins: false,
  },
  // A snapshot sends a row of unknown time stamped with the epoch: against the target's own row of
  // unknown time the node name decides, the same way on both nodes (it used to win on both).
  {
    name: 'snapshot epoch stamp over unknown, smaller node',
    policy: LWW,
    incoming: epoch('a'),
    existing: v(null, 'b'),
    wins: false,
  },
  {
    name: 'snapshot epoch stamp over unknown, greater node',
    policy: LWW,
    incoming: epoch('b'),
    existing: v(null, 'a'),
    wins: true,
  },
  {
    name: 'any known time over the epoch',
    policy: LWW,
    incoming: v(-S, 'a'),
    existing: epoch('b'),
    wins: true,
  },
  // source-wins
  {
    name: 'earlier commit from another node',
    policy: SOURCE,
    incoming: v(0n, 'a'),
    existing: v(S, 'b'),
    wins: true,
  },
  {
    name: 'equal times, smaller node',
    policy: SOURCE,
    incoming: v(0n, 'a'),
    existing: v(0n, 'b'),
    wins: true,
  },
  { name: 'incoming time unknown', policy: SOURCE, incoming: v(null, 'a'), existing: v(0n, 'b'), wins: true },
  // node-priority, b first
  {
    name: 'priority node, earlier',
    policy: PRIORITY_B,
    incoming: v(0n, 'b'),
    existing: v(S, 'c'),
    wins: true,
  },
  {
    name: 'priority node, time unknown',
    policy: PRIORITY_B,
    incoming: v(null, 'b'),
    existing: v(S, 'a'),
    wins: true,
  },
  {
    name: 'over the priority node, later',
    policy: PRIORITY_B,
    incoming: v(S, 'c'),
    existing: v(0n, 'b'),
    wins: false,
  },
  {
    name: 'over the priority node, time unknown there',
    policy: PRIORITY_B,
    incoming: v(S, 'a'),
    existing: v(null, 'b'),
    wins: false,
  },
  {
    name: 'priority node over itself, earlier clock',
    policy: PRIORITY_B,
    incoming: v(0n, 'b'),
    existing: v(S, 'b'),
    wins: true,
  },
  {
    name: 'same source, not the priority node, earlier clock',
    policy: PRIORITY_B,
    incoming: v(0n, 'a'),
    existing: v(S, 'a'),
    wins: true,
  },
  { name: 'others: later wins', policy: PRIORITY_B, incoming: v(S, 'a'), existing: v(0n, 'c'), wins: true },
  {
    name: 'others: earlier loses',
    policy: PRIORITY_B,
    incoming: v(0n, 'c'),
    existing: v(S, 'a'),
    wins: false,
  },
  {
    name: 'others: equal times, greater node',
    policy: PRIORITY_B,
    incoming: v(0n, 'c'),
    existing: v(0n, 'a'),
    wins: true,
  },
  {
    name: 'others: equal times, smaller node',
    policy: PRIORITY_B,
    incoming: v(0n, 'a'),
    existing: v(0n, 'c'),
    wins: false,
  },
  {
    name: 'others: existing time unknown',
    policy: PRIORITY_B,
    incoming: v(0n, 'a'),
    existing: v(null, 'c'),
    wins: true,
  },
];

/** A case's title: policy, expectation and what it checks. */
export function caseTitle(c: ConflictCase): string {
  const policy =
    c.policy.policy === 'node-priority' ? `node-priority(${c.policy.priorityNode})` : c.policy.policy;
  return `${policy}: ${c.name} -> ${c.wins ? 'wins' : 'loses'}`;
}
