/**
 * Boolean, character, binary, bit-string, identifier, document and geometric types, and the string
 * fallback for everything without a mapping.
 */
import {
  BASE64,
  badText,
  badValue,
  type ConnectSchema,
  type FieldCodec,
  type FieldDecoder,
  type JsonValue,
  UNAVAILABLE_JSON,
  UNAVAILABLE_PLACEHOLDER,
  UNAVAILABLE_PLACEHOLDER_BASE64,
} from './connect-schema.ts';

export const boolCodec: FieldCodec = {
  schema: { type: 'boolean' },
  toJson: (text) => {
    if (text === 't') return 'true';
    if (text === 'f') return 'false';
    throw badText('bool', text);
  },
  unavailableJson: UNAVAILABLE_JSON,
};

/** A Connect string, optionally with a Debezium semantic name (Json, Xml, Uuid, Enum...). */
export function stringCodec(name?: string, parameters?: Readonly<Record<string, string>>): FieldCodec {
  const schema: ConnectSchema =
    name === undefined
      ? { type: 'string' }
      : parameters === undefined
        ? { type: 'string', name, version: 1 }
        : { type: 'string', name, version: 1, parameters };
  return { schema, toJson: JSON.stringify, unavailableJson: UNAVAILABLE_JSON };
}

export const textCodec = stringCodec();
export const jsonCodec = stringCodec('io.debezium.data.Json');
export const xmlCodec = stringCodec('io.debezium.data.Xml');
export const uuidCodec = stringCodec('io.debezium.data.Uuid');

/** Decodes bytea output, hex ('\x0a0b', the default) or escape format. */
export function byteaBytes(text: string): Buffer {
  if (text.startsWith('\\x')) {
    const hex = text.slice(2);
    if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw badText('bytea', text);
    return Buffer.from(hex, 'hex');
  }
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 92) {
      if (c > 255) throw badText('bytea', text);
      out.push(c);
    } else if (text.charCodeAt(i + 1) === 92) {
      out.push(92);
      i++;
    } else {
      const octal = text.slice(i + 1, i + 4);
      if (!/^[0-3][0-7]{2}$/.test(octal)) throw badText('bytea', text);
      out.push(Number.parseInt(octal, 8));
      i += 3;
    }
  }
  return Buffer.from(out);
}

/** bytea -> BYTES (binary.handling.mode=bytes), base64 in JSON as Jackson writes it. */
export const byteaCodec: FieldCodec = {
  schema: { type: 'bytes' },
  toJson: (text) => `"${byteaBytes(text).toString('base64')}"`,
  unavailableJson: `"${UNAVAILABLE_PLACEHOLDER_BASE64}"`,
};

/**
 * bit(n): n = 1 -> BOOLEAN; n > 1 -> io.debezium.data.Bits, bits little-endian (the last character
 * of the text is bit 0), the byte array sized by the highest set bit as Debezium does.
 */
export function bitCodec(length: number): FieldCodec {
  if (length === 1) {
    return {
      schema: { type: 'boolean' },
      toJson: (text) => {
        if (text === '1') return 'true';
        if (text === '0') return 'false';
        throw badText('bit(1)', text);
      },
      unavailableJson: UNAVAILABLE_JSON,
    };
  }
  return {
    schema: {
      type: 'bytes',
      name: 'io.debezium.data.Bits',
      version: 1,
      parameters: { length: String(length) },
    },
    toJson: (text) => `"${bitsToBytes(text).toString('base64')}"`,
    unavailableJson: UNAVAILABLE_JSON,
  };
}

function bitsToBytes(text: string): Buffer {
  const n = text.length;
  const highest = text.indexOf('1');
  const bitCount = highest < 0 ? 0 : n - highest;
  const bytes = Buffer.alloc(Math.ceil(bitCount / 8));
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(n - 1 - i);
    if (c === 49) bytes[i >> 3]! |= 1 << (i & 7);
    else if (c !== 48) throw badText('bit string', text);
  }
  return bytes;
}

/**
 * varbit: deliberately a plain STRING of the bit text ('0101'). Debezium's Bits bytes drop leading
 * zeros and a varbit's length is per value, so B'0001' and B'1' would come back equal.
 */
export const varbitCodec: FieldCodec = textCodec;

/** point -> io.debezium.data.geometry.Point {x, y, wkb, srid} as Debezium builds it. */
export const pointCodec: FieldCodec = {
  schema: {
    type: 'struct',
    name: 'io.debezium.data.geometry.Point',
    version: 1,
    doc: 'Geometry (POINT)',
    fields: [
      { field: 'x', type: 'double' },
      { field: 'y', type: 'double' },
      { field: 'wkb', type: 'bytes', optional: true },
      { field: 'srid', type: 'int32', optional: true },
    ],
  },
  toJson: (text) => {
    const m = /^\(([^,]+),([^)]+)\)$/.exec(text);
    if (m === null) throw badText('point', text);
    const x = Number(m[1]);
    const y = Number(m[2]);
    if (Number.isNaN(x) && m[1] !== 'NaN') throw badText('point', text);
    if (Number.isNaN(y) && m[2] !== 'NaN') throw badText('point', text);
    const wkb = Buffer.alloc(21);
    wkb[0] = 1; // little-endian byte order mark, then type 1 (Point) and the coordinates
    wkb.writeUInt32LE(1, 1);
    wkb.writeDoubleLE(x, 5);
    wkb.writeDoubleLE(y, 13);
    return `{"x":${floatJson(m[1]!)},"y":${floatJson(m[2]!)},"wkb":"${wkb.toString('base64')}","srid":null}`;
  },
  unavailableJson: UNAVAILABLE_JSON,
};

function floatJson(text: string): string {
  return /^-?\d/.test(text) ? text : `"${text}"`;
}

const isPlaceholder = (value: JsonValue): boolean => value === UNAVAILABLE_PLACEHOLDER;

/** BOOLEAN -> '1'/'0', which both bool and bit(1) accept. */
export const booleanDecoder: FieldDecoder = {
  toText: (value) => {
    if (value === true) return '1';
    if (value === false) return '0';
    throw badValue('a boolean', value);
  },
  isUnavailable: isPlaceholder,
};

export const stringDecoder: FieldDecoder = {
  toText: (value) => {
    if (typeof value !== 'string') throw badValue('a string', value);
    return value;
  },
  isUnavailable: isPlaceholder,
};

function base64Bytes(value: JsonValue): Buffer {
  if (typeof value !== 'string' || !BASE64.test(value)) throw badValue('base64 bytes', value);
  return Buffer.from(value, 'base64');
}

/** BYTES -> bytea hex literal. */
export const bytesDecoder: FieldDecoder = {
  toText: (value) => `\\x${base64Bytes(value).toString('hex')}`,
  isUnavailable: (value) => value === UNAVAILABLE_PLACEHOLDER_BASE64 || value === UNAVAILABLE_PLACEHOLDER,
};

const UNBOUNDED_BITS = 2147483647;

/** io.debezium.data.Bits -> bit string, padded to the `length` parameter when it is a real length. */
export function bitsDecoder(schema: ConnectSchema): FieldDecoder {
  const length = Number(schema.parameters?.length ?? UNBOUNDED_BITS);
  return {
    toText: (value) => {
      const bytes = base64Bytes(value);
      let bits = '';
      for (let i = bytes.length * 8 - 1; i >= 0; i--) bits += (bytes[i >> 3]! >> (i & 7)) & 1 ? '1' : '0';
      const first = bits.indexOf('1');
      bits = first < 0 ? '' : bits.slice(first);
      if (length < UNBOUNDED_BITS && bits.length <= length) return bits.padStart(length, '0');
      return bits === '' ? '0' : bits;
    },
    isUnavailable: isPlaceholder,
  };
}

export const pointDecoder: FieldDecoder = {
  toText: (value) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw badValue('a Point struct', value);
    const { x, y } = value as { x?: JsonValue; y?: JsonValue };
    return `(${coordinate(x ?? null)},${coordinate(y ?? null)})`;
  },
  isUnavailable: isPlaceholder,
};

function coordinate(value: JsonValue): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return value;
  throw badValue('a coordinate', value);
}

/** MAP<string, string> (hstore.handling.mode=map) -> hstore literal. */
export const hstoreMapDecoder: FieldDecoder = {
  toText: (value) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badValue('a map', value);
    const quote = (s: string): string => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
    return Object.entries(value as Record<string, JsonValue>)
      .map(
        ([k, v]) =>
          `${quote(k)}=>${v === null ? 'NULL' : typeof v === 'string' ? quote(v) : quote(String(v))}`,
      )
      .join(',');
  },
  isUnavailable: isPlaceholder,
};
