/**
 * Who owns which component, as the nodes tell it: the names and lease keys that `pgbisync run` writes
 * (src/daemon/lease.ts) and `pgbisync status` reads, from any host.
 *
 * A component — the capture of a node, the applier of a direction — runs in one instance at a time.
 * Instances decide who tries with a lease: a session-level advisory lock on the component's node (the
 * captured node, or the applier's target), held by a session of its own whose application_name names
 * the owner and since when. The lease only decides who tries; what keeps two owners from both writing is
 * PostgreSQL's own exclusivity (docs/deployment.md).
 */
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { directions } from './sync-plan.ts';

/** The advisory lock's first key: 'pgbs' (two-key form, so pgbisync's locks never meet one-key users'). */
export const LEASE_CLASS_ID = 0x70676273;

export interface OwnedComponent {
  /** As in logs, metrics and /status: `capture <node>`, `apply <source>-><target>`. */
  readonly name: string;
  /** The node whose lock is the lease, and where the component's fenced resource lives. */
  readonly node: string;
}

export const captureComponent = (node: string): OwnedComponent => ({ name: `capture ${node}`, node });
export const applyComponent = (source: string, target: string): OwnedComponent => ({
  name: `apply ${source}->${target}`,
  node: target,
});

/** Every component of a config: a capture per node not captured by Debezium, an applier per direction. */
export function ownedComponents(config: Config): OwnedComponent[] {
  return [
    ...config.nodes.filter((n) => n.debezium === undefined).map((n) => captureComponent(n.name)),
    ...directions(config).map((d) => applyComponent(d.source.name, d.target.name)),
  ];
}

/** The lock's second key: a 31-bit FNV-1a hash of the component's name (stable across versions). */
export function leaseKey(component: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(component, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}

/**
 * application_name of a lease session (63 bytes at most: instance names are limited to 32). A standby
 * names the component's lease key and, with ` p`, that it prefers the component's node: an owner that
 * does not prefer it hands the component over to such a standby.
 */
export const standbyAppName = (instance: string, component: string, preferred: boolean): string =>
  `pgbisync standby ${instance} ${leaseKey(component)}${preferred ? ' p' : ''}`;
/** A LIKE pattern of the standbys that prefer the component's node. */
export const preferringStandbyPattern = (component: string): string =>
  `pgbisync standby % ${leaseKey(component)} p`;
export const ownerAppName = (instance: string, since: Date): string =>
  `pgbisync owner ${instance} ${Math.floor(since.getTime() / 1000)}`;

export interface Owner {
  readonly instance: string;
  readonly since: string;
  /** The owner's lease session on the node. */
  readonly pid: number;
}

/** Reads an owner's application_name; undefined for anything else. */
export function parseOwnerAppName(name: string): Omit<Owner, 'pid'> | undefined {
  const m = /^pgbisync owner (\S+) (\d+)$/.exec(name);
  if (m === null) return undefined;
  return { instance: m[1] ?? '', since: new Date(Number(m[2]) * 1000).toISOString() };
}

/** The SQL that finds a lease's holder: the granted two-key advisory lock and its session. */
export const LEASE_HOLDER_SQL = `SELECT a.pid, a.application_name
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
  WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`;

/** The component's owner, read on its node; undefined when no instance owns it. */
export async function readOwner(db: Pick<pg.Client, 'query'>, component: string): Promise<Owner | undefined> {
  const r = await db.query<{ pid: number; application_name: string }>(LEASE_HOLDER_SQL, [
    LEASE_CLASS_ID,
    leaseKey(component),
  ]);
  const row = r.rows[0];
  if (row === undefined) return undefined;
  const parsed = parseOwnerAppName(row.application_name);
  return { instance: parsed?.instance ?? row.application_name, since: parsed?.since ?? '', pid: row.pid };
}
