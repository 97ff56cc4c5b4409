/**
 * Where the dev stack keeps things.
 * - cache: downloaded artifacts reused across runs and clones (Kafka jars, a copy of the embedded
 *   PostgreSQL binaries readable by the server user). `$PGBISYNC_CACHE_DIR`, default /var/tmp/pgbisync-cache
 *   (world-traversable, so an unprivileged server user can execute binaries from it even when the
 *   checkout lives in a private folder).
 * - state: one stack's state file, logs and data (`--state-dir`, `$PGBISYNC_STATE_DIR`, default
 *   `<project>/.state/dev`).
 */
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project's root folder (where package.json is). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function cacheDir(): string {
  return resolve(process.env.PGBISYNC_CACHE_DIR ?? '/var/tmp/pgbisync-cache');
}

export function defaultStateDir(): string {
  return resolve(process.env.PGBISYNC_STATE_DIR ?? join(PROJECT_ROOT, '.state', 'dev'));
}

/**
 * PostgreSQL data folders must be reachable by the unprivileged server user; a checkout in a private
 * folder (mode 700, as `mktemp -d` makes) is not. They live under the cache root instead, in a folder
 * named after the state folder so two stacks never share one.
 */
export function serverDataRoot(stateDir: string): string {
  const id = createHash('sha1').update(resolve(stateDir)).digest('hex').slice(0, 12);
  return join(cacheDir(), 'servers', id);
}
