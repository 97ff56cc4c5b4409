/**
 * Prints an error for an operator: one line naming what failed, the hint when the error carries
 * one, and the cause chain. Returns the process exit code.
 */
export function reportFatal(error: unknown): number {
  const lines: string[] = [];
  let current: unknown = error;
  let depth = 0;
  while (current !== undefined && depth < 5) {
    if (current instanceof Error) {
      lines.push(`${depth === 0 ? 'error' : 'caused by'}: ${current.message}`);
      const hint = (current as { hint?: unknown }).hint;
      if (typeof hint === 'string' && hint.length > 0) lines.push(`  fix: ${hint}`);
      current = current.cause;
    } else {
      lines.push(`${depth === 0 ? 'error' : 'caused by'}: ${String(current)}`);
      current = undefined;
    }
    depth++;
  }
  process.stderr.write(`${lines.join('\n')}\n`);
  return 1;
}
