import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CatalogTable } from '../pg/table-catalog.ts';
import { type ApplyTransaction, type RowChange, UNCHANGED } from './apply-model.ts';
import {
  groupRuns,
  isoFromMicros,
  lastVersionPerKey,
  OLD_KEY,
  type PlannedStatement,
  planRun,
  type Run,
  splitByCommitTime,
} from './apply-plan.ts';
import { MissingColumnError, TableStatements } from './statement-builder.ts';

const ins = (id: string, n = 'x', table = 'items'): RowChange => ({
  op: 'c',
  schema: 'public',
  table,
  after: { id, n },
});
const upd = (id: string, n = 'x'): RowChange => ({
  op: 'u',
  schema: 'public',
  table: 'items',
  after: { id, n },
});
const batchOf = (ids: string): RowChange => ({
  op: 'r',
  schema: 'public',
  table: 'items',
  commitTimeUs: 7n,
  batch: { columns: ['id', 'n'], rows: ids.split(',').length, values: [ids, '{x,y}'] },
});
const del = (id: string): RowChange => ({ op: 'd', schema: 'public', table: 'items', beforeKey: { id } });

const run = (
  kind: Run['kind'],
  op: Run['op'],
  columns: string[],
  rows: Record<string, unknown>[],
  table = 'public.items',
): Run => ({ kind, op, table, columns, rows });

describe('groupRuns', () => {
  const cases: { name: string; changes: RowChange[]; runs: Run[] }[] = [
    { name: 'no changes, no runs', changes: [], runs: [] },
    {
      name: 'consecutive inserts into one table with the same columns make one run',
      changes: [ins('1'), ins('2'), ins('3')],
      runs: [
        run(
          'upsert',
          'c',
          ['id', 'n'],
          [
            { id: '1', n: 'x' },
            { id: '2', n: 'x' },
            { id: '3', n: 'x' },
          ],
        ),
      ],
    },
    {
      name: 'an insert and an update are two runs (the op differs)',
      changes: [ins('1'), upd('2')],
      runs: [
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('upsert', 'u', ['id', 'n'], [{ id: '2', n: 'x' }]),
      ],
    },
    {
      name: 'snapshot rows (r) are not merged with inserts (c)',
      changes: [{ ...ins('1'), op: 'r' }, ins('2')],
      runs: [
        run('upsert', 'r', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('upsert', 'c', ['id', 'n'], [{ id: '2', n: 'x' }]),
      ],
    },
    {
      name: 'a row batch is a run of its own, never merged with its neighbours (even another batch)',
      changes: [ins('1'), batchOf('{2,3}'), batchOf('{4}'), ins('5')],
      runs: [
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('batch', 'r', ['id', 'n'], [{ values: ['{2,3}', '{x,y}'] }]),
        run('batch', 'r', ['id', 'n'], [{ values: ['{4}', '{x,y}'] }]),
        run('upsert', 'c', ['id', 'n'], [{ id: '5', n: 'x' }]),
      ],
    },
    {
      name: 'another table in between splits the run: order is kept, runs are not reordered',
      changes: [ins('1'), ins('2', 'x', 'other'), ins('3')],
      runs: [
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('upsert', 'c', ['id', 'n'], [{ id: '2', n: 'x' }], 'public.other'),
        run('upsert', 'c', ['id', 'n'], [{ id: '3', n: 'x' }]),
      ],
    },
    {
      name: 'a different column set, or the same columns in another order, starts a new run',
      changes: [
        ins('1'),
        { op: 'c', schema: 'public', table: 'items', after: { id: '2' } },
        { op: 'c', schema: 'public', table: 'items', after: { n: 'y', id: '3' } },
      ],
      runs: [
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('upsert', 'c', ['id'], [{ id: '2' }]),
        run('upsert', 'c', ['n', 'id'], [{ n: 'y', id: '3' }]),
      ],
    },
    {
      name: 'consecutive deletes make one run of old keys',
      changes: [del('1'), del('2')],
      runs: [run('delete', 'd', ['id'], [{ id: '1' }, { id: '2' }])],
    },
    {
      name: 'a delete without its old key is dropped',
      changes: [{ op: 'd', schema: 'public', table: 'items' }, ins('1')],
      runs: [run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }])],
    },
    {
      name: 'a delete then an insert of the same key stay two runs, in that order',
      changes: [del('1'), ins('1', 'new')],
      runs: [
        run('delete', 'd', ['id'], [{ id: '1' }]),
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'new' }]),
      ],
    },
    {
      name: 'a truncate is a run of its own, never merged with the next truncate',
      changes: [
        ins('1'),
        { op: 't', schema: 'public', table: 'items' },
        { op: 't', schema: 'public', table: 'items' },
      ],
      runs: [
        run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
        run('truncate', 't', [], []),
        run('truncate', 't', [], []),
      ],
    },
    {
      name: 'an update lacking unchanged TOAST values is an update of the other columns',
      changes: [
        { op: 'u', schema: 'public', table: 'items', after: { id: '1', n: 'y', doc: UNCHANGED } },
        { op: 'u', schema: 'public', table: 'items', after: { id: '2', n: 'z', doc: UNCHANGED } },
      ],
      runs: [
        run(
          'update',
          'u',
          ['id', 'n'],
          [
            { id: '1', n: 'y', doc: UNCHANGED },
            { id: '2', n: 'z', doc: UNCHANGED },
          ],
        ),
      ],
    },
    {
      name: 'an update whose old key equals the new one is no key change',
      changes: [
        { op: 'u', schema: 'public', table: 'items', beforeKey: { id: '1' }, after: { id: '1', n: 'y' } },
      ],
      runs: [run('upsert', 'u', ['id', 'n'], [{ id: '1', n: 'y' }])],
    },
    {
      name: 'a key change of a complete row is a delete of the old key, then an upsert of the new row',
      changes: [
        { op: 'u', schema: 'public', table: 'items', beforeKey: { id: '1' }, after: { id: '2', n: 'y' } },
        { op: 'u', schema: 'public', table: 'items', beforeKey: { id: '3' }, after: { id: '4', n: 'z' } },
      ],
      runs: [
        run('delete', 'd', ['id'], [{ id: '1' }]),
        run('upsert', 'u', ['id', 'n'], [{ id: '2', n: 'y' }]),
        run('delete', 'd', ['id'], [{ id: '3' }]),
        run('upsert', 'u', ['id', 'n'], [{ id: '4', n: 'z' }]),
      ],
    },
    {
      name: 'a key change lacking unchanged TOAST values is a rekey run of one row, carrying the old key',
      changes: [
        {
          op: 'u',
          schema: 'public',
          table: 'items',
          beforeKey: { id: '1' },
          after: { id: '2', n: 'y', doc: UNCHANGED },
        },
        {
          op: 'u',
          schema: 'public',
          table: 'items',
          beforeKey: { id: '3' },
          after: { id: '4', n: 'z', doc: UNCHANGED },
        },
        { op: 'u', schema: 'public', table: 'items', after: { id: '5', n: 'w', doc: UNCHANGED } },
      ],
      runs: [
        run('rekey', 'u', ['id', 'n'], [{ id: '2', n: 'y', doc: UNCHANGED, [`${OLD_KEY}id`]: '1' }]),
        run('rekey', 'u', ['id', 'n'], [{ id: '4', n: 'z', doc: UNCHANGED, [`${OLD_KEY}id`]: '3' }]),
        run('update', 'u', ['id', 'n'], [{ id: '5', n: 'w', doc: UNCHANGED }]),
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(groupRuns(c.changes), c.runs);
    });
  }
});

describe('lastVersionPerKey', () => {
  const cases: {
    name: string;
    rows: Record<string, unknown>[];
    key: string[];
    expected: Record<string, unknown>[];
  }[] = [
    { name: 'no rows', rows: [], key: ['id'], expected: [] },
    { name: 'one row', rows: [{ id: '1', n: 'a' }], key: ['id'], expected: [{ id: '1', n: 'a' }] },
    {
      name: 'distinct keys keep their order',
      rows: [
        { id: '2', n: 'a' },
        { id: '1', n: 'b' },
      ],
      key: ['id'],
      expected: [
        { id: '2', n: 'a' },
        { id: '1', n: 'b' },
      ],
    },
    {
      name: 'a key seen again keeps its last version, at the place of its first',
      rows: [
        { id: '1', n: 'a' },
        { id: '2', n: 'b' },
        { id: '1', n: 'c' },
        { id: '1', n: 'd' },
      ],
      key: ['id'],
      expected: [
        { id: '1', n: 'd' },
        { id: '2', n: 'b' },
      ],
    },
    {
      name: 'a composite key is the same only when every column is',
      rows: [
        { a: '1', b: '2', n: 'x' },
        { a: '1', b: '3', n: 'y' },
        { a: '1', b: '2', n: 'z' },
      ],
      key: ['a', 'b'],
      expected: [
        { a: '1', b: '2', n: 'z' },
        { a: '1', b: '3', n: 'y' },
      ],
    },
    {
      name: 'keys whose columns concatenate alike are still different keys',
      rows: [
        { a: '1', b: '23' },
        { a: '12', b: '3' },
      ],
      key: ['a', 'b'],
      expected: [
        { a: '1', b: '23' },
        { a: '12', b: '3' },
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(lastVersionPerKey(c.rows, c.key), c.expected);
    });
  }
});

describe('splitByCommitTime', () => {
  const txn = (snapshot: boolean, changes: RowChange[]): ApplyTransaction => ({
    sourceNode: 'a',
    commitLsn: 0x100n,
    commitTimeUs: 50n,
    lsnOrdered: true,
    snapshot,
    changes,
    topic: 't',
    partition: 0,
    lastOffset: 9n,
  });
  const at = (id: string, commitTimeUs?: bigint): RowChange =>
    commitTimeUs === undefined ? { ...ins(id), op: 'r' } : { ...ins(id), op: 'r', commitTimeUs };
  const cases: { name: string; txn: ApplyTransaction; parts: { commitTimeUs: bigint; ids: string[] }[] }[] = [
    {
      name: 'a streamed transaction stays whole, whatever its rows say',
      txn: txn(false, [at('1', 30n), at('2', 10n)]),
      parts: [{ commitTimeUs: 50n, ids: ['1', '2'] }],
    },
    {
      name: 'a snapshot chunk is one part per commit time, oldest first, rows in their order',
      txn: txn(true, [at('1', 30n), at('2', 10n), at('3', 30n), at('4', 20n)]),
      parts: [
        { commitTimeUs: 10n, ids: ['2'] },
        { commitTimeUs: 20n, ids: ['4'] },
        { commitTimeUs: 30n, ids: ['1', '3'] },
      ],
    },
    {
      name: "snapshot rows without a commit time of their own take the chunk's",
      txn: txn(true, [at('1'), at('2', 60n), at('3')]),
      parts: [
        { commitTimeUs: 50n, ids: ['1', '3'] },
        { commitTimeUs: 60n, ids: ['2'] },
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const parts = splitByCommitTime(c.txn);
      assert.deepEqual(
        parts.map((p) => ({ commitTimeUs: p.commitTimeUs, ids: p.changes.map((ch) => ch.after?.id) })),
        c.parts,
      );
      for (const p of parts) {
        // Everything but the commit time and the rows is the chunk's: same LSN, same Kafka position.
        assert.deepEqual(
          { ...p, commitTimeUs: 0n, changes: [] },
          { ...c.txn, commitTimeUs: 0n, changes: [] },
        );
      }
    });
  }
});

describe('planRun', () => {
  const catalog: CatalogTable = {
    schema: 'public',
    table: 'items',
    columns: [
      {
        name: 'id',
        type: 'bigint',
        castType: '"pg_catalog"."int8"',
        typeOid: 20,
        notNull: true,
        sequenceBacked: false,
      },
      {
        name: 'n',
        type: 'text',
        castType: '"pg_catalog"."text"',
        typeOid: 25,
        notNull: false,
        sequenceBacked: false,
      },
    ],
    primaryKey: ['id'],
    replicaIdentity: 'default',
  };
  const table = new TableStatements(catalog, { policy: 'last-writer-wins' });
  const common = ['2025-11-29T07:06:40.123456Z', 'a', 'b', 'public.items'];
  const cases: { name: string; run: Run; expected: PlannedStatement }[] = [
    {
      name: 'one row: one value per column',
      run: run('upsert', 'c', ['id', 'n'], [{ id: '1', n: 'x' }]),
      expected: {
        text: table.upsert('c', ['id', 'n'], true),
        values: [...common, '1', 'x'],
        conflicts: true,
      },
    },
    {
      name: 'a row batch: its text[] literals are the array parameters, as they came',
      run: run('batch', 'r', ['id', 'n'], [{ values: ['{1,2}', '{x,NULL}'] }]),
      expected: {
        text: table.upsert('r', ['id', 'n'], false),
        values: [...common, '{1,2}', '{x,NULL}'],
        conflicts: true,
      },
    },
    {
      name: 'several rows: one array per column, a key seen twice with its last version',
      run: run(
        'upsert',
        'u',
        ['id', 'n'],
        [
          { id: '1', n: 'x' },
          { id: '2', n: 'y' },
          { id: '1', n: 'z' },
        ],
      ),
      expected: {
        text: table.upsert('u', ['id', 'n'], false),
        values: [...common, ['1', '2'], ['z', 'y']],
        conflicts: true,
      },
    },
    {
      name: 'a key seen twice in a run of two is written once, as one row',
      run: run(
        'upsert',
        'c',
        ['id', 'n'],
        [
          { id: '1', n: 'x' },
          { id: '1', n: 'y' },
        ],
      ),
      expected: {
        text: table.upsert('c', ['id', 'n'], true),
        values: [...common, '1', 'y'],
        conflicts: true,
      },
    },
    {
      name: 'a missing value is null',
      run: run('upsert', 'c', ['id', 'n'], [{ id: '1', n: null }, { id: '2' }]),
      expected: {
        text: table.upsert('c', ['id', 'n'], false),
        values: [...common, ['1', '2'], [null, null]],
        conflicts: true,
      },
    },
    {
      name: 'an update of the columns that changed',
      run: run('update', 'u', ['id'], [{ id: '1', n: UNCHANGED }]),
      expected: { text: table.update(['id'], true), values: [...common, '1'], conflicts: true },
    },
    {
      name: 'deletes by old key',
      run: run('delete', 'd', ['id'], [{ id: '1' }, { id: '2' }]),
      expected: { text: table.delete(false), values: [...common, ['1', '2']], conflicts: true },
    },
    {
      name: 'a rekey: the new values, then the old key, each as a one-element array; conflicts counted',
      run: run('rekey', 'u', ['id'], [{ id: '2', n: UNCHANGED, [`${OLD_KEY}id`]: '1' }]),
      expected: { text: table.rekey(['id']), values: [...common, ['2'], ['1']], conflicts: true },
    },
    {
      name: 'a truncate is a guarded delete: the common parameters only, its kept rows counted as conflicts',
      run: run('truncate', 't', [], []),
      expected: { text: table.truncate(), values: [...common], conflicts: true },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(planRun(c.run, table, common), c.expected);
    });
  }

  it('a column the target lacks is named', () => {
    assert.throws(
      () => planRun(run('upsert', 'c', ['id', 'gone'], [{ id: '1', gone: 'x' }]), table, common),
      (error: unknown) => error instanceof MissingColumnError && error.column === 'gone',
    );
  });
});

describe('isoFromMicros', () => {
  const cases: { us: bigint; iso: string }[] = [
    { us: 0n, iso: '1970-01-01T00:00:00.000000Z' },
    { us: 999_999n, iso: '1970-01-01T00:00:00.999999Z' },
    { us: 1_764_400_000_000_001n, iso: '2025-11-29T07:06:40.000001Z' },
    { us: 1_764_400_000_123_456n, iso: '2025-11-29T07:06:40.123456Z' },
  ];
  for (const c of cases) {
    it(`${c.us} us is ${c.iso}`, () => {
      assert.equal(isoFromMicros(c.us), c.iso);
    });
  }
});
