import { redactText } from '../config/redact.ts';
import { errorChain } from '../runtime/errors.ts';

/**
 * Prints an error for an operator: one line naming what failed, the hint when the error carries
 * one, and the cause chain. Returns the process exit code.
 */
export function reportFatal(error: unknown): number {
  const lines = errorChain(error).flatMap((link, depth) => [
    `${depth === 0 ? 'error' : 'caused by'}: ${link.message}`,
    ...(link.hint === undefined ? [] : [`  fix: ${link.hint}`]),
  ]);
  process.stderr.write(`${redactText(lines.join('\n'))}\n`);
  return 1;
}
