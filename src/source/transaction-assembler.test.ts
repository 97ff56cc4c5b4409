import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OutRecord } from '../kafka/records.ts';
import { LAST_HEADER, LAST_VALUE, RUN_HEADER, WIRE_HEADER } from '../kafka/wire-headers.ts';
import type { PgoutputMessage, Tuple } from '../pg/pgoutput/messages.ts';
import { DebeziumChangeEncoder } from './debezium-encoder.ts';
import { TransactionAssembler, withOldValues } from './transaction-assembler.ts';

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

describe('wire version of the records', () => {
  const text = (t: string) => ({ kind: 'text', text: t }) as const;
  /** One insert into a table with a bytea column, captured with `binary` as binary.handling.mode. */
  function capture(binary: 'bytes' | 'base64'): OutRecord[] {
    const records: OutRecord[] = [];
    const assembler = new TransactionAssembler(
      {
        encoder: new DebeziumChangeEncoder({
          serverName: 's',
          database: 'db',
          connectorVersion: 'test',
          types: { 'binary.handling.mode': binary },
        }),
        topicFor: () => 's',
      },
      { record: (r) => records.push(r), commit: () => undefined, keepalive: () => undefined },
    );
    const data = (message: PgoutputMessage) => assembler.handle({ kind: 'data', lsn: 16n, message });
    data({ tag: 'begin', finalLsn: 32n, commitTimeUs: 1n, xid: 5 });
    data({
      tag: 'relation',
      relationId: 1,
      schema: 'public',
      table: 't',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
        { name: 'b', typeOid: 17, typeMod: -1, isKey: false },
      ],
    });
    data({ tag: 'insert', relationId: 1, newTuple: [text('1'), text('\\x00')] });
    data({ tag: 'insert', relationId: 1, newTuple: [text('2'), text('\\x01')] });
    data({ tag: 'commit', flags: 0, commitLsn: 32n, endLsn: 48n, commitTimeUs: 1n });
    return records;
  }

  it('version 1 by default, on the transaction end only', () => {
    const records = capture('bytes');
    assert.deepEqual(
      records.map((r) => r.headers?.[WIRE_HEADER]),
      [undefined, '1'],
    );
  });

  it('version 2 on every record of a table whose bytea is a base64 string (a version-1 applier would store the text)', () => {
    const records = capture('base64');
    assert.deepEqual(
      records.map((r) => r.headers?.[WIRE_HEADER]),
      ['2', '2'],
    );
    assert.equal(records[1]!.headers?.[LAST_HEADER], LAST_VALUE);
  });
});

describe('tables of the publication this capture does not sync', () => {
  const text = (t: string) => ({ kind: 'text', text: t }) as const;
  const relation = (relationId: number, table: string): PgoutputMessage => ({
    tag: 'relation',
    relationId,
    schema: 'public',
    table,
    replicaIdentity: 'default',
    columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }],
  });

  // `setup` adds a table to the publication before the running daemon reloads: its changes reached the
  // appliers, still on the old config, which dead-lettered them (torture, addtable with failover).
  it('leaves their changes out, truncates included, and says so once per Relation message', () => {
    const records: OutRecord[] = [];
    const unsynced: string[] = [];
    const assembler = new TransactionAssembler(
      {
        encoder: new DebeziumChangeEncoder({ serverName: 's', database: 'db', connectorVersion: 'test' }),
        topicFor: () => 's',
        synced: (schema, table) => `${schema}.${table}` === 'public.kept',
        onUnsynced: (table) => unsynced.push(table),
      },
      { record: (r) => records.push(r), commit: () => undefined, keepalive: () => undefined },
    );
    const data = (message: PgoutputMessage) => assembler.handle({ kind: 'data', lsn: 16n, message });
    data({ tag: 'begin', finalLsn: 32n, commitTimeUs: 1n, xid: 5 });
    data(relation(1, 'kept'));
    data(relation(2, 'added'));
    data({ tag: 'insert', relationId: 2, newTuple: [text('1')] });
    data({ tag: 'insert', relationId: 1, newTuple: [text('1')] });
    data({ tag: 'update', relationId: 2, newTuple: [text('2')], oldKey: [text('1')] });
    data({ tag: 'delete', relationId: 2, oldKey: [text('2')] });
    data({ tag: 'truncate', cascade: false, restartIdentity: false, relationIds: [2, 1] });
    data({ tag: 'commit', flags: 0, commitLsn: 32n, endLsn: 48n, commitTimeUs: 1n });
    assert.deepEqual(unsynced, ['public.added']);
    const ops = records.map((r) => (r.value === null ? null : JSON.parse(String(r.value)).payload.op));
    assert.deepEqual(ops, ['c', 't'], "the kept table's insert and truncate only");
    assert.ok(records.every((r) => r.value === null || String(r.value).includes('"table":"kept"')));
  });
});

describe('the capture run', () => {
  const text = (t: string) => ({ kind: 'text', text: t }) as const;
  it("is on each transaction's first record only, with wire version 5 (a delete's tombstone after it has none)", () => {
    const records: OutRecord[] = [];
    const assembler = new TransactionAssembler(
      {
        encoder: new DebeziumChangeEncoder({ serverName: 's', database: 'db', connectorVersion: 'test' }),
        topicFor: () => 's',
        run: 1796635335183000n,
      },
      { record: (r) => records.push(r), commit: () => undefined, keepalive: () => undefined },
    );
    const data = (message: PgoutputMessage) => assembler.handle({ kind: 'data', lsn: 16n, message });
    data({
      tag: 'relation',
      relationId: 1,
      schema: 'public',
      table: 't',
      replicaIdentity: 'default',
      columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }],
    });
    data({ tag: 'begin', finalLsn: 32n, commitTimeUs: 1n, xid: 5 });
    data({ tag: 'insert', relationId: 1, newTuple: [text('1')] });
    data({ tag: 'insert', relationId: 1, newTuple: [text('2')] });
    data({ tag: 'commit', flags: 0, commitLsn: 32n, endLsn: 48n, commitTimeUs: 1n });
    data({ tag: 'begin', finalLsn: 64n, commitTimeUs: 2n, xid: 6 });
    data({ tag: 'delete', relationId: 1, oldKey: [text('1')] });
    data({ tag: 'commit', flags: 0, commitLsn: 64n, endLsn: 80n, commitTimeUs: 2n });
    assert.deepEqual(
      records.map((r) => [r.headers?.[RUN_HEADER], r.headers?.[WIRE_HEADER], r.headers?.[LAST_HEADER]]),
      [
        ['1796635335183000', '5', undefined],
        [undefined, '1', LAST_VALUE],
        ['1796635335183000', '5', undefined],
        [undefined, '1', LAST_VALUE],
      ],
    );
  });
});
