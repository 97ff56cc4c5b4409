/**
 * Numeric family: int2/int4/int8/oid, float4/float8, numeric (Connect Decimal or Debezium
 * VariableScaleDecimal, decimal.handling.mode=precise) and money.
 *
 * Integer and float text from PostgreSQL's output functions is already valid JSON number text, so it
 * is copied through unchanged: int8 values beyond 2^53 keep their exact digits, and float text is
 * PostgreSQL's shortest round-trip form (extra_float_digits >= 1, the default since PG 12).
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
} from './connect-schema.ts';

const INTEGER_TEXT = /^-?\d+$/;
const FLOAT_TEXT = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const DECIMAL_TEXT = /^(-)?(\d+)(?:\.(\d+))?$/;

export const DECIMAL_SCHEMA_NAME = 'org.apache.kafka.connect.data.Decimal';
export const VARIABLE_SCALE_DECIMAL_NAME = 'io.debezium.data.VariableScaleDecimal';

/**
 * Special numeric values have no Decimal encoding. Debezium's precise mode fails the connector on
 * them (SpecialValueDecimal throws ConnectException). We put Debezium's own string-mode tokens where
 * the unscaled bytes would go: lossless for our applier, and not valid base64 ('_', or a length that
 * is not a multiple of 4), so a Java consumer fails loudly instead of reading a wrong number.
 */
const SPECIAL_TO_TOKEN: ReadonlyMap<string, string> = new Map([
  ['NaN', 'NAN'],
  ['Infinity', 'POSITIVE_INFINITY'],
  ['-Infinity', 'NEGATIVE_INFINITY'],
]);
const TOKEN_TO_SPECIAL: ReadonlyMap<string, string> = new Map([
  ['NAN', 'NaN'],
  ['NaN', 'NaN'],
  ['POSITIVE_INFINITY', 'Infinity'],
  ['Infinity', 'Infinity'],
  ['NEGATIVE_INFINITY', '-Infinity'],
  ['-Infinity', '-Infinity'],
]);

function integerCodec(type: 'int16' | 'int32' | 'int64', what: string): FieldCodec {
  return {
    schema: { type },
    toJson: (text) => {
      if (!INTEGER_TEXT.test(text)) throw badText(what, text);
      return text;
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

export const int2Codec = integerCodec('int16', 'int2');
export const int4Codec = integerCodec('int32', 'int4');
export const int8Codec = integerCodec('int64', 'int8');
/** oid is unsigned 32-bit: Debezium maps it to INT64. */
export const oidCodec = integerCodec('int64', 'oid');

function floatCodec(type: 'float' | 'double', what: string): FieldCodec {
  return {
    schema: { type },
    toJson: (text) => {
      if (FLOAT_TEXT.test(text)) return text;
      // Jackson writes non-finite doubles as quoted strings (QUOTE_NON_NUMERIC_NUMBERS is on by default).
      if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') return `"${text}"`;
      throw badText(what, text);
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

export const float4Codec = floatCodec('float', 'float4');
export const float8Codec = floatCodec('double', 'float8');

/** Numeric with a typmod: Connect Decimal with the column's scale and precision. */
export function decimalCodec(precision: number, scale: number): FieldCodec {
  return {
    schema: {
      type: 'bytes',
      name: DECIMAL_SCHEMA_NAME,
      version: 1,
      parameters: { scale: String(scale), 'connect.decimal.precision': String(precision) },
    },
    toJson: (text) => {
      const token = SPECIAL_TO_TOKEN.get(text);
      if (token !== undefined) return `"${token}"`;
      return `"${bigintToBase64(unscaledAtScale(text, scale))}"`;
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** Numeric without a typmod: Debezium's VariableScaleDecimal struct. We keep the value's own scale. */
export const variableScaleDecimalCodec: FieldCodec = {
  schema: {
    type: 'struct',
    name: VARIABLE_SCALE_DECIMAL_NAME,
    version: 1,
    doc: 'Variable scaled decimal',
    fields: [
      { field: 'scale', type: 'int32' },
      { field: 'value', type: 'bytes' },
    ],
  },
  toJson: (text) => {
    const token = SPECIAL_TO_TOKEN.get(text);
    if (token !== undefined) return `{"scale":0,"value":"${token}"}`;
    const m = DECIMAL_TEXT.exec(text);
    if (m === null) throw badText('numeric', text);
    const fraction = m[3] ?? '';
    const unscaled = BigInt(m[2]! + fraction);
    return `{"scale":${fraction.length},"value":"${bigintToBase64(m[1] === undefined ? unscaled : -unscaled)}"}`;
  },
  unavailableJson: UNAVAILABLE_JSON,
};

/**
 * money: Connect Decimal with scale 2 (Debezium's money.fraction.digits default). The text follows
 * lc_monetary; we accept the C/en_US forms ('$1,234.56', '-$1,234.56', '($1,234.56)').
 */
export const moneyCodec: FieldCodec = {
  schema: {
    type: 'bytes',
    name: DECIMAL_SCHEMA_NAME,
    version: 1,
    parameters: { scale: '2' },
  },
  toJson: (text) => {
    const negative = text.includes('-') || text.startsWith('(');
    const plain = text.replace(/[^0-9.]/g, '');
    if (!DECIMAL_TEXT.test(plain)) throw badText('money', text);
    return `"${bigintToBase64(unscaledAtScale(negative ? `-${plain}` : plain, 2))}"`;
  },
  unavailableJson: UNAVAILABLE_JSON,
};

/** Decimal text -> unscaled integer at `scale` (which may be negative); rejects lost digits. */
function unscaledAtScale(text: string, scale: number): bigint {
  const m = DECIMAL_TEXT.exec(text);
  if (m === null) throw badText('numeric', text);
  let digits = m[2]! + (m[3] ?? '');
  const extra = (m[3] ?? '').length - scale;
  if (extra < 0) digits += '0'.repeat(-extra);
  else if (extra > 0) {
    if (!/^0*$/.test(digits.slice(digits.length - extra))) throw badText(`numeric with scale ${scale}`, text);
    digits = digits.slice(0, digits.length - extra) || '0';
  }
  const unscaled = BigInt(digits);
  return m[1] === undefined ? unscaled : -unscaled;
}

/** Two's-complement big-endian minimal bytes (Java BigInteger#toByteArray), base64. */
export function bigintToBase64(n: bigint): string {
  const negative = n < 0n;
  let hex = (negative ? -n - 1n : n).toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (hex.charCodeAt(0) >= 56 /* '8' */) hex = `00${hex}`;
  const bytes = Buffer.from(hex, 'hex');
  if (negative) for (let i = 0; i < bytes.length; i++) bytes[i] = ~bytes[i]! & 0xff;
  return bytes.toString('base64');
}

/** Inverse of {@link bigintToBase64}. */
export function base64ToBigint(base64: string): bigint {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length === 0) return 0n;
  const n = BigInt(`0x${bytes.toString('hex')}`);
  return (bytes[0]! & 0x80) === 0 ? n : n - (1n << BigInt(bytes.length * 8));
}

/** Unscaled integer and scale -> numeric literal. */
export function formatScaled(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  let digits = (negative ? -unscaled : unscaled).toString();
  if (scale > 0) {
    if (digits.length <= scale) digits = '0'.repeat(scale - digits.length + 1) + digits;
    digits = `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
  } else if (scale < 0 && digits !== '0') {
    digits += '0'.repeat(-scale);
  }
  return negative ? `-${digits}` : digits;
}

function decodeUnscaled(value: JsonValue, scale: number): string {
  if (typeof value !== 'string') throw badValue('base64 decimal bytes', value);
  const special = TOKEN_TO_SPECIAL.get(value);
  if (special !== undefined) return special;
  if (!BASE64.test(value)) throw badValue('base64 decimal bytes', value);
  return formatScaled(base64ToBigint(value), scale);
}

const isPlaceholder = (value: JsonValue): boolean => value === UNAVAILABLE_PLACEHOLDER;

export const integerDecoder: FieldDecoder = {
  toText: (value) => {
    if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value)))
      return String(value);
    throw badValue('an integer', value);
  },
  isUnavailable: isPlaceholder,
};

export const floatDecoder: FieldDecoder = {
  toText: (value) => {
    if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
    if (typeof value === 'bigint') return value.toString();
    if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return value;
    throw badValue('a number', value);
  },
  isUnavailable: isPlaceholder,
};

export function decimalDecoder(schema: ConnectSchema): FieldDecoder {
  const scale = Number(schema.parameters?.scale ?? '0');
  if (!Number.isInteger(scale))
    throw badValue('an integer Decimal scale parameter', schema.parameters?.scale ?? null);
  return { toText: (value) => decodeUnscaled(value, scale), isUnavailable: isPlaceholder };
}

export const variableScaleDecimalDecoder: FieldDecoder = {
  toText: (value) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw badValue('a VariableScaleDecimal struct', value);
    }
    const { scale, value: bytes } = value as { scale?: JsonValue; value?: JsonValue };
    if (typeof scale !== 'number' || !Number.isInteger(scale))
      throw badValue('an int32 scale', scale ?? null);
    return decodeUnscaled(bytes ?? null, scale);
  },
  isUnavailable: isPlaceholder,
};
