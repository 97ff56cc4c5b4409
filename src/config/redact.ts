/**
 * The one redaction rule. A field is secret when its name says so (`isSecretName`: `password`,
 * `sslpassword`, `tls.key`, `token`, ...), wherever it sits: a config field, a URL's password, a URL query
 * parameter (`postgres://u@h/db?password=...`). Three views use it:
 * - `redactConfig`: the config with every secret masked (the start-up log line);
 * - `registerSecrets` + `redactText`: every secret value of the loaded config, masked in any text that is
 *   about to leave the process (each log line, a fatal error's lines, `status --json`, `/status`), plus
 *   URL passwords and `password=` pairs in text that no config names (a YAML error quoting the file);
 * - `secretValues`: the values themselves, for tests that grep outputs for them.
 * A new secret-bearing field needs nothing here as long as its name matches `SECRET_NAME`.
 */

import { firstHostUrl, withHostListOf } from '../pg/node-url.ts';

export const MASK = '***';

/** Field and query-parameter names whose values are secrets. */
const SECRET_NAME =
  /^(.*password.*|.*passphrase.*|.*secret.*|.*token.*|.*credentials?|(ssl|tls)?key|private.?key)$/i;

export function isSecretName(name: string): boolean {
  // A dotted name is a table (`conflicts.tables: { public.tokens: ... }`), not a field.
  return !name.includes('.') && SECRET_NAME.test(name);
}

/**
 * `url` with its password and every secret query parameter masked; not a URL: returned as it is. A URL
 * with several hosts (`postgres://u:pw@h1:5432,h2:5432/db`) is masked on its first-host form and gets
 * its host list back.
 */
export function redactUrl(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return url;
  const single = firstHostUrl(url);
  if (!URL.canParse(single)) return url;
  const parsed = new URL(single);
  if (parsed.password !== '') parsed.password = MASK;
  for (const name of [...parsed.searchParams.keys()]) {
    if (isSecretName(name)) parsed.searchParams.set(name, MASK);
  }
  return single === url ? parsed.toString() : withHostListOf(url, parsed.toString());
}

/** A deep copy of `value` with secret fields masked and URLs redacted (for logs and `status`). */
export function redactConfig(value: unknown): unknown {
  if (typeof value === 'string') return redactUrl(value);
  if (Array.isArray(value)) return value.map(redactConfig);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, field]) => [
      key,
      isSecretName(key) && field !== undefined && typeof field !== 'boolean' ? MASK : redactConfig(field),
    ]),
  );
}

/** Every secret value in `value` (config fields by name, URL passwords and secret query parameters). */
export function secretValues(value: unknown): string[] {
  const found: string[] = [];
  const walk = (v: unknown, secret: boolean): void => {
    if (typeof v === 'string') {
      if (secret) found.push(v);
      else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && URL.canParse(firstHostUrl(v))) {
        const url = new URL(firstHostUrl(v));
        if (url.password !== '') found.push(url.password, decode(url.password));
        for (const [name, param] of url.searchParams) if (isSecretName(name)) found.push(param);
      }
    } else if (typeof v === 'number' && secret) found.push(String(v));
    else if (Array.isArray(v)) for (const item of v) walk(item, secret);
    else if (v !== null && typeof v === 'object') {
      for (const [key, field] of Object.entries(v)) walk(field, secret || isSecretName(key));
    }
  };
  walk(value, false);
  return [...new Set(found.filter((s) => s.length > 0))];
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Values shorter than this are not masked by value in free text (a one-letter password would mask every
 * such letter of every line); where they sit in a URL or a `password=` pair they are still masked.
 */
const MIN_MASKED_LENGTH = 4;

const registered = new Set<string>();

/** Adds the secret values of `config` (see `secretValues`) to what `redactText` masks in this process. */
export function registerSecrets(config: unknown): void {
  for (const secret of secretValues(config)) {
    if (secret.length < MIN_MASKED_LENGTH) continue;
    registered.add(secret);
    // The same value as it appears inside a JSON string (a PEM key's newlines become \n) and in a URL.
    registered.add(JSON.stringify(secret).slice(1, -1));
    registered.add(encodeURIComponent(secret));
  }
}

/** URL userinfo passwords (`scheme://user:secret@`) and `name=value` / `name: value` secret pairs. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@"'`]*:)([^\s@"'`]+)@/gi;
const SECRET_PAIR =
  /\b((?:ssl)?password|passphrase|secret|token)(\\?["']?\s*[=:]\s*\\?["']?)([^\s&"'\\,;}]+)/gi;

/** `text` with every registered secret value and every URL password or secret pair masked. */
export function redactText(text: string): string {
  let out = text
    .replace(URL_PASSWORD, `$1${MASK}@`)
    .replace(SECRET_PAIR, (_m, name, sep, value) =>
      value === MASK ? `${name}${sep}${value}` : `${name}${sep}${MASK}`,
    );
  // Longest first, so that a value containing another is masked whole.
  for (const secret of [...registered].sort((a, b) => b.length - a.length)) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out;
}
