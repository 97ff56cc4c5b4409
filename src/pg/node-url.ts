/**
 * Node URLs with several hosts, as libpq takes them
 * (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-MULTIPLE-HOSTS):
 * `postgres://user:pw@h1:5432,h2:5433/db?target_session_attrs=read-write`. node-postgres (and WHATWG
 * `new URL`) take one host; this module splits such a URL into its hosts and rebuilds the one-host URL
 * of each, which everything else reads as before (user, password, database, query parameters).
 * `target_session_attrs` says which host a session may use (./client.ts checks it); node-postgres
 * ignores the parameter.
 */

export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby'] as const;
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

export interface PgHost {
  readonly host: string;
  /** As written (empty: the default port). */
  readonly port: string;
}

export interface NodeUrl {
  readonly hosts: readonly PgHost[];
  readonly targetSessionAttrs: TargetSessionAttrs;
}

interface UrlParts {
  /** `postgres://` plus the userinfo and its `@`, if any. */
  readonly head: string;
  readonly hostList: string;
  /** The path, query and fragment. */
  readonly tail: string;
}

function splitUrl(url: string): UrlParts | undefined {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (m === null) return undefined;
  const [, scheme = '', authority = '', tail = ''] = m;
  const at = authority.lastIndexOf('@');
  return {
    head: scheme + authority.slice(0, at + 1),
    hostList: authority.slice(at + 1),
    tail,
  };
}

/** `h`, `h:5432`, `[::1]:5432`; undefined when malformed. */
function parseHost(text: string): PgHost | undefined {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d*))?$/.exec(text);
  if (m === null) return undefined;
  const port = m[2] ?? '';
  if (port !== '' && (Number(port) < 1 || Number(port) > 65535)) return undefined;
  return { host: m[1] ?? '', port };
}

export function formatHost(h: PgHost): string {
  return h.port === '' ? h.host : `${h.host}:${h.port}`;
}

/** True when the URL lists more than one host (`h1:p1,h2:p2`). */
export function isMultiHost(url: string): boolean {
  return splitUrl(url)?.hostList.includes(',') ?? false;
}

/**
 * The hosts of `url` in order and its target_session_attrs (default `any`). Throws with what is wrong
 * (never quoting the URL: it may hold a password).
 */
export function parseNodeUrl(url: string): NodeUrl {
  const parts = splitUrl(url);
  if (parts === undefined) throw new Error('is not a URL');
  const hosts = parts.hostList.split(',').map((text, i) => {
    const host = parseHost(text);
    if (host === undefined) throw new Error(`host ${i + 1} of the host list is not host[:port]`);
    return host;
  });
  const query = /\?([^#]*)/.exec(parts.tail)?.[1] ?? '';
  const attrs = new URLSearchParams(query).get('target_session_attrs') ?? 'any';
  if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(attrs))
    throw new Error(`target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(', ')}`);
  return { hosts, targetSessionAttrs: attrs as TargetSessionAttrs };
}

/** `url` with `host` as its only host (everything else as written). */
export function hostUrl(url: string, host: PgHost): string {
  const parts = splitUrl(url);
  if (parts === undefined) return url;
  return `${parts.head}${formatHost(host)}${parts.tail}`;
}

/**
 * `url` reduced to its first host: what `new URL` can read, for the user, database and parameters. A
 * one-host URL comes back as it is.
 */
export function firstHostUrl(url: string): string {
  if (!isMultiHost(url)) return url;
  const parts = splitUrl(url);
  const first = parts?.hostList.split(',')[0];
  return parts === undefined || first === undefined ? url : `${parts.head}${first}${parts.tail}`;
}

/**
 * `rewritten` (a one-host form of `original`, changed by a `new URL` round trip: e.g. a password masked)
 * with the host list of `original` put back.
 */
export function withHostListOf(original: string, rewritten: string): string {
  const from = splitUrl(original);
  const to = splitUrl(rewritten);
  if (from === undefined || to === undefined) return rewritten;
  return `${to.head}${from.hostList}${to.tail}`;
}
