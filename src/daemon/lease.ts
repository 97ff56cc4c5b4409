/**
 * The lease of one component (src/operate/ownership.ts): a session of its own on the component's node
 * that waits for the component's advisory lock, holds it while the component runs here, and proves
 * every HEARTBEAT_MS that this instance is alive.
 *
 * Bounds: the session runs with `idle_session_timeout = LEASE_TIMEOUT_MS`, so the server ends it — and
 * the lock with it — when this process stops sending heartbeats (frozen by SIGSTOP, a stalled host);
 * TCP keepalives and tcp_user_timeout (src/pg/client.ts) end it when the network path dies silently; a
 * killed process's sessions end at once. The owner gives the component up (aborts it) as soon as a
 * heartbeat fails or takes longer than HEARTBEAT_TIMEOUT_MS: it cannot know whether it still holds the
 * lock. A standby that gets the lock after another instance held it took the component over.
 */
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import {
  LEASE_CLASS_ID,
  leaseKey,
  type OwnedComponent,
  ownerAppName,
  preferringStandbyPattern,
  readOwner,
  standbyAppName,
} from '../operate/ownership.ts';
import { newPgClient, serverOptions } from '../pg/client.ts';
import { ErrorCode, FatalError, RetryableError } from '../runtime/errors.ts';
import { classifyPgError } from '../runtime/pg-errors.ts';
import { sleep } from '../runtime/sleep.ts';

/** The server ends a lease session silent this long; a takeover after a freeze waits this long. */
export const LEASE_TIMEOUT_MS = 8_000;
export const HEARTBEAT_MS = 2_000;
const HEARTBEAT_TIMEOUT_MS = 5_000;
/** How often a standby asks for the lock. */
const POLL_MS = 1_000;
/** A component on a node this instance does not prefer is taken only after it stood free this long. */
export const NOT_PREFERRED_GRACE_MS = 5_000;

export interface Instance {
  readonly name: string;
  readonly prefer: readonly string[];
}

/** The instance from the config, overridden by PGBISYNC_INSTANCE and PGBISYNC_PREFER (comma-separated). */
export function resolveInstance(config: Config, env: NodeJS.ProcessEnv = process.env): Instance {
  const name = env.PGBISYNC_INSTANCE || config.instance.name || `${hostname()}-${process.pid}`.slice(-32);
  if (!/^[A-Za-z0-9_.:-]{1,32}$/.test(name)) {
    throw new FatalError(`instance name ${JSON.stringify(name)} is not usable`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 'set instance.name (or PGBISYNC_INSTANCE) to at most 32 letters, digits or _.:-',
    });
  }
  const fromEnv = env.PGBISYNC_PREFER;
  const prefer = fromEnv ? fromEnv.split(',').map((n) => n.trim()) : config.instance.prefer;
  prefer.forEach((node, i) => {
    if (!config.nodes.some((n) => n.name === node)) {
      throw new FatalError(
        `${fromEnv ? 'PGBISYNC_PREFER' : `instance.prefer[${i}]`}: no node named ${JSON.stringify(node)}`,
        { code: ErrorCode.CONFIG_INVALID, hint: `name one of ${config.nodes.map((n) => n.name).join(', ')}` },
      );
    }
  });
  return { name, prefer };
}

export interface LeaseEvents {
  /** Waiting for the lock; `owner` holds it (undefined: nobody, or not yet known). */
  standby(owner: string | undefined): void;
  /** This instance holds the lock; `previous`: the instance that held it while this one waited. */
  acquired(since: Date, previous: string | undefined): void;
}

export class ComponentLease {
  readonly #component: OwnedComponent;
  readonly #url: string;
  readonly #instance: Instance;
  #client: pg.Client | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(component: OwnedComponent, url: string, instance: Instance) {
    this.#component = component;
    this.#url = url;
    this.#instance = instance;
  }

  /**
   * Waits until this instance holds the lease (or `signal` aborts: then resolves undefined). The returned
   * signal aborts, with a RetryableError as its reason, when the lease is lost.
   */
  async acquire(signal: AbortSignal, events: LeaseEvents): Promise<AbortSignal | undefined> {
    const lost = new AbortController();
    const fail = (error: unknown) => {
      if (lost.signal.aborted) return;
      lost.abort(
        new RetryableError(`lost the lease of ${this.#component.name} on ${this.#component.node}`, {
          code: ErrorCode.OWNERSHIP_LOST,
          hint: 'nothing: another instance takes the component over, and this one stands by',
          cause: error,
        }),
      );
    };
    const preferred =
      this.#instance.prefer.length === 0 || this.#instance.prefer.includes(this.#component.node);
    const client = newPgClient(
      {
        connectionString: this.#url,
        application_name: standbyAppName(this.#instance.name, this.#component.name, preferred),
        options: serverOptions({ idle_session_timeout: String(LEASE_TIMEOUT_MS) }),
      },
      fail,
    );
    client.on('end', () => fail(new Error('lease session ended')));
    this.#client = client;
    const key = [LEASE_CLASS_ID, leaseKey(this.#component.name)];
    try {
      await client.connect();
      let previous: string | undefined;
      let freeSince: number | undefined;
      while (!signal.aborted) {
        if (preferred || (freeSince !== undefined && Date.now() - freeSince >= NOT_PREFERRED_GRACE_MS)) {
          const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', key);
          if (r.rows[0]?.ok === true) break;
        }
        const owner = await readOwner(client, this.#component.name);
        if (owner === undefined) freeSince ??= Date.now();
        else {
          freeSince = undefined;
          previous = owner.instance;
        }
        events.standby(owner?.instance);
        await sleep(POLL_MS, signal);
      }
      if (signal.aborted) {
        await this.release();
        return undefined;
      }
      const since = new Date();
      await client.query('SELECT set_config($1, $2, false)', [
        'application_name',
        ownerAppName(this.#instance.name, since),
      ]);
      // The heartbeat of an owner that does not prefer the node also looks for a standby that does.
      const beat = preferred
        ? () => client.query('SELECT false AS waiting')
        : () =>
            client.query<{ waiting: boolean }>(
              `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name LIKE $1) AS waiting`,
              [preferringStandbyPattern(this.#component.name)],
            );
      // One beat at a time on the session: while one waits for its answer (a stalled network) the next
      // ones are skipped, not queued behind it (pg deprecates queueing; its timeout ends the lease).
      let beating = false;
      this.#heartbeat = setInterval(() => {
        if (beating) return;
        beating = true;
        const answer = beat();
        answer
          .finally(() => {
            beating = false;
          })
          .catch(() => undefined);
        answeredWithin(answer, HEARTBEAT_TIMEOUT_MS)
          .then((r) => {
            if (r.rows[0]?.waiting !== true || lost.signal.aborted) return;
            lost.abort(
              new RetryableError(
                `handing ${this.#component.name} over to an instance that prefers ${this.#component.node}`,
                {
                  code: ErrorCode.OWNERSHIP_HANDED_OVER,
                  hint: 'nothing: instance.prefer places it there',
                },
              ),
            );
          })
          .catch(fail);
      }, HEARTBEAT_MS);
      events.acquired(since, previous === this.#instance.name ? undefined : previous);
      return lost.signal;
    } catch (error) {
      await this.release();
      throw classifyPgError(error, `holding the lease of ${this.#component.name} on ${this.#component.node}`);
    }
  }

  /**
   * Ends a backend that holds what this component needs (55006: a slot "active for PID n", a replication
   * origin "already active for PID n") while this instance holds the lease: its owner is known gone
   * (the lock came free), so the backend is a leftover of it. Only a backend whose application_name is
   * pgbisync's is ended; true when one was.
   */
  async endLeftover(pid: number): Promise<boolean> {
    if (this.#client === undefined) return false;
    const r = await this.#client.query<{ ended: boolean }>(
      `SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity
        WHERE pid = $1 AND application_name LIKE 'pgbisync%' AND pid <> pg_backend_pid()`,
      [pid],
    );
    return r.rows[0]?.ended === true;
  }

  /** Gives the lease up: ending the session releases the lock. */
  async release(): Promise<void> {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    const client = this.#client;
    this.#client = undefined;
    client?.removeAllListeners('end');
    await client?.end().catch(() => undefined);
  }
}

/** `answer`, or a rejection once `ms` passed without one (the timer does not keep the process alive). */
function answeredWithin<T>(answer: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no heartbeat answer within ${ms} ms`)), ms);
    timer.unref();
    answer.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
