import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withProgress } from '../offsets/apply-progress.ts';
import type { CatalogColumn, CatalogTable } from '../pg/table-catalog.ts';
import { ApplyProcedures, countingInto, rewriteParams, scalarValues } from './apply-procedures.ts';
import { TableStatements } from './statement-builder.ts';

const row = (n: number) => `r.c${n}`;

describe('rewriteParams', () => {
  it('replaces cast parameters and copies literals and quoted identifiers as they are', () => {
    assert.equal(
      rewriteParams(`SELECT $1::int, ($12)::text, 'a $2 ''b''', "col$3""x" FROM t WHERE x = $2::text`, row),
      `SELECT r.c1::int, (r.c12)::text, 'a $2 ''b''', "col$3""x" FROM t WHERE x = r.c2::text`,
    );
  });
  it('refuses a parameter whose type the statement leaves to inference', () => {
    assert.equal(rewriteParams('SELECT * FROM t WHERE id = $1', row), undefined);
    assert.equal(rewriteParams('SELECT f($1)::text', row), undefined, 'the cast is of the function, not $1');
    assert.equal(rewriteParams('SELECT "f"($1)::text', row), undefined);
  });
  it('refuses what it does not scan: comments, dollar quotes, an unclosed quote', () => {
    assert.equal(rewriteParams('SELECT $1::int -- note', row), undefined);
    assert.equal(rewriteParams('SELECT $1::int /* note */', row), undefined);
    assert.equal(rewriteParams('SELECT $pgbisync_call$x$pgbisync_call$', row), undefined);
    assert.equal(rewriteParams("SELECT 'open", row), undefined);
  });
});

describe('countingInto', () => {
  it('moves the final query into a CTE and counts its rows into the variable', () => {
    assert.equal(
      countingInto(
        "WITH a AS (SELECT ')' AS x), w AS (INSERT INTO t SELECT * FROM a RETURNING 1) SELECT 1 FROM w",
        'n',
      ),
      "WITH a AS (SELECT ')' AS x), w AS (INSERT INTO t SELECT * FROM a RETURNING 1), pgbisync_out AS (SELECT 1 FROM w) SELECT count(*) INTO n FROM pgbisync_out",
    );
  });
  it('refuses other shapes', () => {
    assert.equal(countingInto('SELECT 1', 'n'), undefined);
    assert.equal(countingInto('WITH a(x) AS (SELECT 1) SELECT x FROM a', 'n'), undefined);
    assert.equal(countingInto('WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a', 'n'), undefined);
  });
});

describe('scalarValues', () => {
  it('takes what pg sends as a plain text parameter, nothing else', () => {
    assert.equal(scalarValues(['a', null, undefined, 1, true, 2n]), true);
    assert.equal(scalarValues([['a']]), false);
    assert.equal(scalarValues([Buffer.from('a')]), false);
    assert.equal(scalarValues([{ a: 1 }]), false);
  });
});

describe('ApplyProcedures', () => {
  const ins = {
    text: 'WITH w AS (INSERT INTO t VALUES ($1::int) RETURNING 1) SELECT 1 FROM w',
    values: ['1'],
  };
  const del = {
    text: 'WITH w AS (DELETE FROM t WHERE id = $1::int AND n = $2::text RETURNING 1) SELECT 1 FROM w',
    values: ['1', 'x'],
  };
  it('makes a procedure once for a set of statements and reuses it for any run within it', () => {
    const procedures = new ApplyProcedures();
    const first = procedures.procedureFor([ins, del, ins])!;
    assert.match(
      first.create!,
      /CREATE PROCEDURE pg_temp\.pgbisync_apply_1\(INOUT pgbisync_conflicts bigint, pgbisync_k int\[\], pgbisync_p1 text\[\], pgbisync_p2 text\[\]\)/,
    );
    assert.equal(first.call, 'CALL pg_temp.pgbisync_apply_1(0, $1::int[], $2::text[], $3::text[])');
    first.create = undefined;
    assert.equal(procedures.procedureFor([del]), first);
    assert.deepEqual(ApplyProcedures.callValues(first, [ins, del, { ...ins, values: [null] }]), [
      [1, 2, 1],
      ['1', '1', null],
      [null, 'x', null],
    ]);
  });
  it('grows the newest procedure by the statements a run adds', () => {
    const procedures = new ApplyProcedures();
    procedures.procedureFor([ins]);
    const grown = procedures.procedureFor([del])!;
    assert.equal(grown.name, 'pg_temp.pgbisync_apply_2');
    assert.deepEqual([...grown.index.values()], [1, 2]);
    assert.equal(procedures.procedureFor([ins]), grown);
  });
});

describe("the writer's one-row statements", () => {
  it('qualify for a CALL, each kind, with the progress write in front', () => {
    // A one-row delete ended with its conflict INSERT and never qualified: every delete broke its run
    // of one-row transactions and went on its own, with the per-statement costs the CALL saves.
    const column = (name: string, type: string, typeOid: number): CatalogColumn => ({
      name,
      type,
      castType: `"pg_catalog"."${type === 'bigint' ? 'int8' : 'int4'}"`,
      typeOid,
      notNull: true,
      sequenceBacked: false,
    });
    const items: CatalogTable = {
      schema: 'public',
      table: 'items',
      columns: [column('id', 'bigint', 20), column('n', 'integer', 23)],
      primaryKey: ['id'],
      replicaIdentity: 'default',
    };
    const table = new TableStatements(items, { policy: 'last-writer-wins' });
    const procedures = new ApplyProcedures();
    for (const [kind, text, params] of [
      ['insert', table.upsert('c', ['id', 'n'], true), 6],
      ['update', table.upsert('u', ['id', 'n'], true), 6],
      ['update with unchanged TOAST', table.update(['id'], true), 5],
      ['delete', table.delete(true), 5],
    ] as const) {
      const values = Array.from({ length: params + 15 }, () => '1');
      assert.ok(procedures.qualifies({ text: withProgress(text, params), values }), kind);
    }
  });
});
