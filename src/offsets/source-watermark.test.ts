import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';
import { judge, type Watermark, type WatermarkInput, wentBack } from './source-watermark.ts';

const SYS = '7581234567890123456';
const TLI1: SourceIdentity = { systemId: SYS, timeline: 1, history: [] };
const TLI2: SourceIdentity = { systemId: SYS, timeline: 2, history: [{ timeline: 1, switchLsn: 0x58n }] };
const OTHER: SourceIdentity = { systemId: '42', timeline: 1, history: [] };
/** Every transaction's commit time here, unless said. */
const T_US = 1_764_400_000_000_000n;
const at = (
  commitLsn: bigint,
  source?: SourceIdentity,
  more: Partial<WatermarkInput> = {},
): WatermarkInput => ({
  commitLsn,
  lsnOrdered: true,
  snapshot: false,
  commitTimeUs: T_US,
  ...(source === undefined ? {} : { source }),
  ...more,
});

describe('the watermark rule', () => {
  const cases: {
    name: string;
    stored: Watermark;
    txn: WatermarkInput;
    duplicate: boolean;
    next: Watermark;
  }[] = [
    {
      name: 'same timeline: not after the watermark is a duplicate',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x60n, TLI1),
      duplicate: true,
      next: { commitLsn: 0x60n, source: TLI1 },
    },
    {
      name: 'same timeline: after it is applied and raises it',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x61n, TLI1),
      duplicate: false,
      next: { commitLsn: 0x61n, source: TLI1, commitTimeUs: T_US },
    },
    {
      name: 'a newer timeline past its fork, below the watermark: applied, the watermark goes back',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x59n, TLI2),
      duplicate: false,
      next: { commitLsn: 0x59n, source: TLI2, commitTimeUs: T_US },
    },
    {
      name: 'a newer timeline below its fork: shared WAL, a duplicate; the watermark moves to just before the fork',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x50n, TLI2),
      duplicate: true,
      next: { commitLsn: 0x57n, source: TLI2 },
    },
    {
      name: 'a newer timeline forked past the watermark: the LSN rule',
      stored: { commitLsn: 0x40n, source: TLI1 },
      txn: at(0x40n, TLI2),
      duplicate: true,
      next: { commitLsn: 0x40n, source: TLI2 },
    },
    {
      name: 'an older timeline below the fork: the LSN rule, the newer identity stays',
      stored: { commitLsn: 0x59n, source: TLI2 },
      txn: at(0x50n, TLI1),
      duplicate: true,
      next: { commitLsn: 0x59n, source: TLI2 },
    },
    {
      name: 'an older timeline at or past the fork: a branch the source left, skipped',
      stored: { commitLsn: 0x59n, source: TLI2 },
      txn: at(0x70n, TLI1),
      duplicate: true,
      next: { commitLsn: 0x59n, source: TLI2 },
    },
    {
      name: 'another cluster: the watermark restarts',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x10n, OTHER),
      duplicate: false,
      next: { commitLsn: 0x10n, source: OTHER, commitTimeUs: T_US },
    },
    {
      name: 'no identity stored (from before identities): the LSN rule, the identity adopted',
      stored: { commitLsn: 0x60n, source: undefined },
      txn: at(0x59n, TLI2),
      duplicate: true,
      next: { commitLsn: 0x60n, source: TLI2 },
    },
    {
      name: 'no identity sent (an older capture): the LSN rule, the stored identity stays',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x61n),
      duplicate: false,
      next: { commitLsn: 0x61n, source: TLI1, commitTimeUs: T_US },
    },
    {
      name: 'a snapshot never raises the watermark',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x90n, TLI1, { snapshot: true }),
      duplicate: false,
      next: { commitLsn: 0x60n, source: TLI1 },
    },
    {
      name: 'a snapshot below the watermark restarts it',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x30n, TLI1, { snapshot: true }),
      duplicate: false,
      next: { commitLsn: 0x30n, source: TLI1 },
    },
    {
      name: 'a snapshot of a newer timeline: the watermark goes back to just before the fork',
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x90n, TLI2, { snapshot: true }),
      duplicate: false,
      next: { commitLsn: 0x57n, source: TLI2 },
    },
    {
      name: "foreign topics' LSNs order nothing",
      stored: { commitLsn: 0x60n, source: TLI1 },
      txn: at(0x10n, undefined, { lsnOrdered: false }),
      duplicate: false,
      next: { commitLsn: 0x60n, source: TLI1 },
    },
  ];
  cases.push({
    name: 'a newer timeline: a commit at the fork point itself is new',
    stored: { commitLsn: 0x60n, source: TLI1 },
    txn: at(0x58n, TLI2),
    duplicate: false,
    next: { commitLsn: 0x58n, source: TLI2, commitTimeUs: T_US },
  });
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(judge(c.stored, c.txn), { duplicate: c.duplicate, next: c.next });
    });
  }
});

describe('a source whose WAL went back on its timeline (a disk snapshot restored)', () => {
  const SLACK_US = 5_000_000n;
  const stored: Watermark = { commitLsn: 0x60n, source: TLI1, commitTimeUs: T_US };
  const check = (txn: WatermarkInput, from: Watermark = stored) =>
    wentBack(from, txn, judge(from, txn), SLACK_US);
  it('is told by a transaction at or below the watermark committed later than it, beyond the slack', () => {
    assert.equal(check(at(0x50n, TLI1, { commitTimeUs: T_US + 60_000_000n })), true);
    assert.equal(
      check(at(0x60n, undefined, { commitTimeUs: T_US + 5_000_001n })),
      true,
      'no identity: the LSN rule',
    );
  });
  it('is not a re-sent transaction, nor one within the slack, nor one the rule does not skip', () => {
    assert.equal(
      check(at(0x50n, TLI1, { commitTimeUs: T_US - 1_000_000n })),
      false,
      're-sent: committed before',
    );
    assert.equal(check(at(0x50n, TLI1, { commitTimeUs: T_US + 5_000_000n })), false, 'within the slack');
    assert.equal(check(at(0x61n, TLI1, { commitTimeUs: T_US + 60_000_000n })), false, 'after the watermark');
    assert.equal(check(at(0x50n, TLI1, { commitTimeUs: T_US + 60_000_000n, snapshot: true })), false);
    assert.equal(check(at(0x50n, TLI1, { commitTimeUs: T_US + 60_000_000n, lsnOrdered: false })), false);
  });
  it("leaves other timelines and clusters to their rules, and needs the watermark's time", () => {
    const TLI2_AT_1: SourceIdentity = {
      systemId: SYS,
      timeline: 2,
      history: [{ timeline: 1, switchLsn: 0x99n }],
    };
    assert.equal(
      check(at(0x50n, TLI2_AT_1, { commitTimeUs: T_US + 60_000_000n })),
      false,
      'a newer timeline',
    );
    const onTli2: Watermark = { commitLsn: 0x60n, source: TLI2, commitTimeUs: T_US };
    assert.equal(
      check(at(0x59n, TLI1, { commitTimeUs: T_US + 60_000_000n }), onTli2),
      false,
      'an older timeline',
    );
    assert.equal(check(at(0x50n, OTHER, { commitTimeUs: T_US + 60_000_000n })), false, 'another cluster');
    const unknown: Watermark = { commitLsn: 0x60n, source: TLI1 };
    assert.equal(check(at(0x50n, TLI1, { commitTimeUs: T_US + 60_000_000n }), unknown), false);
  });
  it("keeps the watermark's time while the watermark stays, and forgets it where the watermark goes back", () => {
    assert.equal(judge(stored, at(0x50n, TLI1)).next.commitTimeUs, T_US, 'a duplicate');
    assert.equal(judge(stored, at(0x70n, TLI1, { commitTimeUs: T_US + 1n })).next.commitTimeUs, T_US + 1n);
    assert.equal(judge(stored, at(0x40n, TLI1, { snapshot: true })).next.commitTimeUs, undefined);
    assert.equal(judge(stored, at(0x50n, TLI2)).next.commitTimeUs, undefined, 'lowered to the fork point');
  });
});
