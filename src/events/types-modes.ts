/**
 * The codecs behind the type-handling options (./type-handling.ts) where they depart from the
 * default mapping: the connector's `decimal.handling.mode`, `time.precision.mode`,
 * `binary.handling.mode` and `hstore.handling.mode`, and pgbisync's `varbit` and `timetz`; plus
 * `hstore` and `tsvector`, which need no option. Each codec is chosen once per column; the per-value
 * work is the conversion the mode asks for and nothing else.
 *
 * Where a mode sends a plain Connect string that pgbisync's applier could not tell from text (bytea
 * as base64 or hex, hstore as JSON), the field schema carries the parameter {@link ENCODING_PARAMETER}
 * naming the encoding; Connect consumers ignore parameters they do not know.
 */
import { formatTimeOfDay, MICROS_PER_DAY } from './calendar.ts';
import {
  BASE64,
  badText,
  badValue,
  type FieldCodec,
  type FieldDecoder,
  type JsonValue,
  UNAVAILABLE_JSON,
  UNAVAILABLE_PLACEHOLDER,
} from './connect-schema.ts';
import { byteaBytes, stringCodec } from './types-misc.ts';
import { parseTimeOfDay } from './types-temporal.ts';

/** Schema parameter naming how a string field encodes its column (pgbisync's own, see above). */
export const ENCODING_PARAMETER = 'pgbisync.encoding';

export const tsvectorCodec: FieldCodec = stringCodec('io.debezium.data.Tsvector');

/** numeric/money with `decimal.handling.mode=string`: the decimal text (NaN, ±Infinity as PostgreSQL prints them). */
export function decimalStringCodec(money: boolean): FieldCodec {
  return {
    schema: { type: 'string' },
    toJson: money ? (text) => JSON.stringify(plainMoney(text)) : JSON.stringify,
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** numeric/money with `decimal.handling.mode=double` (lossy beyond 15-17 significant digits). */
export function decimalDoubleCodec(money: boolean): FieldCodec {
  return {
    schema: { type: 'double' },
    toJson: (text) => {
      const n = Number(money ? plainMoney(text) : text);
      if (Number.isFinite(n)) return String(n);
      if (Number.isNaN(n) && text !== 'NaN') throw badText('numeric', text);
      return `"${n}"`;
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** '$1,234.56', '-$1,234.56', '($1,234.56)' -> '1234.56' / '-1234.56'. */
function plainMoney(text: string): string {
  const negative = text.includes('-') || text.startsWith('(');
  const plain = text.replace(/[^0-9.]/g, '');
  if (!/^\d+(?:\.\d+)?$/.test(plain)) throw badText('money', text);
  return negative ? `-${plain}` : plain;
}

/** `time.precision.mode=connect`: Kafka Connect's own logical types, millisecond precision. */
export const CONNECT_DATE = 'org.apache.kafka.connect.data.Date';
export const CONNECT_TIME = 'org.apache.kafka.connect.data.Time';
export const CONNECT_TIMESTAMP = 'org.apache.kafka.connect.data.Timestamp';

/** Renames a temporal codec's schema (same JSON values) for `time.precision.mode=connect`. */
export function renamed(codec: FieldCodec, name: string): FieldCodec {
  return { ...codec, schema: { ...codec.schema, name, version: 1 } };
}

/** time -> org.apache.kafka.connect.data.Time: milliseconds since midnight (int32). */
export const connectTimeCodec: FieldCodec = {
  schema: { type: 'int32', name: CONNECT_TIME, version: 1 },
  toJson: (text) => String(Math.floor(parseTimeOfDay(text, 'time') / 1000)),
  unavailableJson: UNAVAILABLE_JSON,
};

/** time -> io.debezium.time.MicroTime whatever the precision (`adaptive_time_microseconds`). */
export const microTimeCodec: FieldCodec = {
  schema: { type: 'int64', name: 'io.debezium.time.MicroTime', version: 1 },
  toJson: (text) => String(parseTimeOfDay(text, 'time')),
  unavailableJson: UNAVAILABLE_JSON,
};

/**
 * timetz shifted to UTC, as the connector sends it (`timetz: utc`): '01:02:03+05:30' -> "19:32:03Z".
 * Loses the offset and, across midnight, the day.
 */
export const timetzUtcCodec: FieldCodec = {
  schema: { type: 'string', name: 'io.debezium.time.ZonedTime', version: 1 },
  toJson: (text) => {
    let z = text.length - 3;
    while (z > 0 && text.charCodeAt(z) !== 43 && text.charCodeAt(z) !== 45) z--;
    if (z < 8) throw badText('timetz', text);
    const m = /^([+-])(\d\d)(?::(\d\d)(?::(\d\d))?)?$/.exec(text.slice(z));
    if (m === null) throw badText('timetz', text);
    const offsetSeconds =
      (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0));
    const utc = parseTimeOfDay(text, 'timetz', z) - offsetSeconds * 1_000_000;
    return `"${formatTimeOfDay(((utc % MICROS_PER_DAY) + MICROS_PER_DAY) % MICROS_PER_DAY)}Z"`;
  },
  unavailableJson: UNAVAILABLE_JSON,
};

export type BinaryEncoding = 'base64' | 'base64-url-safe' | 'hex';

/** bytea as a string (`binary.handling.mode` base64, base64-url-safe, hex). */
export function binaryStringCodec(encoding: BinaryEncoding): FieldCodec {
  const buffer: BufferEncoding = encoding === 'hex' ? 'hex' : 'base64';
  return {
    schema: { type: 'string', parameters: { [ENCODING_PARAMETER]: encoding } },
    toJson:
      encoding === 'base64-url-safe'
        ? (text) => `"${byteaBytes(text).toString('base64').replaceAll('+', '-').replaceAll('/', '_')}"`
        : (text) => `"${byteaBytes(text).toString(buffer)}"`,
    unavailableJson: UNAVAILABLE_JSON,
  };
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** The decoder of {@link binaryStringCodec}'s strings -> bytea hex literal. */
export function binaryStringDecoder(encoding: BinaryEncoding): FieldDecoder {
  return {
    toText: (value) => {
      if (typeof value !== 'string') throw badValue(`${encoding} bytes`, value);
      if (encoding === 'hex') {
        if (!HEX.test(value)) throw badValue('hex bytes', value);
        return `\\x${value}`;
      }
      const standard = encoding === 'base64' ? value : value.replaceAll('-', '+').replaceAll('_', '/');
      if (!BASE64.test(standard)) throw badValue(`${encoding} bytes`, value);
      return `\\x${Buffer.from(standard, 'base64').toString('hex')}`;
    },
    isUnavailable: (value) => value === UNAVAILABLE_PLACEHOLDER,
  };
}

/**
 * hstore_out text ('"a"=>"1", "b"=>NULL': every key and value quoted, `"` and `\` escaped) -> the
 * JSON object text `{"a":"1","b":null}`, which both hstore modes send.
 */
export function hstoreJson(text: string): string {
  let out = '{';
  let i = 0;
  const n = text.length;
  const quoted = (): string => {
    if (text.charCodeAt(i) !== 34) throw badText('hstore', text);
    i++;
    let s = '';
    let start = i;
    for (;;) {
      if (i >= n) throw badText('hstore', text);
      const c = text.charCodeAt(i);
      if (c === 34) break;
      if (c === 92) {
        s += text.slice(start, i);
        i++;
        start = i;
      }
      i++;
    }
    s += text.slice(start, i);
    i++;
    return s;
  };
  while (i < n) {
    if (out.length > 1) {
      if (text.charCodeAt(i) !== 44 || text.charCodeAt(i + 1) !== 32) throw badText('hstore', text);
      i += 2;
      out += ',';
    }
    const key = quoted();
    if (text.charCodeAt(i) !== 61 || text.charCodeAt(i + 1) !== 62) throw badText('hstore', text);
    i += 2;
    if (text.startsWith('NULL', i)) {
      i += 4;
      out += `${JSON.stringify(key)}:null`;
    } else {
      out += `${JSON.stringify(key)}:${JSON.stringify(quoted())}`;
    }
  }
  return `${out}}`;
}

/** hstore: `map` -> Connect map<string, string>; `json` -> io.debezium.data.Json text. */
export function hstoreCodec(mode: 'json' | 'map'): FieldCodec {
  if (mode === 'map') {
    return {
      schema: {
        type: 'map',
        keys: { type: 'string', optional: false },
        values: { type: 'string', optional: true },
      },
      toJson: hstoreJson,
      unavailableJson: UNAVAILABLE_JSON,
    };
  }
  return {
    schema: {
      type: 'string',
      name: 'io.debezium.data.Json',
      version: 1,
      parameters: { [ENCODING_PARAMETER]: 'hstore-json' },
    },
    toJson: (text) => JSON.stringify(hstoreJson(text)),
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** The decoder of hstore's JSON text (`hstore.handling.mode=json`) -> an hstore literal. */
export function hstoreJsonDecoder(mapDecoder: FieldDecoder): FieldDecoder {
  return {
    toText: (value) => {
      if (typeof value !== 'string') throw badValue('hstore JSON text', value);
      let parsed: JsonValue;
      try {
        parsed = JSON.parse(value) as JsonValue;
      } catch {
        throw badValue('hstore JSON text', value);
      }
      return mapDecoder.toText(parsed);
    },
    isUnavailable: (value) => value === UNAVAILABLE_PLACEHOLDER,
  };
}
