/**
 * pgoutput decoder, table-driven: every message is built byte by byte from the protocol docs
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html, protocol version 1),
 * decoded, and compared with the expected message. Malformed input (every truncation of every valid
 * message, bad tags, kinds and lengths, random mutations) must only ever throw MalformedInputError.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, MalformedInputError } from '../../runtime/errors.ts';
import { decodePgoutput } from './decoder.ts';
import type { PgoutputMessage } from './messages.ts';

// --- wire builders (big-endian, as the protocol is) ---
const u8 = (v: number): Buffer => Buffer.from([v]);
const i16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
};
const i32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
/** PostgreSQL's epoch in µs since the Unix epoch, computed here rather than taken from pg-time.ts. */
const PG_EPOCH_US = BigInt(Date.UTC(2000, 0, 1)) * 1000n;
/** A TimestampTz on the wire (µs since 2000-01-01) for a time given in µs since the Unix epoch. */
const ts = (unixUs: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(unixUs - PG_EPOCH_US);
  return b;
};
/** A protocol String: UTF-8 bytes and a terminating zero byte. */
const str = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), u8(0)]);
const tag = (c: string): Buffer => Buffer.from(c, 'latin1');
const msg = (type: string, ...parts: Buffer[]): Buffer => Buffer.concat([tag(type), ...parts]);

/** TupleData column parts: 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary. */
const col = {
  null: tag('n'),
  toast: tag('u'),
  text: (s: string): Buffer => {
    const bytes = Buffer.from(s, 'utf8');
    return Buffer.concat([tag('t'), i32(bytes.length), bytes]);
  },
  binary: (bytes: Buffer): Buffer => Buffer.concat([tag('b'), i32(bytes.length), bytes]),
};
const tuple = (...cols: Buffer[]): Buffer => Buffer.concat([i16(cols.length), ...cols]);
const relationColumn = (flags: number, name: string, typeOid: number, typeMod: number): Buffer =>
  Buffer.concat([u8(flags), str(name), u32(typeOid), i32(typeMod)]);

const text = (s: string) => ({ kind: 'text', text: s }) as const;
const NULL = { kind: 'null' } as const;
const TOAST = { kind: 'unchanged-toast' } as const;

const LSN = 0x16_b374_d848n;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;
const COMMIT_US = 1_700_000_000_123_456n;

const VALID: readonly {
  readonly name: string;
  readonly bytes: Buffer;
  readonly expected: PgoutputMessage;
}[] = [
  {
    name: 'Begin',
    bytes: msg('B', u64(LSN), ts(COMMIT_US), u32(777)),
    expected: { tag: 'begin', finalLsn: LSN, commitTimeUs: COMMIT_US, xid: 777 },
  },
  {
    name: 'Begin with max LSN and xid, commit time before 2000',
    bytes: msg('B', u64(MAX_U64), ts(1n), u32(0xffff_ffff)),
    expected: { tag: 'begin', finalLsn: MAX_U64, commitTimeUs: 1n, xid: 0xffff_ffff },
  },
  {
    name: 'Commit',
    bytes: msg('C', u8(0), u64(LSN), u64(LSN + 0x30n), ts(COMMIT_US)),
    expected: { tag: 'commit', flags: 0, commitLsn: LSN, endLsn: LSN + 0x30n, commitTimeUs: COMMIT_US },
  },
  {
    name: 'Origin',
    bytes: msg('O', u64(0xab_cdefn), str('pgbisync_node1')),
    expected: { tag: 'origin', originLsn: 0xab_cdefn, name: 'pgbisync_node1' },
  },
  {
    name: 'Relation, default replica identity, one key column',
    bytes: msg(
      'R',
      u32(16_384),
      str('public'),
      str('items'),
      u8(0x64 /* d */),
      i16(3),
      relationColumn(1, 'id', 23, -1),
      relationColumn(0, 'name', 1043, 36),
      relationColumn(0, 'note', 25, -1),
    ),
    expected: {
      tag: 'relation',
      relationId: 16_384,
      schema: 'public',
      table: 'items',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
        { name: 'name', typeOid: 1043, typeMod: 36, isKey: false },
        { name: 'note', typeOid: 25, typeMod: -1, isKey: false },
      ],
    },
  },
  {
    name: 'Relation, full identity, pg_catalog (empty namespace), non-ASCII names, composite key',
    bytes: msg(
      'R',
      u32(0xffff_fff0),
      str(''),
      str('café 表'),
      u8(0x66 /* f */),
      i16(2),
      relationColumn(1, 'ä', 20, -1),
      relationColumn(1, 'b', 1700, (10 << 16) + 2 + 4),
    ),
    expected: {
      tag: 'relation',
      relationId: 0xffff_fff0,
      schema: '',
      table: 'café 表',
      replicaIdentity: 'full',
      columns: [
        { name: 'ä', typeOid: 20, typeMod: -1, isKey: true },
        { name: 'b', typeOid: 1700, typeMod: (10 << 16) + 6, isKey: true },
      ],
    },
  },
  {
    name: 'Relation, identity nothing, no columns',
    bytes: msg('R', u32(1), str('s'), str('t'), u8(0x6e /* n */), i16(0)),
    expected: {
      tag: 'relation',
      relationId: 1,
      schema: 's',
      table: 't',
      replicaIdentity: 'nothing',
      columns: [],
    },
  },
  {
    name: 'Relation, identity index',
    bytes: msg('R', u32(2), str('s'), str('t'), u8(0x69 /* i */), i16(1), relationColumn(1, 'k', 25, -1)),
    expected: {
      tag: 'relation',
      relationId: 2,
      schema: 's',
      table: 't',
      replicaIdentity: 'index',
      columns: [{ name: 'k', typeOid: 25, typeMod: -1, isKey: true }],
    },
  },
  {
    name: 'Type',
    bytes: msg('Y', u32(16_500), str('public'), str('mood')),
    expected: { tag: 'type', typeOid: 16_500, schema: 'public', name: 'mood' },
  },
  {
    name: 'Insert with text, empty text, null and non-ASCII text',
    bytes: msg('I', u32(16_384), tag('N'), tuple(col.text('42'), col.text(''), col.null, col.text('zoë 😀'))),
    expected: { tag: 'insert', relationId: 16_384, newTuple: [text('42'), text(''), NULL, text('zoë 😀')] },
  },
  {
    name: 'Insert of a zero-column row',
    bytes: msg('I', u32(5), tag('N'), tuple()),
    expected: { tag: 'insert', relationId: 5, newTuple: [] },
  },
  {
    name: 'Update without old tuple, unchanged TOAST in the new tuple',
    bytes: msg('U', u32(16_384), tag('N'), tuple(col.text('1'), col.toast, col.null)),
    expected: { tag: 'update', relationId: 16_384, newTuple: [text('1'), TOAST, NULL] },
  },
  {
    name: "Update with old key ('K')",
    bytes: msg(
      'U',
      u32(16_384),
      tag('K'),
      tuple(col.text('1'), col.null, col.null),
      tag('N'),
      tuple(col.text('2'), col.text('b'), col.toast),
    ),
    expected: {
      tag: 'update',
      relationId: 16_384,
      oldKey: [text('1'), NULL, NULL],
      newTuple: [text('2'), text('b'), TOAST],
    },
  },
  {
    name: "Update with old tuple ('O', replica identity full)",
    bytes: msg(
      'U',
      u32(16_384),
      tag('O'),
      tuple(col.text('1'), col.text('a'), col.toast),
      tag('N'),
      tuple(col.text('1'), col.text('b'), col.toast),
    ),
    expected: {
      tag: 'update',
      relationId: 16_384,
      oldTuple: [text('1'), text('a'), TOAST],
      newTuple: [text('1'), text('b'), TOAST],
    },
  },
  {
    name: "Delete with old key ('K')",
    bytes: msg('D', u32(16_384), tag('K'), tuple(col.text('7'), col.null, col.null)),
    expected: { tag: 'delete', relationId: 16_384, oldKey: [text('7'), NULL, NULL] },
  },
  {
    name: "Delete with old tuple ('O')",
    bytes: msg('D', u32(16_384), tag('O'), tuple(col.text('7'), col.text('x'), col.null)),
    expected: { tag: 'delete', relationId: 16_384, oldTuple: [text('7'), text('x'), NULL] },
  },
  {
    name: 'Truncate of one relation, no options',
    bytes: msg('T', u32(1), u8(0), u32(16_384)),
    expected: { tag: 'truncate', cascade: false, restartIdentity: false, relationIds: [16_384] },
  },
  {
    name: 'Truncate CASCADE of several relations',
    bytes: msg('T', u32(3), u8(1), u32(16_384), u32(16_390), u32(0xffff_ffff)),
    expected: {
      tag: 'truncate',
      cascade: true,
      restartIdentity: false,
      relationIds: [16_384, 16_390, 0xffff_ffff],
    },
  },
  {
    name: 'Truncate RESTART IDENTITY',
    bytes: msg('T', u32(2), u8(2), u32(10), u32(11)),
    expected: { tag: 'truncate', cascade: false, restartIdentity: true, relationIds: [10, 11] },
  },
  {
    name: 'Truncate CASCADE RESTART IDENTITY',
    bytes: msg('T', u32(1), u8(3), u32(10)),
    expected: { tag: 'truncate', cascade: true, restartIdentity: true, relationIds: [10] },
  },
  {
    name: 'Message, transactional, with prefix and binary content',
    bytes: msg('M', u8(1), u64(LSN), str('pgbisync'), i32(5), Buffer.from([0, 1, 2, 0xfe, 0xff])),
    expected: {
      tag: 'message',
      transactional: true,
      lsn: LSN,
      prefix: 'pgbisync',
      content: Buffer.from([0, 1, 2, 0xfe, 0xff]),
    },
  },
  {
    name: 'Message, not transactional, empty prefix and content',
    bytes: msg('M', u8(0), u64(1n), str(''), i32(0)),
    expected: { tag: 'message', transactional: false, lsn: 1n, prefix: '', content: Buffer.alloc(0) },
  },
];

/** Asserts that decoding `bytes` throws a MalformedInputError whose message matches `pattern`. */
function assertMalformed(bytes: Buffer, pattern: RegExp): void {
  assert.throws(
    () => decodePgoutput(bytes),
    (error: unknown) => {
      assert.ok(error instanceof MalformedInputError, `expected MalformedInputError, got ${String(error)}`);
      assert.equal(error.code, ErrorCode.PGOUTPUT_MALFORMED);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('decodePgoutput', () => {
  for (const { name, bytes, expected } of VALID) {
    it(`decodes ${name}`, () => {
      assert.deepEqual(decodePgoutput(bytes), expected);
    });
  }

  it('copies message content out of the buffer', () => {
    const bytes = msg('M', u8(1), u64(1n), str('p'), i32(3), Buffer.from('abc'));
    const decoded = decodePgoutput(bytes);
    bytes.fill(0);
    assert.ok(decoded.tag === 'message');
    assert.equal(decoded.content.toString(), 'abc');
  });

  const MALFORMED: readonly { readonly name: string; readonly bytes: Buffer; readonly error: RegExp }[] = [
    { name: 'empty buffer', bytes: Buffer.alloc(0), error: /^pgoutput: empty message$/ },
    { name: 'unknown tag', bytes: msg('Z', u32(1)), error: /unknown message type 0x5a \('Z'\) at offset 0/ },
    {
      name: 'streaming tag (proto v2)',
      bytes: msg('S', u32(1), u8(1)),
      error: /unknown message type 0x53 \('S'\)/,
    },
    {
      name: 'non-printable tag',
      bytes: Buffer.from([0x00, 1]),
      error: /unknown message type 0x0 at offset 0/,
    },
    {
      name: 'unknown tuple kind',
      bytes: msg('I', u32(1), tag('N'), tuple(col.text('1'), tag('x'))),
      error: /Insert: new tuple column 1 kind is unknown \(0x78\) at offset 14 \(message is 15 bytes\)/,
    },
    {
      name: "binary tuple value ('b', never requested)",
      bytes: msg('I', u32(1), tag('N'), tuple(col.binary(Buffer.from([0, 0, 0, 1])))),
      error: /Insert: new tuple column 0 is in binary format/,
    },
    {
      name: 'Insert tuple marker not N',
      bytes: msg('I', u32(1), tag('K'), tuple(col.text('1'))),
      error: /Insert: tuple marker is 0x4b, expected 'N'/,
    },
    {
      name: 'Update new tuple marker not N',
      bytes: msg('U', u32(1), tag('K'), tuple(col.text('1')), tag('O'), tuple(col.text('2'))),
      error: /Update: tuple marker is 0x4f, expected 'N'/,
    },
    {
      name: 'Delete tuple marker N',
      bytes: msg('D', u32(1), tag('N'), tuple(col.text('1'))),
      error: /Delete: tuple marker is 0x4e, expected 'K' or 'O'/,
    },
    {
      name: 'negative tuple column count',
      bytes: msg('I', u32(1), tag('N'), i16(-1)),
      error: /new tuple column count is negative \(-1\)/,
    },
    {
      name: 'negative text length',
      bytes: msg('I', u32(1), tag('N'), i16(1), tag('t'), i32(-1)),
      error: /new tuple column 0 length is negative \(-1\)/,
    },
    {
      name: 'text length past the end',
      bytes: msg('I', u32(1), tag('N'), i16(1), tag('t'), i32(100), Buffer.from('abc')),
      error: /new tuple column 0 length 100 runs past end of message at offset 13 \(message is 16 bytes\)/,
    },
    {
      name: 'text value that is not UTF-8',
      bytes: msg('I', u32(1), tag('N'), i16(1), tag('t'), i32(2), Buffer.from([0xc3, 0x28])),
      error: /new tuple column 0 text is not valid UTF-8/,
    },
    {
      name: 'relation name that is not UTF-8',
      bytes: msg('R', u32(1), str('s'), Buffer.from([0xff, 0]), u8(0x64), i16(0)),
      error: /Relation: relation name is not valid UTF-8/,
    },
    {
      name: 'string without terminating zero',
      bytes: msg('Y', u32(1), Buffer.from('public')),
      error: /Type: namespace has no terminating zero byte at offset 5/,
    },
    {
      name: 'negative relation column count',
      bytes: msg('R', u32(1), str('s'), str('t'), u8(0x64), i16(-2)),
      error: /Relation: column count is negative \(-2\)/,
    },
    {
      name: 'unknown replica identity',
      bytes: msg('R', u32(1), str('s'), str('t'), u8(0x78), i16(0)),
      error: /Relation: replica identity is unknown \(0x78\) at offset 9/,
    },
    {
      name: 'Truncate relation count past the end',
      bytes: msg('T', u32(1000), u8(0), u32(1)),
      error: /Truncate: relation count 1000 needs 4000 bytes of relation ids but the message ends/,
    },
    {
      name: 'Truncate with the largest relation count',
      bytes: msg('T', u32(0xffff_ffff), u8(0)),
      error: /Truncate: relation count 4294967295 needs/,
    },
    {
      name: 'negative Message content length',
      bytes: msg('M', u8(0), u64(1n), str('p'), i32(-5)),
      error: /Message: content length is negative \(-5\)/,
    },
    {
      name: 'Message content length past the end',
      bytes: msg('M', u8(0), u64(1n), str('p'), i32(4), Buffer.from('ab')),
      error: /Message: content length 4 runs past end of message/,
    },
    {
      name: 'trailing bytes',
      bytes: msg('B', u64(1n), ts(COMMIT_US), u32(1), u8(0)),
      error: /Begin: message has 1 trailing bytes at offset 21 \(message is 22 bytes\)/,
    },
    {
      name: 'short Commit',
      bytes: msg('C', u8(0), u64(1n)),
      error: /Commit: end LSN needs 8 bytes but the message ends at offset 10/,
    },
  ];
  for (const { name, bytes, error } of MALFORMED) {
    it(`rejects ${name}`, () => assertMalformed(bytes, error));
  }

  it('rejects every truncation of every valid message with a MalformedInputError', () => {
    for (const { name, bytes } of VALID) {
      for (let length = 0; length < bytes.length; length++) {
        assert.throws(
          () => decodePgoutput(bytes.subarray(0, length)),
          (error: unknown) => error instanceof MalformedInputError && /^pgoutput/.test(error.message),
          `${name} truncated to ${length} of ${bytes.length} bytes`,
        );
      }
    }
  });

  it('rejects every valid message with a trailing byte', () => {
    for (const { name, bytes } of VALID) {
      assert.throws(
        () => decodePgoutput(Buffer.concat([bytes, u8(0)])),
        (error: unknown) => error instanceof MalformedInputError && /trailing bytes/.test(error.message),
        name,
      );
    }
  });

  it('never throws anything but MalformedInputError on randomly mutated messages', () => {
    // mulberry32: a small seeded PRNG, so a failure is reproducible.
    let seed = 0x5eed;
    const random = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
    };
    for (const { name, bytes } of VALID) {
      for (let round = 0; round < 500; round++) {
        const mutated = Buffer.from(bytes);
        const flips = 1 + Math.floor(random() * 3);
        for (let f = 0; f < flips; f++) {
          mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
        }
        try {
          decodePgoutput(mutated);
        } catch (error) {
          if (!(error instanceof MalformedInputError)) {
            assert.fail(`${name} mutated to ${mutated.toString('hex')} threw ${String(error)}`);
          }
        }
      }
    }
  });
});
