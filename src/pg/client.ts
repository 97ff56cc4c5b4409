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
import {
  formatHost,
  hostUrl,
  isMultiHost,
  type NodeUrl,
  type PgHost,
  parseNodeUrl,
  type TargetSessionAttrs,
} from './node-url.ts';

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

/**
 * A client for `config`. A `connectionString` with several hosts or a target_session_attrs
 * (./node-url.ts) gives a client whose connect() picks the host, as libpq does.
 */
export function newPgClient(config: pg.ClientConfig, onLost?: (error: Error) => void): pg.Client {
  const settings: pg.ClientConfig = {
    keepAlive: true,
    keepAliveInitialDelayMillis: CLIENT_KEEPALIVE_DELAY_MS,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...config,
    // A caller's own startup options (e.g. the lease's idle_session_timeout) come after ours.
    options: [serverOptions(SERVER_TCP_SETTINGS), config.options].filter((o) => o !== undefined).join(' '),
  };
  const url = config.connectionString;
  const target = url === undefined ? undefined : hostChoice(url);
  const client =
    url === undefined || target === undefined
      ? new pg.Client(settings)
      : new HostChoosingClient(settings, url, target);
  client.on('error', (error: Error) => onLost?.(error));
  return client;
}

/** What a URL asks of the host choice; undefined when there is none to make (one host, any session). */
function hostChoice(url: string): NodeUrl | undefined {
  if (!isMultiHost(url) && !url.includes('target_session_attrs=')) return undefined;
  const target = parseNodeUrl(url);
  return target.hosts.length === 1 && target.targetSessionAttrs === 'any' ? undefined : target;
}

/**
 * No host of a node's URL took a session of the kind target_session_attrs asks for. `code` is the one
 * code every host failed with, if they all failed alike (an authentication failure stays one for
 * whoever classifies it by SQLSTATE).
 */
export class NoMatchingHostError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'NoMatchingHostError';
    this.code = code;
  }
}

/**
 * Connects to the first host of the URL that answers and gives the kind of session target_session_attrs
 * asks for (libpq's rule), trying the hosts in order. A pg.Client connects once: the hosts before the
 * last are tried with a probe client each, and this client then connects to the first that matched (or
 * to the last host) and checks its session again (the server may have changed in between).
 */
class HostChoosingClient extends pg.Client {
  readonly #settings: pg.ClientConfig;
  readonly #url: string;
  readonly #target: NodeUrl;

  constructor(settings: pg.ClientConfig, url: string, target: NodeUrl) {
    super({ ...settings, connectionString: hostUrl(url, target.hosts[0]!) });
    this.#settings = settings;
    this.#url = url;
    this.#target = target;
  }

  override connect(): Promise<pg.Client>;
  override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void;
  override connect(
    callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void),
  ): Promise<pg.Client> | undefined {
    const connected = this.#connectToMatching();
    if (callback === undefined) return connected;
    const cb = callback as (err: Error | null, c?: pg.Client) => void;
    connected.then(
      (c) => cb(null, c),
      (error: Error) => cb(error),
    );
    return undefined;
  }

  async #connectToMatching(): Promise<pg.Client> {
    const { hosts, targetSessionAttrs: attrs } = this.#target;
    const tried: string[] = [];
    const errors: unknown[] = [];
    let chosen = hosts[hosts.length - 1]!;
    for (const host of hosts.slice(0, -1)) {
      const probe = new pg.Client({ ...this.#settings, connectionString: hostUrl(this.#url, host) });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        const mismatch = await sessionMismatch(probe, attrs);
        if (mismatch === undefined) {
          chosen = host;
          break;
        }
        tried.push(`${formatHost(host)} (${mismatch})`);
      } catch (error) {
        tried.push(`${formatHost(host)} (${messageOf(error)})`);
        errors.push(error);
      } finally {
        await probe.end().catch(() => undefined);
      }
    }
    const { host, port } = hostAndPort(chosen);
    this.host = host;
    this.port = port;
    const params = (this as unknown as { connectionParameters: { host: string; port: number } })
      .connectionParameters;
    params.host = host;
    params.port = port;
    try {
      await super.connect();
    } catch (error) {
      if (hosts.length === 1) throw error;
      tried.push(`${formatHost(chosen)} (${messageOf(error)})`);
      errors.push(error);
      throw this.#noneMatches(tried, errors);
    }
    const mismatch = await sessionMismatch(this, attrs).catch((error: unknown) => messageOf(error));
    if (mismatch !== undefined) {
      await this.end().catch(() => undefined);
      tried.push(`${formatHost(chosen)} (${mismatch})`);
      throw this.#noneMatches(tried, []);
    }
    return this;
  }

  #noneMatches(tried: readonly string[], errors: readonly unknown[]): NoMatchingHostError {
    const attrs = this.#target.targetSessionAttrs;
    const codes = new Set(errors.map((e) => (e as { code?: unknown }).code));
    const [code] = codes;
    const commonCode =
      errors.length === tried.length && codes.size === 1 && typeof code === 'string' ? code : undefined;
    return new NoMatchingHostError(
      `${attrs === 'any' ? 'no host of the node url answered' : `no host of the node url gives a target_session_attrs=${attrs} session`}; tried ${tried.join(', ')}`,
      commonCode,
      errors[errors.length - 1],
    );
  }
}

function hostAndPort(h: PgHost): { host: string; port: number } {
  return { host: h.host.replace(/^\[(.*)\]$/, '$1'), port: h.port === '' ? 5432 : Number(h.port) };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Why the session on `client` is not what `attrs` asks for, or undefined when it is. The queries work
 * on a replication connection too (SHOW is a replication command; a database walsender runs SELECT).
 */
async function sessionMismatch(client: pg.Client, attrs: TargetSessionAttrs): Promise<string | undefined> {
  if (attrs === 'any') return undefined;
  if (attrs === 'read-write' || attrs === 'read-only') {
    const r = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
    const readOnly = r.rows[0]?.transaction_read_only === 'on';
    if (readOnly === (attrs === 'read-only')) return undefined;
    return readOnly ? 'read-only: transaction_read_only = on' : 'read-write: transaction_read_only = off';
  }
  const r = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
  const standby = r.rows[0]?.standby === true;
  if (standby === (attrs === 'standby')) return undefined;
  return standby ? 'a standby: pg_is_in_recovery()' : 'not a standby';
}
