/**
 * Opens every PostgreSQL session pgbisync holds. node-postgres emits 'error' on a client whose connection
 * dies while no query runs on it (the server crashed or restarted, a reset or idle-timeout connection),
 * and an 'error' event that nobody listens to ends the whole process — every direction with it. Each
 * client made here has a listener from its first moment: the loss goes to `onLost` (a component that
 * wants to restart at once), and whoever uses the client next gets a rejected query, which the
 * component's supervisor turns into a restart of that component alone.
 */
import pg from 'pg';

export function newPgClient(config: pg.ClientConfig, onLost?: (error: Error) => void): pg.Client {
  const client = new pg.Client(config);
  client.on('error', (error: Error) => onLost?.(error));
  return client;
}
