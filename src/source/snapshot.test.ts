import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parentsFirst } from './snapshot.ts';

describe('parentsFirst', () => {
  const cases: { name: string; tables: string[]; refs: Record<string, string[]>; expected: string[] }[] = [
    { name: 'no references: the given order', tables: ['b', 'a'], refs: {}, expected: ['b', 'a'] },
    {
      name: 'a child moves after its parent',
      tables: ['child', 'parent'],
      refs: { child: ['parent'] },
      expected: ['parent', 'child'],
    },
    {
      name: 'chains and several parents',
      tables: ['c', 'x', 'b', 'a'],
      refs: { c: ['b', 'a'], b: ['a'] },
      expected: ['a', 'b', 'c', 'x'],
    },
    {
      name: 'a self-reference changes nothing',
      tables: ['t', 'u'],
      refs: { t: ['t'] },
      expected: ['t', 'u'],
    },
    {
      name: 'a cycle: each table once',
      tables: ['a', 'b'],
      refs: { a: ['b'], b: ['a'] },
      expected: ['b', 'a'],
    },
    {
      name: 'a table not synced is no reason to move',
      tables: ['a'],
      refs: { a: ['elsewhere'] },
      expected: ['a'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(parentsFirst(c.tables, new Map(Object.entries(c.refs))), c.expected);
    });
  }
});
