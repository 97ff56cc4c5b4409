/**
 * Temporal family with Debezium's defaults (time.precision.mode=adaptive): date -> io.debezium.time.Date,
 * time(0..3) -> Time (ms), time/time(4..6) -> MicroTime, timestamp(0..3) -> Timestamp (ms),
 * timestamp/timestamp(4..6) -> MicroTimestamp, timestamptz -> ZonedTimestamp (UTC, fraction padded to
 * the column precision), timetz -> ZonedTime, interval -> Interval (ISO string; see intervalCodec).
 *
 * Input is PostgreSQL output with DateStyle=ISO and IntervalStyle=postgres (the server defaults).
 */
import {
  civilFromDays,
  daysFromCivil,
  epochMicros,
  isoYear,
  MICROS_PER_DAY,
  microsFraction,
  pad2,
  parseDateTime,
  splitEpochMicros,
} from './calendar.ts';
import { badText, type FieldCodec, UNAVAILABLE_JSON } from './connect-schema.ts';

/**
 * Debezium's encodings of ±infinity (PostgresValueConverter): dates become the epoch day of
 * LocalDate -5877611-06-21 / -22, timestamps the PGStatement infinity instants. All lie outside
 * PostgreSQL's range, so the reverse mapping is unambiguous.
 */
export const DATE_POSITIVE_INFINITY = -2147472692;
export const DATE_NEGATIVE_INFINITY = -2147472691;
export const MICROS_POSITIVE_INFINITY = 9223372036825200000n;
export const MICROS_NEGATIVE_INFINITY = -9223372036832400000n;
export const MILLIS_POSITIVE_INFINITY = 9223372036825200;
export const MILLIS_NEGATIVE_INFINITY = -9223372036832400;

export const dateCodec: FieldCodec = {
  schema: { type: 'int32', name: 'io.debezium.time.Date', version: 1 },
  toJson: (text) => {
    if (text === 'infinity') return String(DATE_POSITIVE_INFINITY);
    if (text === '-infinity') return String(DATE_NEGATIVE_INFINITY);
    const p = parseDateTime(text, 'date', false, false);
    return String(daysFromCivil(p.year, p.month, p.day));
  },
  unavailableJson: UNAVAILABLE_JSON,
};

/** HH:MM:SS[.f] (up to 24:00:00) -> microseconds since midnight. */
export function parseTimeOfDay(text: string, what: string, end = text.length): number {
  const c = (i: number): number => text.charCodeAt(i) - 48;
  if (end < 8 || text.charCodeAt(2) !== 58 || text.charCodeAt(5) !== 58) throw badText(what, text);
  const h = c(0) * 10 + c(1);
  const m = c(3) * 10 + c(4);
  const s = c(6) * 10 + c(7);
  if (!(h >= 0 && h <= 24 && m >= 0 && m < 60 && s >= 0 && s < 60)) throw badText(what, text);
  let micros = ((h * 60 + m) * 60 + s) * 1_000_000;
  if (end > 8) {
    if (text.charCodeAt(8) !== 46 || end - 9 < 1 || end - 9 > 6) throw badText(what, text);
    let f = 0;
    for (let i = 9; i < end; i++) {
      const d = c(i);
      if (d < 0 || d > 9) throw badText(what, text);
      f = f * 10 + d;
    }
    micros += f * 10 ** (15 - end);
  }
  return micros;
}

export function timeCodec(precision: number | undefined): FieldCodec {
  if (precision !== undefined && precision <= 3) {
    return {
      schema: { type: 'int32', name: 'io.debezium.time.Time', version: 1 },
      toJson: (text) => String(Math.floor(parseTimeOfDay(text, 'time') / 1000)),
      unavailableJson: UNAVAILABLE_JSON,
    };
  }
  return {
    schema: { type: 'int64', name: 'io.debezium.time.MicroTime', version: 1 },
    toJson: (text) => String(parseTimeOfDay(text, 'time')),
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/**
 * timetz -> io.debezium.time.ZonedTime. Deliberate difference: Debezium shifts the value to UTC
 * ('10:00:00+02' -> "08:00:00Z"), which loses the zone (timetz equality compares it) and can wrap the
 * day. We keep the original offset ("10:00:00+02:00"), still an ISO-8601 offset time; UTC values
 * print as Debezium's ("08:00:00Z").
 */
export const timetzCodec: FieldCodec = {
  schema: { type: 'string', name: 'io.debezium.time.ZonedTime', version: 1 },
  toJson: (text) => {
    let z = text.length - 3;
    while (z > 0 && text.charCodeAt(z) !== 43 && text.charCodeAt(z) !== 45) z--;
    if (z < 8) throw badText('timetz', text);
    parseTimeOfDay(text, 'timetz', z);
    const offset = text.slice(z);
    if (!/^[+-]\d\d(?::\d\d(?::\d\d)?)?$/.test(offset)) throw badText('timetz', text);
    const zone = /^[+-]00(?::00)*$/.test(offset) ? 'Z' : offset.length === 3 ? `${offset}:00` : offset;
    return `"${text.slice(0, z)}${zone}"`;
  },
  unavailableJson: UNAVAILABLE_JSON,
};

export function timestampCodec(precision: number | undefined): FieldCodec {
  const millis = precision !== undefined && precision <= 3;
  return {
    schema: millis
      ? { type: 'int64', name: 'io.debezium.time.Timestamp', version: 1 }
      : { type: 'int64', name: 'io.debezium.time.MicroTimestamp', version: 1 },
    toJson: (text) => {
      if (text === 'infinity') return String(millis ? MILLIS_POSITIVE_INFINITY : MICROS_POSITIVE_INFINITY);
      if (text === '-infinity') return String(millis ? MILLIS_NEGATIVE_INFINITY : MICROS_NEGATIVE_INFINITY);
      const p = parseDateTime(text, 'timestamp', true, false);
      const micros = epochMicros(daysFromCivil(p.year, p.month, p.day), p.timeMicros, 0);
      if (!millis) return String(micros);
      return typeof micros === 'number' ? String(Math.floor(micros / 1000)) : String(micros / 1000n);
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** Epoch microseconds -> ISO-8601 UTC text with `width` fraction digits (0: java.time's minimal form). */
export function isoUtc(micros: number | bigint, width: number): string {
  const [days, tod] = splitEpochMicros(micros);
  const [y, m, d] = civilFromDays(days);
  const seconds = Math.floor(tod / 1_000_000);
  const fractionMicros = tod % 1_000_000;
  let fraction: string;
  if (width <= 0) fraction = microsFraction(fractionMicros);
  else fraction = `.${String(fractionMicros).padStart(6, '0').padEnd(width, '0').slice(0, width)}`;
  const hms = `${pad2(Math.floor(seconds / 3600))}:${pad2(Math.floor(seconds / 60) % 60)}:${pad2(seconds % 60)}`;
  return `${isoYear(y)}-${pad2(m)}-${pad2(d)}T${hms}${fraction}Z`;
}

/** timestamptz -> io.debezium.time.ZonedTimestamp in UTC; ±infinity stay the strings Debezium emits. */
export function timestamptzCodec(precision: number | undefined): FieldCodec {
  const width = precision ?? 6;
  return {
    schema: { type: 'string', name: 'io.debezium.time.ZonedTimestamp', version: 1 },
    toJson: (text) => {
      if (text === 'infinity' || text === '-infinity') return `"${text}"`;
      const p = parseDateTime(text, 'timestamptz', true, true);
      return `"${isoUtc(epochMicros(daysFromCivil(p.year, p.month, p.day), p.timeMicros, p.offsetSeconds), width)}"`;
    },
    unavailableJson: UNAVAILABLE_JSON,
  };
}

/** The fields of an interval as PostgreSQL prints them; time fields carry the time part's sign. */
export interface IntervalParts {
  years: number;
  months: number;
  days: number;
  hours: number;
  minutes: number;
  /** Seconds with fraction, as decimal text with sign ('-6.78', '0'). */
  seconds: string;
}

const INTERVAL_UNIT = /^([+-]?\d+) (years?|mons?|days?)$/;
const INTERVAL_TIME = /^([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;

/** Parses IntervalStyle=postgres output ('1 year 2 mons -3 days +04:05:06.78'). */
export function parseInterval(text: string): IntervalParts {
  const parts: IntervalParts = { years: 0, months: 0, days: 0, hours: 0, minutes: 0, seconds: '0' };
  const tokens = text.split(' ');
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const time = INTERVAL_TIME.exec(token);
    if (time !== null) {
      const sign = time[1] === '-' ? -1 : 1;
      parts.hours = sign * Number(time[2]);
      parts.minutes = sign * Number(time[3]);
      const frac = (time[5] ?? '').replace(/0+$/, '');
      const secs = `${Number(time[4])}${frac === '' ? '' : `.${frac}`}`;
      parts.seconds = sign < 0 && secs !== '0' ? `-${secs}` : secs;
      continue;
    }
    const unit = INTERVAL_UNIT.exec(`${token} ${tokens[i + 1] ?? ''}`);
    if (unit === null) throw badText('interval', text);
    i++;
    const value = Number(unit[1]);
    if (unit[2]!.startsWith('year')) parts.years = value;
    else if (unit[2]!.startsWith('mon')) parts.months = value;
    else parts.days = value;
  }
  return parts;
}

/** Debezium Interval.toIsoString: every component, seconds with trailing zeros stripped. */
export function isoInterval(p: IntervalParts): string {
  return `P${p.years}Y${p.months}M${p.days}DT${p.hours}H${p.minutes}M${p.seconds}S`;
}

const MICROS_PER_MONTH_AVG = 2_629_800_000_000n; // 365.25 / 12 days (MicroDuration.DAYS_PER_MONTH_AVG)

/** io.debezium.time.MicroDuration: approximate microseconds, months counted as 30.4375 days. */
export function intervalMicros(p: IntervalParts): bigint {
  const [whole, frac = ''] = p.seconds.replace('-', '').split('.');
  const secondMicros = BigInt(whole!) * 1_000_000n + BigInt(frac.padEnd(6, '0') || '0');
  const signedSeconds = p.seconds.startsWith('-') ? -secondMicros : secondMicros;
  return (
    BigInt(p.years * 12 + p.months) * MICROS_PER_MONTH_AVG +
    BigInt(p.days) * BigInt(MICROS_PER_DAY) +
    (BigInt(p.hours) * 60n + BigInt(p.minutes)) * 60_000_000n +
    signedSeconds
  );
}

export type IntervalHandling = 'string' | 'numeric';

/**
 * interval. Debezium's default (interval.handling.mode=numeric) is MicroDuration, which counts a
 * month as 30.4375 days and cannot be mapped back ('1 mon' != '30 days 10:30:00'). Our default is
 * Debezium's other mode, io.debezium.time.Interval (ISO-8601 with every field), which is exact.
 */
export function intervalCodec(mode: IntervalHandling): FieldCodec {
  if (mode === 'numeric') {
    return {
      schema: { type: 'int64', name: 'io.debezium.time.MicroDuration', version: 1 },
      toJson: (text) => intervalMicros(parseInterval(text)).toString(),
      unavailableJson: UNAVAILABLE_JSON,
    };
  }
  return {
    schema: { type: 'string', name: 'io.debezium.time.Interval', version: 1 },
    toJson: (text) => `"${isoInterval(parseInterval(text))}"`,
    unavailableJson: UNAVAILABLE_JSON,
  };
}
