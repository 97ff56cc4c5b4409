import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Tuple } from '../pg/pgoutput/messages.ts';
import { withOldValues } from './transaction-assembler.ts';

describe('withOldValues', () => {
  const text = (t: string) => ({ kind: 'text', text: t }) as const;
  const unchanged = { kind: 'unchanged-toast' } as const;
  const nul = { kind: 'null' } as const;
  const cases: { name: string; next: Tuple; old: Tuple; expected: Tuple }[] = [
    {
      name: 'an unchanged TOAST value comes from the old tuple (REPLICA IDENTITY FULL)',
      next: [text('1'), unchanged, text('b')],
      old: [text('1'), text('long'), text('a')],
      expected: [text('1'), text('long'), text('b')],
    },
    {
      name: 'changed values and nulls stay as sent',
      next: [text('1'), nul, text('b')],
      old: [text('1'), text('long'), text('a')],
      expected: [text('1'), nul, text('b')],
    },
    {
      name: 'an old tuple without the value leaves it unchanged',
      next: [text('1'), unchanged],
      old: [text('1'), unchanged],
      expected: [text('1'), unchanged],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(withOldValues(c.next, c.old), c.expected));
  }
});
