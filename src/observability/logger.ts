/**
 * Structured JSON logs (pino); human-readable when stderr is a terminal. Every line passes `redactText`
 * on its way out: no secret of the loaded config reaches a log, whatever field or error carries it.
 */
import pino from 'pino';
import { redactText } from '../config/redact.ts';

export type Logger = pino.Logger;

export function createLogger(level = process.env.PGBISYNC_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY === true && process.env.PGBISYNC_LOG_FORMAT !== 'json';
  if (pretty) {
    return pino({
      level,
      hooks: { streamWrite: redactText },
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, colorize: true, ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level, hooks: { streamWrite: redactText } }, pino.destination(2));
}
