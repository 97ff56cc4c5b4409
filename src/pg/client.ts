/**
 * Opens every PostgreSQL session pgbisync holds. node-postgres emits 'error' on a client whose connection
 * dies while no query runs on it (the server crashed or restarted, a reset or idle-timeout connection),
 * and an 'error' event that nobody listens to ends the whole process — every direction with it. Each
 * client made here has a listener from its first moment: the loss goes to `onLost` (a component that
 * wants to restart at once), and whoever uses the client next gets a rejected query, which the
 * component's supervisor turns into a restart of that component alone.
 *
 * Every session also detects a dead peer within a bound, on both ends (a host that crashed or a network
 * cut sends no FIN, and Linux's defaults notice only after about two hours): the client sends TCP
 * keepalives after CLIENT_KEEPALIVE_DELAY_MS of silence, and the server is asked (startup options, see
 * https://www.postgresql.org/docs/current/runtime-config-connection.html#RUNTIME-CONFIG-TCP-SETTINGS) to
 * probe an idle client and to drop one that does not acknowledge what it sent, so a backend of a vanished
 * pgbisync ends — releasing its replication origin, its slot and its lease — within SERVER_DEAD_PEER_MS.
 */
import pg from 'pg';

export const CLIENT_KEEPALIVE_DELAY_MS = 5_000;
/** A connection attempt whose server never answers (a path that drops packets silently) fails after this. */
export const CONNECT_TIMEOUT_MS = 15_000;
/** Server side: first probe after 5 s idle, then every 5 s, 3 unanswered end the session; unacked data 20 s. */
export const SERVER_TCP_SETTINGS = {
  tcp_keepalives_idle: '5',
  tcp_keepalives_interval: '5',
  tcp_keepalives_count: '3',
  tcp_user_timeout: '20000',
} as const;
/** The longest a backend outlives a silent peer: idle 5 s + 3 probes 5 s apart (or 20 s of unacked data). */
export const SERVER_DEAD_PEER_MS = 20_000;

/** The startup `options` that apply `settings` to the session (`-c name=value` each). */
export function serverOptions(settings: Readonly<Record<string, string>>): string {
  return Object.entries(settings)
    .map(([name, value]) => `-c ${name}=${value}`)
    .join(' ');
}

export function newPgClient(config: pg.ClientConfig, onLost?: (error: Error) => void): pg.Client {
  const client = new pg.Client({
    keepAlive: true,
    keepAliveInitialDelayMillis: CLIENT_KEEPALIVE_DELAY_MS,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...config,
    // A caller's own startup options (e.g. the lease's idle_session_timeout) come after ours.
    options: [serverOptions(SERVER_TCP_SETTINGS), config.options].filter((o) => o !== undefined).join(' '),
  });
  client.on('error', (error: Error) => onLost?.(error));
  return client;
}
