/**
 * Apply side of the temporal family: Debezium/Connect temporal payload values -> PostgreSQL literals
 * (DateStyle ISO forms, which PostgreSQL accepts regardless of the session DateStyle's order).
 */
import {
  civilFromDays,
  formatTimeOfDay,
  MICROS_PER_DAY,
  pad2,
  pgDate,
  splitEpochMicros,
} from './calendar.ts';
import { badValue, type FieldDecoder, type JsonValue, UNAVAILABLE_PLACEHOLDER } from './connect-schema.ts';
import {
  DATE_NEGATIVE_INFINITY,
  DATE_POSITIVE_INFINITY,
  MICROS_NEGATIVE_INFINITY,
  MICROS_POSITIVE_INFINITY,
  MILLIS_NEGATIVE_INFINITY,
  MILLIS_POSITIVE_INFINITY,
} from './types-temporal.ts';

const isPlaceholder = (value: JsonValue): boolean => value === UNAVAILABLE_PLACEHOLDER;

function integer(value: JsonValue, what: string): number | bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  throw badValue(what, value);
}

export const dateDecoder: FieldDecoder = {
  toText: (value) => {
    const days = Number(integer(value, 'an int32 day count'));
    if (days === DATE_POSITIVE_INFINITY) return 'infinity';
    if (days === DATE_NEGATIVE_INFINITY) return '-infinity';
    const [y, m, d] = civilFromDays(days);
    return pgDate(y, m, d);
  },
  isUnavailable: isPlaceholder,
};

export type TimeUnit = 'ms' | 'us' | 'ns';

/** Integer count of `unit` -> exact microseconds plus leftover nanoseconds (0..999). */
function toMicros(value: number | bigint, unit: TimeUnit): [bigint, number] {
  const big = BigInt(value);
  if (unit === 'ms') return [big * 1000n, 0];
  if (unit === 'us') return [big, 0];
  let micros = big / 1000n;
  let nanos = Number(big % 1000n);
  if (nanos < 0) {
    micros -= 1n;
    nanos += 1000;
  }
  return [micros, nanos];
}

function withNanos(text: string, nanos: number): string {
  if (nanos === 0) return text;
  const dot = text.indexOf('.');
  const micros = dot < 0 ? '000000' : text.slice(dot + 1).padEnd(6, '0');
  return `${dot < 0 ? text : text.slice(0, dot)}.${micros}${String(nanos).padStart(3, '0')}`;
}

export function timeDecoder(unit: TimeUnit): FieldDecoder {
  return {
    toText: (value) => {
      const [micros, nanos] = toMicros(integer(value, 'an integer time of day'), unit);
      if (micros < 0n || micros > BigInt(MICROS_PER_DAY)) throw badValue('a time of day', value);
      return withNanos(formatTimeOfDay(Number(micros)), nanos);
    },
    isUnavailable: isPlaceholder,
  };
}

export function timestampDecoder(unit: TimeUnit): FieldDecoder {
  return {
    toText: (value) => {
      const raw = integer(value, 'an integer timestamp');
      if (unit === 'us' || unit === 'ms') {
        const big = BigInt(raw);
        if (big === (unit === 'us' ? MICROS_POSITIVE_INFINITY : BigInt(MILLIS_POSITIVE_INFINITY)))
          return 'infinity';
        if (big === (unit === 'us' ? MICROS_NEGATIVE_INFINITY : BigInt(MILLIS_NEGATIVE_INFINITY)))
          return '-infinity';
      }
      const [micros, nanos] = toMicros(raw, unit);
      const [days, tod] = splitEpochMicros(micros);
      const [y, m, d] = civilFromDays(days);
      const text = `${pgYear(y)}-${pad2(m)}-${pad2(d)} ${formatTimeOfDay(tod)}`;
      return withNanos(text, nanos) + (y <= 0 ? ' BC' : '');
    },
    isUnavailable: isPlaceholder,
  };
}

function pgYear(year: number): string {
  return String(year <= 0 ? 1 - year : year).padStart(4, '0');
}

const ISO_DATE_TIME =
  /^([+-]?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?)$/;

function pgOffset(zone: string): string {
  if (zone === 'Z') return '+00';
  const digits = zone.slice(1).replaceAll(':', '');
  let out = zone[0]! + digits.slice(0, 2);
  for (let i = 2; i < digits.length; i += 2) out += `:${digits.slice(i, i + 2)}`;
  return out;
}

/** io.debezium.time.ZonedTimestamp (ISO-8601 with offset, or ±infinity) -> timestamptz literal. */
export const zonedTimestampDecoder: FieldDecoder = {
  toText: (value) => {
    if (value === 'infinity' || value === '-infinity') return value;
    const m = typeof value === 'string' ? ISO_DATE_TIME.exec(value) : null;
    if (m === null) throw badValue('an ISO-8601 zoned timestamp', value);
    const year = Number(m[1]);
    const bc = year <= 0;
    const fraction = m[7] === undefined ? '' : `.${m[7]}`;
    return `${pgYear(year)}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6] ?? '00'}${fraction}${pgOffset(m[8]!)}${bc ? ' BC' : ''}`;
  },
  isUnavailable: isPlaceholder,
};

const ISO_TIME = /^(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?)$/;

/** io.debezium.time.ZonedTime -> timetz literal (the offset is kept as given). */
export const zonedTimeDecoder: FieldDecoder = {
  toText: (value) => {
    const m = typeof value === 'string' ? ISO_TIME.exec(value) : null;
    if (m === null) throw badValue('an ISO-8601 offset time', value);
    const fraction = m[4] === undefined ? '' : `.${m[4]}`;
    return `${m[1]}:${m[2]}:${m[3] ?? '00'}${fraction}${pgOffset(m[5]!)}`;
  },
  isUnavailable: isPlaceholder,
};

const ISO_INTERVAL =
  /^([+-])?P(?:([+-]?\d+)Y)?(?:([+-]?\d+)M)?(?:([+-]?\d+)W)?(?:([+-]?\d+)D)?(?:T(?:([+-]?\d+)H)?(?:([+-]?\d+)M)?(?:([+-]?\d+(?:[.,]\d+)?)S)?)?$/;

/** io.debezium.time.Interval (ISO-8601 duration, fields may be signed) -> interval literal. */
export const isoIntervalDecoder: FieldDecoder = {
  toText: (value) => {
    const m = typeof value === 'string' ? ISO_INTERVAL.exec(value) : null;
    if (m === null || value === 'P' || (typeof value === 'string' && value.endsWith('T'))) {
      throw badValue('an ISO-8601 duration', value);
    }
    const parts: string[] = [];
    for (let i = 0; i < INTERVAL_UNITS.length; i++) {
      let field = m[i + 2];
      if (field === undefined) continue;
      field = field.replace(',', '.');
      // A leading '-' negates the whole duration: flip each field's sign.
      if (m[1] === '-') field = field.startsWith('-') ? field.slice(1) : `-${field.replace(/^\+/, '')}`;
      parts.push(`${field} ${INTERVAL_UNITS[i]}`);
    }
    return parts.length === 0 ? '0 secs' : parts.join(' ');
  },
  isUnavailable: isPlaceholder,
};

const INTERVAL_UNITS = ['years', 'mons', 'weeks', 'days', 'hours', 'mins', 'secs'];

/** io.debezium.time.MicroDuration -> interval literal 'H:MM:SS.ffffff' (exact microseconds). */
export const microDurationDecoder: FieldDecoder = {
  toText: (value) => {
    const micros = BigInt(integer(value, 'an integer duration'));
    const negative = micros < 0n;
    const abs = negative ? -micros : micros;
    const seconds = abs / 1_000_000n;
    const fraction = Number(abs % 1_000_000n);
    const text = `${seconds / 3600n}:${pad2(Number((seconds / 60n) % 60n))}:${pad2(Number(seconds % 60n))}.${String(fraction).padStart(6, '0')}`;
    return negative ? `-${text}` : text;
  },
  isUnavailable: isPlaceholder,
};
