/**
 * The TypeScript side of the conflict policy: the shared cases (../testing/conflict-cases.ts; the SQL side
 * runs them in ./policy.pg.test.ts), verify --repair's order against a model of it, and the config's
 * resolution and cross-field rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FatalError } from '../runtime/errors.ts';
import { CONFLICT_CASES, caseTitle } from '../testing/conflict-cases.ts';
import {
  beats,
  CONFLICT_POLICY_NAMES,
  type ConflictPolicy,
  checkPolicySettings,
  incomingWins,
  type PolicySettings,
  policyResolver,
  type RowVersion,
} from './policy.ts';

for (const c of CONFLICT_CASES) {
  test(`TypeScript: ${caseTitle(c)}`, () => {
    assert.equal(incomingWins(c.policy, c.incoming, c.existing), c.wins);
  });
}

const POLICIES: readonly ConflictPolicy[] = [
  { policy: 'last-writer-wins' },
  { policy: 'source-wins' },
  { policy: 'node-priority', priorityNode: 'b' },
];

/** Versions of a few nodes (b is the priority node) at unknown, equal and different times. */
const VERSIONS: readonly RowVersion[] = ['a', 'b', 'c'].flatMap((node) =>
  [null, 0n, 1n, 2n].map((commitUs) => ({ commitUs, node })),
);

/**
 * A model of verify --repair's order, written independently of the guard: the priority node first, then
 * the later commit (an unknown one the Unix epoch, 0), then the greater node name.
 */
function modelBeats(policy: ConflictPolicy, a: RowVersion, b: RowVersion): boolean {
  if (policy.policy === 'node-priority') {
    const p = policy.priorityNode;
    if (a.node === p && b.node !== p) return true;
    if (b.node === p && a.node !== p) return false;
  }
  // An unknown time is the Unix epoch (0): the snapshot's stamp for such a row equals it.
  const at = a.commitUs ?? 0n;
  const bt = b.commitUs ?? 0n;
  if (at !== bt) return at > bt;
  return a.node > b.node;
}

test('repair order: the model on every pair; one winner of two different versions, and it passes the guard', () => {
  for (const policy of POLICIES) {
    for (const a of VERSIONS) {
      for (const b of VERSIONS) {
        const what = `${policy.policy}: ${a.node}@${a.commitUs} vs ${b.node}@${b.commitUs}`;
        assert.equal(beats(policy, a, b), modelBeats(policy, a, b), what);
        const same = a.node === b.node && (a.commitUs ?? 0n) === (b.commitUs ?? 0n);
        const winners = Number(beats(policy, a, b)) + Number(beats(policy, b, a));
        assert.equal(winners, same ? 0 : 1, what);
        if (beats(policy, a, b))
          assert.ok(incomingWins(policy, a, b), `${what}: the repair write is guarded`);
      }
    }
  }
});

test('repair order: between two versions of one node the later wins, whatever the policy', () => {
  const early = { commitUs: 1n, node: 'a' };
  const late = { commitUs: 2n, node: 'a' };
  for (const policy of POLICIES) {
    assert.ok(beats(policy, late, early), policy.policy);
    assert.ok(!beats(policy, early, late), policy.policy);
  }
});

const settings = (s: Partial<PolicySettings>): PolicySettings => ({
  policy: 'last-writer-wins',
  tables: {},
  ...s,
});

test('resolution: every policy name resolves; a table override replaces the default', () => {
  for (const name of CONFLICT_POLICY_NAMES) {
    const policy = policyResolver(settings({ policy: name, priorityNode: 'b' }))('public.t');
    assert.equal(policy.policy, name);
  }
  const policyOf = policyResolver(
    settings({
      policy: 'source-wins',
      tables: { 'public.pri': { policy: 'node-priority', priorityNode: 'b' } },
    }),
  );
  assert.deepEqual(policyOf('public.other'), { policy: 'source-wins' });
  assert.deepEqual(policyOf('public.pri'), { policy: 'node-priority', priorityNode: 'b' });
});

test('resolution: node-priority without priorityNode is an error naming the field', () => {
  assert.throws(
    () => policyResolver(settings({ tables: { 'public.t': { policy: 'node-priority' } } })),
    (e: unknown) =>
      e instanceof FatalError &&
      e.message === 'conflicts.tables.public.t.priorityNode: node-priority needs priorityNode',
  );
});

test('cross-field rule: priorityNode is required by node-priority and names a configured node', () => {
  const nodes = new Set(['a', 'b']);
  assert.equal(
    checkPolicySettings(settings({ policy: 'node-priority', priorityNode: 'b' }), nodes),
    undefined,
  );
  assert.deepEqual(checkPolicySettings(settings({ policy: 'node-priority' }), nodes), {
    path: 'conflicts.priorityNode',
    message: 'node-priority needs priorityNode',
  });
  assert.deepEqual(checkPolicySettings(settings({ policy: 'node-priority', priorityNode: 'z' }), nodes), {
    path: 'conflicts.priorityNode',
    message: "priorityNode 'z' is not one of the nodes",
  });
  // A priorityNode is checked under any policy (it would silently do nothing otherwise).
  assert.deepEqual(
    checkPolicySettings(
      settings({ tables: { 'public.t': { policy: 'source-wins', priorityNode: 'z' } } }),
      nodes,
    ),
    { path: 'conflicts.tables.public.t.priorityNode', message: "priorityNode 'z' is not one of the nodes" },
  );
});
