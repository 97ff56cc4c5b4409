/**
 * The oracle's judge (./event-oracle.ts) on hand-made records: it must see a difference wherever there
 * is one, pair Debezium's key change with pgbisync's update, and hold the doc table to what it saw.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { compareStreams, listedDifferences, type OracleRecord, unlistedDifferences } from './event-oracle.ts';

const labels = new Map([
  ['id', 'primary key'],
  ['v', 'interval'],
]);

function record(op: string, before: object | null, after: object | null, vType = 'string'): OracleRecord {
  const row = {
    type: 'struct',
    fields: [
      { type: 'int64', optional: false, field: 'id' },
      { type: vType, optional: true, field: 'v' },
    ],
  };
  const id = ((after ?? before) as { id: number }).id;
  return {
    key: { schema: { type: 'struct', fields: [{ type: 'int64', field: 'id' }] }, payload: { id } },
    value: {
      schema: {
        type: 'struct',
        fields: [
          { ...row, field: 'before' },
          { ...row, field: 'after' },
          { type: 'string', field: 'op' },
        ],
      },
      payload: { before, after, op, ts_ms: Math.random() },
    },
  };
}
const tombstone = (id: number): OracleRecord => ({ key: { schema: {}, payload: { id } }, value: null });

describe('event oracle', () => {
  test('equal streams: no difference (processing times ignored)', () => {
    const a = [record('c', null, { id: 1, v: 'x' })];
    assert.deepEqual(compareStreams(a, [record('c', null, { id: 1, v: 'x' })], labels), []);
  });

  test('a value, a schema and a missing record are each reported under their key', () => {
    const found = compareStreams(
      [record('c', null, { id: 1, v: 'x' }, 'int64'), record('d', { id: 1, v: null }, null)],
      [record('c', null, { id: 1, v: 'y' })],
      labels,
    );
    assert.deepEqual([...new Set(found.map((d) => d.key))].sort(), [
      'interval schema',
      'interval value',
      'op d record',
    ]);
  });

  test("Debezium's delete + tombstone + create pairs with pgbisync's key-changing update", () => {
    const found = compareStreams(
      [record('d', { id: 1, v: null }, null), tombstone(1), record('c', null, { id: 2, v: 'x' })],
      [record('u', { id: 1, v: null }, { id: 2, v: 'x' })],
      labels,
    );
    assert.deepEqual(
      found.map((d) => d.key),
      ['key change'],
    );
  });

  test('the doc table: unlisted differences and listed ones not seen', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oracle-'));
    const doc = join(dir, 'doc.md');
    writeFileSync(
      doc,
      [
        '## Deliberate differences, proven against the connector',
        '| Difference | Runs | a | b | why |',
        '|---|---|---|---|---|',
        '| `interval value`, `interval schema` | defaults | | | |',
        '| `key change` | all | | | |',
        '## Next',
        '| `op t record` | all | | | |',
      ].join('\n'),
    );
    const listed = listedDifferences(doc);
    assert.deepEqual([...listed.keys()], ['interval value', 'interval schema', 'key change']);
    const diff = (key: string) => ({ key, path: 'p', debezium: '1', pgbisync: '2' });
    const { unlisted, unseen } = unlistedDifferences(
      'interop',
      [diff('interval value'), diff('key change')],
      listed,
    );
    assert.deepEqual(
      unlisted.map((d) => d.key),
      ['interval value'],
      'listed for another run only',
    );
    assert.deepEqual(unseen, []);
    assert.deepEqual(unlistedDifferences('defaults', [diff('interval value')], listed).unseen, [
      'interval schema',
      'key change',
    ]);
  });
});
