import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalformedInputError } from '../runtime/errors.ts';
import { decodeRowBatch, encodeRowBatch, type RowBatch } from './row-batch.ts';

const batch: RowBatch = {
  schema: 'public',
  table: 'accounts',
  columns: ['id', 'note'],
  rows: 3,
  commitTimeUs: 1_733_000_000_123_456n,
  values: ['{1,2,3}', '{"a \\"quoted\\" one",NULL,"NULL"}'],
};

test('a row batch reads back as it was written', () => {
  assert.deepEqual(decodeRowBatch(encodeRowBatch(batch), 'here'), batch);
  // Unknown commit time (before track_commit_timestamp): 0.
  assert.equal(decodeRowBatch(encodeRowBatch({ ...batch, commitTimeUs: 0n }), 'here').commitTimeUs, 0n);
});

test('anything else is refused, naming where it was and what is wrong', () => {
  const json = (o: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ ...JSON.parse(encodeRowBatch(batch).toString()), ...o }));
  const cases: [Buffer, RegExp][] = [
    [Buffer.from('not json'), /not JSON/],
    [Buffer.from('[1]'), /format is undefined/],
    [json({ format: 'pgbisync.rows/2' }), /format is "pgbisync\.rows\/2", not "pgbisync\.rows\/1"/],
    [json({ schema: '' }), /field schema is not a non-empty string/],
    [json({ columns: [] }), /field columns is not a non-empty array of strings/],
    [json({ columns: ['id', 'id'] }), /a column is named twice/],
    [json({ values: ['{1}'] }), /1 value arrays for 2 columns/],
    [json({ values: ['{1}', 'x'] }), /a value array is not a text\[\] literal/],
    [json({ rows: 0 }), /field rows is not a positive integer/],
    [json({ rows: 1.5 }), /field rows is not a positive integer/],
    [json({ commitTimeUs: '12:00' }), /field commitTimeUs is '12:00', not microseconds/],
  ];
  for (const [value, expected] of cases) {
    assert.throws(
      () => decodeRowBatch(value, 'pgbisync.a[0]@7'),
      (error: unknown) => {
        assert.ok(error instanceof MalformedInputError);
        assert.equal(error.code, 'PGB3101');
        assert.match(error.message, /^row batch at pgbisync\.a\[0\]@7: /);
        assert.match(error.message, expected);
        return true;
      },
    );
  }
});
