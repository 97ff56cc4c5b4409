/** Structured JSON logs (pino); human-readable when stderr is a terminal. */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level = process.env.PGBISYNC_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY === true && process.env.PGBISYNC_LOG_FORMAT !== 'json';
  if (pretty) {
    return pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, colorize: true, ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level }, pino.destination(2));
}
