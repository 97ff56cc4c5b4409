import { InvalidArgumentError } from 'commander';

/** commander parser for integer flags: rejects "12abc" and non-positive numbers with a clear message. */
export function parseIntegerOption(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed <= 0) {
    throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  }
  return parsed;
}
