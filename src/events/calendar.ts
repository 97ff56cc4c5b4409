/**
 * Proleptic Gregorian calendar arithmetic (PostgreSQL and java.time both use it, with astronomical
 * year numbering: 1 BC is year 0) and the text forms both sides print. Algorithms: Howard Hinnant,
 * "chrono-Compatible Low-Level Date Algorithms".
 */
import { badText } from './connect-schema.ts';

export const MICROS_PER_DAY = 86_400_000_000;

/** Days since 1970-01-01 of a civil date. */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** Civil date of a day count since 1970-01-01: [year, month, day]. */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

export function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function pad4(n: number): string {
  const s = String(n);
  return s.length >= 4 ? s : '0'.repeat(4 - s.length) + s;
}

/** java.time ISO year: 4 digits, '+' above 9999, '-' below 0 (astronomical). */
export function isoYear(year: number): string {
  if (year > 9999) return `+${year}`;
  return year < 0 ? `-${pad4(-year)}` : pad4(year);
}

/** PostgreSQL date text (DateStyle ISO) of an astronomical date, with ' BC' for years <= 0. */
export function pgDate(year: number, month: number, day: number): string {
  const date = `${pad4(year <= 0 ? 1 - year : year)}-${pad2(month)}-${pad2(day)}`;
  return year <= 0 ? `${date} BC` : date;
}

/** Fractional seconds (0..999999 µs) as '.ffffff' with trailing zeros stripped, or '' for zero. */
export function microsFraction(micros: number): string {
  if (micros === 0) return '';
  let s = String(micros).padStart(6, '0');
  let end = s.length;
  while (s.charCodeAt(end - 1) === 48) end--;
  s = s.slice(0, end);
  return `.${s}`;
}

/** HH:MM:SS[.ffffff] of a time of day in microseconds (24:00:00 allowed). */
export function formatTimeOfDay(micros: number): string {
  const seconds = Math.floor(micros / 1_000_000);
  return `${pad2(Math.floor(seconds / 3600))}:${pad2(Math.floor(seconds / 60) % 60)}:${pad2(seconds % 60)}${microsFraction(micros % 1_000_000)}`;
}

/** The parts of a PostgreSQL date/time text (DateStyle ISO). */
export interface DateTimeParts {
  /** Astronomical year (BC folded in). */
  year: number;
  month: number;
  day: number;
  /** Microseconds since midnight; 0 for a date. */
  timeMicros: number;
  /** Zone offset in seconds east of UTC; 0 when absent. */
  offsetSeconds: number;
}

/**
 * Parses `Y...Y-MM-DD[ HH:MM:SS[.f]][±HH[:MM[:SS]]][ BC]` (date, timestamp, timestamptz output).
 * `what` names the type in errors.
 */
export function parseDateTime(
  text: string,
  what: string,
  withTime: boolean,
  withZone: boolean,
): DateTimeParts {
  let i = 0;
  const n = text.length;
  const num = (minDigits: number, maxDigits: number): number => {
    const start = i;
    let v = 0;
    while (i < n && i - start < maxDigits) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
      i++;
    }
    if (i - start < minDigits) throw badText(what, text);
    return v;
  };
  const expect = (code: number): void => {
    if (text.charCodeAt(i) !== code) throw badText(what, text);
    i++;
  };
  let year = num(4, 9);
  expect(45);
  const month = num(2, 2);
  expect(45);
  const day = num(2, 2);
  let timeMicros = 0;
  let offsetSeconds = 0;
  if (withTime) {
    expect(32);
    const h = num(2, 2);
    expect(58);
    const mi = num(2, 2);
    expect(58);
    const s = num(2, 2);
    timeMicros = ((h * 60 + mi) * 60 + s) * 1_000_000;
    if (text.charCodeAt(i) === 46) {
      i++;
      const start = i;
      const f = num(1, 6);
      timeMicros += f * 10 ** (6 - (i - start));
    }
  }
  if (withZone) {
    const sign = text.charCodeAt(i);
    if (sign !== 43 && sign !== 45) throw badText(what, text);
    i++;
    offsetSeconds = num(2, 2) * 3600;
    if (text.charCodeAt(i) === 58) {
      i++;
      offsetSeconds += num(2, 2) * 60;
      if (text.charCodeAt(i) === 58) {
        i++;
        offsetSeconds += num(2, 2);
      }
    }
    if (sign === 45) offsetSeconds = -offsetSeconds;
  }
  if (i < n) {
    if (text.slice(i) !== ' BC') throw badText(what, text);
    year = 1 - year;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) throw badText(what, text);
  return { year, month, day, timeMicros, offsetSeconds };
}

/** Epoch microseconds as exact JSON integer text (number arithmetic while it stays below 2^53). */
export function epochMicros(days: number, timeMicros: number, offsetSeconds: number): number | bigint {
  if (days > -100_000 && days < 100_000)
    return days * MICROS_PER_DAY + timeMicros - offsetSeconds * 1_000_000;
  return BigInt(days) * BigInt(MICROS_PER_DAY) + BigInt(timeMicros - offsetSeconds * 1_000_000);
}

/** Splits epoch microseconds into [days, micros of day]. */
export function splitEpochMicros(micros: number | bigint): [number, number] {
  if (typeof micros === 'number' && Number.isSafeInteger(micros)) {
    const days = Math.floor(micros / MICROS_PER_DAY);
    return [days, micros - days * MICROS_PER_DAY];
  }
  const big = BigInt(micros);
  const perDay = BigInt(MICROS_PER_DAY);
  let days = big / perDay;
  let rest = big % perDay;
  if (rest < 0n) {
    days -= 1n;
    rest += perDay;
  }
  return [Number(days), Number(rest)];
}
