/**
 * Decoder of pgoutput messages (protocol version 1), the payload of XLogData.
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 *
 * Never throws anything but MalformedInputError on bad bytes: every read is bounds-checked and the error
 * names the message, the field and the offset. Strings are copied out of the buffer (the caller may reuse
 * it after this returns). The connection's client_encoding is UTF8 (the `pg` default), so names and text
 * values must be valid UTF-8: invalid bytes are rejected rather than replaced by U+FFFD, which would
 * silently change the row that is replicated.
 */
import { isUtf8 } from 'node:buffer';
import { ErrorCode, MalformedInputError } from '../../runtime/errors.ts';
import { pgTimestampToUnixUs } from '../pg-time.ts';
import { replicaIdentityOf } from '../table-catalog.ts';
import type { PgoutputMessage, RelationColumn, Tuple, TupleValue } from './messages.ts';

const NULL_VALUE: TupleValue = Object.freeze({ kind: 'null' });
const TOAST_VALUE: TupleValue = Object.freeze({ kind: 'unchanged-toast' });

const MESSAGE_NAMES: Record<number, string> = {
  66: 'Begin',
  67: 'Commit',
  79: 'Origin',
  82: 'Relation',
  89: 'Type',
  73: 'Insert',
  85: 'Update',
  68: 'Delete',
  84: 'Truncate',
  77: 'Message',
};

class Reader {
  readonly buf: Buffer;
  readonly what: string;
  pos = 1;

  constructor(buf: Buffer, what: string) {
    this.buf = buf;
    this.what = what;
  }

  fail(field: string, detail: string): never {
    throw new MalformedInputError(
      `pgoutput ${this.what}: ${field} ${detail} at offset ${this.pos} (message is ${this.buf.length} bytes)`,
      { code: ErrorCode.PGOUTPUT_MALFORMED },
    );
  }

  need(n: number, field: string): void {
    if (this.pos + n > this.buf.length) this.fail(field, `needs ${n} bytes but the message ends`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++] as number;
  }

  i16(field: string): number {
    this.need(2, field);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  i32(field: string): number {
    this.need(4, field);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** PostgreSQL timestamp (µs since 2000-01-01) as µs since the Unix epoch. */
  timestamp(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return pgTimestampToUnixUs(v);
  }

  cstring(field: string): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) this.fail(field, 'has no terminating zero byte');
    const s = this.utf8(field, end);
    this.pos = end + 1;
    return s;
  }

  /** The bytes from the current position to `end` as a string; they must be valid UTF-8. */
  utf8(field: string, end: number): string {
    if (!isUtf8(this.buf.subarray(this.pos, end))) this.fail(field, 'is not valid UTF-8');
    return this.buf.toString('utf8', this.pos, end);
  }

  tuple(field: string): Tuple {
    const count = this.i16(`${field} column count`);
    if (count < 0) this.fail(`${field} column count`, `is negative (${count})`);
    const values: TupleValue[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const kind = this.u8(`${field} column ${i} kind`);
      if (kind === 0x74 /* t */) {
        const len = this.i32(`${field} column ${i} length`);
        if (len < 0) this.fail(`${field} column ${i} length`, `is negative (${len})`);
        if (this.pos + len > this.buf.length) {
          this.fail(`${field} column ${i} length ${len}`, 'runs past end of message');
        }
        values[i] = { kind: 'text', text: this.utf8(`${field} column ${i} text`, this.pos + len) };
        this.pos += len;
      } else if (kind === 0x6e /* n */) {
        values[i] = NULL_VALUE;
      } else if (kind === 0x75 /* u */) {
        values[i] = TOAST_VALUE;
      } else if (kind === 0x62 /* b */) {
        this.pos--;
        this.fail(`${field} column ${i}`, 'is in binary format, which pgbisync never requests');
      } else {
        this.pos--;
        this.fail(`${field} column ${i} kind`, `is unknown (0x${kind.toString(16)})`);
      }
    }
    return values;
  }

  end(): void {
    if (this.pos !== this.buf.length)
      this.fail('message', `has ${this.buf.length - this.pos} trailing bytes`);
  }
}

/** ` ('X')` for a printable ASCII byte, so an error names the tag the way the protocol docs do. */
function printable(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? ` ('${String.fromCharCode(byte)}')` : '';
}

/** Decodes one pgoutput message (starting at its type byte). */
export function decodePgoutput(buf: Buffer): PgoutputMessage {
  if (buf.length === 0) {
    throw new MalformedInputError('pgoutput: empty message', { code: ErrorCode.PGOUTPUT_MALFORMED });
  }
  const type = buf[0] as number;
  const name = MESSAGE_NAMES[type];
  if (name === undefined) {
    throw new MalformedInputError(
      `pgoutput: unknown message type 0x${type.toString(16)}${printable(type)} at offset 0` +
        ' (streaming messages S/E/c/A are not requested: pgbisync uses proto_version 1)',
      { code: ErrorCode.PGOUTPUT_MALFORMED },
    );
  }
  // Typed explicitly: only then does a call of r.fail() (returns never) narrow the types after it.
  const r: Reader = new Reader(buf, name);
  let msg: PgoutputMessage;
  switch (type) {
    case 0x42:
      msg = {
        tag: 'begin',
        finalLsn: r.u64('final LSN'),
        commitTimeUs: r.timestamp('commit time'),
        xid: r.u32('xid'),
      };
      break;
    case 0x43:
      msg = {
        tag: 'commit',
        flags: r.u8('flags'),
        commitLsn: r.u64('commit LSN'),
        endLsn: r.u64('end LSN'),
        commitTimeUs: r.timestamp('commit time'),
      };
      break;
    case 0x4f:
      msg = { tag: 'origin', originLsn: r.u64('origin LSN'), name: r.cstring('origin name') };
      break;
    case 0x52: {
      const relationId = r.u32('relation id');
      const schema = r.cstring('namespace');
      const table = r.cstring('relation name');
      const identByte = r.u8('replica identity');
      // The table's relreplident letter.
      const replicaIdentity = replicaIdentityOf(String.fromCharCode(identByte));
      if (replicaIdentity === undefined) {
        r.pos--;
        r.fail('replica identity', `is unknown (0x${identByte.toString(16)})`);
      }
      const count = r.i16('column count');
      if (count < 0) r.fail('column count', `is negative (${count})`);
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = r.u8(`column ${i} flags`);
        columns.push({
          isKey: (flags & 1) === 1,
          name: r.cstring(`column ${i} name`),
          typeOid: r.u32(`column ${i} type oid`),
          typeMod: r.i32(`column ${i} type modifier`),
        });
      }
      msg = { tag: 'relation', relationId, schema, table, replicaIdentity, columns };
      break;
    }
    case 0x59:
      msg = {
        tag: 'type',
        typeOid: r.u32('type oid'),
        schema: r.cstring('namespace'),
        name: r.cstring('type name'),
      };
      break;
    case 0x49: {
      const relationId = r.u32('relation id');
      const marker = r.u8('tuple marker');
      if (marker !== 0x4e) r.fail('tuple marker', `is 0x${marker.toString(16)}, expected 'N'`);
      msg = { tag: 'insert', relationId, newTuple: r.tuple('new tuple') };
      break;
    }
    case 0x55: {
      const relationId = r.u32('relation id');
      let marker = r.u8('tuple marker');
      let oldKey: Tuple | undefined;
      let oldTuple: Tuple | undefined;
      if (marker === 0x4b) {
        oldKey = r.tuple('old key');
        marker = r.u8('new tuple marker');
      } else if (marker === 0x4f) {
        oldTuple = r.tuple('old tuple');
        marker = r.u8('new tuple marker');
      }
      if (marker !== 0x4e) r.fail('tuple marker', `is 0x${marker.toString(16)}, expected 'N'`);
      const newTuple = r.tuple('new tuple');
      msg = {
        tag: 'update',
        relationId,
        newTuple,
        ...(oldKey === undefined ? {} : { oldKey }),
        ...(oldTuple === undefined ? {} : { oldTuple }),
      };
      break;
    }
    case 0x44: {
      const relationId = r.u32('relation id');
      const marker = r.u8('tuple marker');
      if (marker === 0x4b) msg = { tag: 'delete', relationId, oldKey: r.tuple('old key') };
      else if (marker === 0x4f) msg = { tag: 'delete', relationId, oldTuple: r.tuple('old tuple') };
      else return r.fail('tuple marker', `is 0x${marker.toString(16)}, expected 'K' or 'O'`);
      break;
    }
    case 0x54: {
      const count = r.u32('relation count');
      const options = r.u8('options');
      if (count * 4 > buf.length - r.pos) {
        r.fail(`relation count ${count}`, `needs ${count * 4} bytes of relation ids but the message ends`);
      }
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.u32(`relation id ${i}`));
      msg = {
        tag: 'truncate',
        cascade: (options & 1) !== 0,
        restartIdentity: (options & 2) !== 0,
        relationIds,
      };
      break;
    }
    case 0x4d: {
      const flags = r.u8('flags');
      const lsn = r.u64('LSN');
      const prefix = r.cstring('prefix');
      const len = r.i32('content length');
      if (len < 0) r.fail('content length', `is negative (${len})`);
      if (r.pos + len > buf.length) r.fail(`content length ${len}`, 'runs past end of message');
      const content = Buffer.from(buf.subarray(r.pos, r.pos + len));
      r.pos += len;
      msg = { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content };
      break;
    }
    default:
      throw new MalformedInputError(`pgoutput: unhandled message type 0x${type.toString(16)}`, {
        code: ErrorCode.PGOUTPUT_MALFORMED,
      });
  }
  r.end();
  return msg;
}
