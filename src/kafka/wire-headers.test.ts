import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from './records.ts';
import {
  COMMIT_LSN_HEADER,
  commitLsnOf,
  DEAD_LETTER_HEADERS,
  deadLetterHeaders,
  endOfTransaction,
  endsTransaction,
  firstOfRun,
  forgedHeader,
  hasTransactionMarker,
  LAST_HEADER,
  LAST_VALUE,
  RUN_HEADER,
  relationWireHeaders,
  runOf,
  SCHEMA_HEADER,
  SNAPSHOT_HEADER,
  SOURCE_HEADER,
  sourceIdentityOf,
  TIMELINE_HISTORY_HEADER,
  transactionEndHeaders,
  WIRE_HEADER,
  WIRE_VERSION,
  wireVersionOf,
} from './wire-headers.ts';

// The names as they are on the wire, written out here on purpose: records already in topics and
// appliers of other versions depend on them, so renaming a constant must fail this test.
test('header names are the wire contract', () => {
  const cases: [string, string][] = [
    [WIRE_HEADER, 'pgbisync.wire'],
    [LAST_HEADER, 'pgbisync.last'],
    [LAST_VALUE, '1'],
    [COMMIT_LSN_HEADER, 'pgbisync.commit_lsn'],
    [SCHEMA_HEADER, 'pgbisync.schema'],
    [SNAPSHOT_HEADER, 'pgbisync.snapshot'],
    [SOURCE_HEADER, 'pgbisync.source'],
    [TIMELINE_HISTORY_HEADER, 'pgbisync.timeline_history'],
    [RUN_HEADER, 'pgbisync.run'],
    [DEAD_LETTER_HEADERS.topic, 'pgbisync.dlq.topic'],
    [DEAD_LETTER_HEADERS.partition, 'pgbisync.dlq.partition'],
    [DEAD_LETTER_HEADERS.offset, 'pgbisync.dlq.offset'],
    [DEAD_LETTER_HEADERS.error, 'pgbisync.dlq.error'],
    [DEAD_LETTER_HEADERS.code, 'pgbisync.dlq.code'],
  ];
  for (const [constant, wire] of cases) assert.equal(constant, wire);
});

test('a transaction end carries the marker and the commit LSN; a snapshot chunk end says so too', () => {
  assert.deepEqual(transactionEndHeaders(0x16_b374_d848n), {
    'pgbisync.last': '1',
    'pgbisync.commit_lsn': '16/B374D848',
    'pgbisync.wire': '1',
  });
  assert.deepEqual(transactionEndHeaders(0x1a0n, true), {
    'pgbisync.last': '1',
    'pgbisync.commit_lsn': '0/1A0',
    'pgbisync.wire': '1',
    'pgbisync.snapshot': '1',
  });
});

test('a transaction end names its source identity (wire version 3), with the timeline history past timeline 1', () => {
  const tli1 = { systemId: '7581234567890123456', timeline: 1, history: [] };
  const tli3 = {
    systemId: '7581234567890123456',
    timeline: 3,
    history: [
      { timeline: 1, switchLsn: 0x3000060n },
      { timeline: 2, switchLsn: 0x5000000n },
    ],
  };
  assert.deepEqual(transactionEndHeaders(0x10n, false, 1, tli1), {
    'pgbisync.last': '1',
    'pgbisync.commit_lsn': '0/10',
    'pgbisync.wire': '3',
    'pgbisync.source': '7581234567890123456:1',
  });
  const end = endOfTransaction({ 'pgbisync.wire': '2' }, 0x6000000n, true, 1, tli3);
  assert.deepEqual(end, {
    'pgbisync.last': '1',
    'pgbisync.commit_lsn': '0/6000000',
    'pgbisync.wire': '3',
    'pgbisync.snapshot': '1',
    'pgbisync.source': '7581234567890123456:3',
    'pgbisync.timeline_history': '1@0/3000060,2@0/5000000',
  });
  assert.deepEqual(sourceIdentityOf(new Map(Object.entries(end))), tli3);
  assert.equal(sourceIdentityOf(new Map(Object.entries(transactionEndHeaders(0x10n)))), undefined);
});

test('readers: the end marker, our records, the commit LSN', () => {
  const end = new Map(Object.entries(transactionEndHeaders(0x2a0n)));
  assert.equal(endsTransaction(end), true);
  assert.equal(hasTransactionMarker(end), true);
  assert.equal(commitLsnOf(end), 0x2a0n);

  const none: ReadonlyMap<string, string> = new Map();
  assert.equal(endsTransaction(none), false);
  assert.equal(hasTransactionMarker(none), false);
  assert.equal(commitLsnOf(none), undefined);

  // A marker with another value is ours but ends nothing.
  const other = new Map([['pgbisync.last', '0']]);
  assert.equal(endsTransaction(other), false);
  assert.equal(hasTransactionMarker(other), true);
  assert.throws(() => commitLsnOf(new Map([['pgbisync.commit_lsn', 'not an lsn']])));
});

test('the wire version: absent is 1, a number is itself, anything else is unreadable (NaN)', () => {
  assert.equal(WIRE_VERSION, 5);
  const cases: [string | undefined, number][] = [
    [undefined, 1],
    ['1', 1],
    ['2', 2],
    ['17', 17],
    ['0', Number.NaN],
    ['01', Number.NaN],
    ['-1', Number.NaN],
    ['1.5', Number.NaN],
    ['', Number.NaN],
    [' 1', Number.NaN],
    ['v2', Number.NaN],
    ['99999999999', Number.NaN],
  ];
  for (const [text, version] of cases) {
    const headers = new Map(text === undefined ? [] : [['pgbisync.wire', text]]);
    assert.equal(wireVersionOf(headers), version, `header ${JSON.stringify(text)}`);
  }
});

test("a dead letter keeps the record's own headers and adds where it was and why", () => {
  const record: InRecord = {
    topic: 'pgbisync.a',
    partition: 0,
    offset: 41n,
    key: null,
    value: Buffer.from('{'),
    headers: new Map([['pgbisync.last', '1']]),
    timestampMs: 0,
  };
  assert.deepEqual(deadLetterHeaders(record, 'value: not JSON', 'PGB3101'), {
    'pgbisync.last': '1',
    'pgbisync.dlq.topic': 'pgbisync.a',
    'pgbisync.dlq.partition': '0',
    'pgbisync.dlq.offset': '41',
    'pgbisync.dlq.error': 'value: not JSON',
    'pgbisync.dlq.code': 'PGB3101',
  });
});

test('a transaction end keeps the highest wire version of its last record, and a relation says 1 by saying nothing', () => {
  assert.equal(endOfTransaction(undefined, 0x10n)['pgbisync.wire'], '1');
  assert.equal(endOfTransaction({ 'pgbisync.wire': '2' }, 0x10n)['pgbisync.wire'], '2');
  assert.equal(endOfTransaction({ 'pgbisync.schema': 'x' }, 0x10n, true, 2)['pgbisync.wire'], '2');
  assert.deepEqual(relationWireHeaders(1), {});
  assert.deepEqual(relationWireHeaders(2), { 'pgbisync.wire': '2' });
});

test('forgedHeader: what a capture writes passes, anything else is named', () => {
  const cases: [Record<string, string>, RegExp | undefined][] = [
    [{}, undefined],
    [transactionEndHeaders(0x16_b374d848n), undefined],
    [transactionEndHeaders(1n, true), undefined],
    [{ 'pgbisync.schema': 'abc' }, undefined],
    [{ 'pgbisync.wire': '1' }, undefined],
    [{ traceparent: 'x' }, undefined],
    [{ 'pgbisync.dlq.code': 'PGB3101' }, /header pgbisync\.dlq\.code is not one a capture writes/],
    [{ 'PGBISYNC.LAST': '1' }, /header PGBISYNC\.LAST is not one/],
    [{ 'pgbisync.last': '2', 'pgbisync.commit_lsn': '0/1' }, /pgbisync\.last is '2'/],
    [{ 'pgbisync.last': '1' }, undefined],
    [{ 'pgbisync.last': '1', 'pgbisync.commit_lsn': 'zz' }, /pgbisync\.commit_lsn is 'zz', not an LSN/],
    [{ 'pgbisync.commit_lsn': '0/1' }, /pgbisync\.commit_lsn without pgbisync\.last/],
    [{ 'pgbisync.snapshot': '1' }, /pgbisync\.snapshot without pgbisync\.last/],
    [{ ...transactionEndHeaders(1n), 'pgbisync.snapshot': 'yes' }, /pgbisync\.snapshot is 'yes'/],
    [
      { ...transactionEndHeaders(1n), 'pgbisync.source': '75:2', 'pgbisync.timeline_history': '1@0/5' },
      undefined,
    ],
    [
      { ...transactionEndHeaders(1n), 'pgbisync.source': '75' },
      /source identity '75' is not <system identifier>:<timeline>/,
    ],
    [
      { ...transactionEndHeaders(1n), 'pgbisync.source': '75:2', 'pgbisync.timeline_history': '2@0/5' },
      /'2@0\/5' is not <ancestor timeline>@<LSN> of timeline 2/,
    ],
    [
      { ...transactionEndHeaders(1n), 'pgbisync.source': '75:2', 'pgbisync.timeline_history': '1@x' },
      /timeline history '1@x': '1@x' is not <ancestor timeline>@<LSN>/,
    ],
    [
      { ...transactionEndHeaders(1n), 'pgbisync.timeline_history': '1@0/5' },
      /pgbisync\.timeline_history without pgbisync\.source/,
    ],
    [{ 'pgbisync.source': '75:1' }, /pgbisync\.source without pgbisync\.last/],
    [{ ...transactionEndHeaders(1n, true), 'pgbisync.rows': '1' }, undefined],
    [{ 'pgbisync.rows': '1' }, /pgbisync\.rows without pgbisync\.last/],
    [{ ...transactionEndHeaders(1n, true), 'pgbisync.rows': 'many' }, /pgbisync\.rows is 'many', not '1'/],
    [firstOfRun(undefined, 1796635335183000n), undefined],
    [{ ...transactionEndHeaders(1n), ...firstOfRun(undefined, 7n) }, undefined],
    [{ 'pgbisync.run': '-1' }, /pgbisync\.run is '-1', not a capture run/],
    [{ 'pgbisync.run': '1e9' }, /pgbisync\.run is '1e9', not a capture run/],
    [{ 'pgbisync.run': '1234567890123456789' }, /not a capture run/],
  ];
  for (const [headers, expected] of cases) {
    const reason = forgedHeader(new Map(Object.entries(headers)));
    if (expected === undefined) assert.equal(reason, undefined, JSON.stringify(headers));
    else assert.match(reason ?? '', expected, JSON.stringify(headers));
  }
});

test("a transaction's first record names its capture run, with the wire version that needs", () => {
  const headers = firstOfRun({ [SCHEMA_HEADER]: 'abc' }, 1796635335183000n);
  assert.deepEqual(headers, {
    [SCHEMA_HEADER]: 'abc',
    [RUN_HEADER]: '1796635335183000',
    [WIRE_HEADER]: '5',
  });
  assert.equal(runOf(new Map(Object.entries(headers))), 1796635335183000n);
  assert.equal(runOf(new Map()), undefined);
  // A record of a higher version keeps it; a one-record transaction's end keeps the first's.
  assert.equal(firstOfRun({ [WIRE_HEADER]: '7' }, 1n)[WIRE_HEADER], '7');
  assert.equal(endOfTransaction(firstOfRun(undefined, 1n), 5n)[WIRE_HEADER], '5');
});
