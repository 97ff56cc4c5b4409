/**
 * Doctor's reading of transport failures (docs/security.md): a server certificate the configured CA did
 * not sign, a password refused, a plaintext attempt where TLS is required. Each becomes one line naming
 * where (PostgreSQL's host:port or the brokers) and the config field to change.
 */
import { TLS_CERT_CODES } from '../runtime/pg-errors.ts';
export interface TransportProblem {
  readonly detail: string;
  readonly fix: string;
}

/** The innermost error of a chain (AggregateError's first, or the cause). */
export function innermost(error: unknown): unknown {
  let current: unknown = error;
  for (let depth = 0; depth < 10; depth++) {
    const e = current as { errors?: unknown[]; cause?: unknown } | undefined;
    const next = e?.errors?.[0] ?? e?.cause;
    if (next === undefined) break;
    current = next;
  }
  return current;
}

function codeAndMessage(error: unknown): { code: string; message: string } {
  const e = innermost(error) as { code?: unknown; message?: unknown };
  return {
    code: typeof e?.code === 'string' ? e.code : '',
    // Node's advice to trust the system's CAs is beside the point: the config names the CA.
    message: (typeof e?.message === 'string' ? e.message : String(e))
      .split('\n')[0]!
      .replace(/; if the root CA is installed locally.*$/, ''),
  };
}

/**
 * A PostgreSQL connection failure that is about TLS, or undefined. `where` is host:port, `user` the URL's
 * user, `field` the config field of the URL (`nodes[0].url`).
 */
export function pgTransportProblem(
  error: unknown,
  where: string,
  user: string,
  field: string,
): TransportProblem | undefined {
  const { code, message } = codeAndMessage(error);
  if (TLS_CERT_CODES.has(code)) {
    return {
      detail: `TLS: the certificate of PostgreSQL at ${where} is not trusted (${code}: ${message})`,
      fix: `set sslrootcert=<the CA file that signed the server's certificate> in ${field} (with sslmode=verify-full)`,
    };
  }
  if (/no encryption/.test(message)) {
    return {
      detail: `PostgreSQL at ${where} refuses ${user} without TLS (pg_hba.conf: hostssl only)`,
      fix: `add sslmode=verify-full&sslrootcert=<the server's CA file> to ${field}`,
    };
  }
  if (/does not support SSL/i.test(message)) {
    return {
      detail: `PostgreSQL at ${where} does not speak TLS, but ${field} asks for it`,
      fix: `turn TLS on at ${where} (ssl = on, ssl_cert_file, ssl_key_file) or drop sslmode from ${field}`,
    };
  }
  return undefined;
}

/** Why Kafka at `brokers` could not be reached, in operator terms, with the config field to change. */
export function kafkaTransportProblem(error: unknown, brokers: string): TransportProblem {
  const { code, message } = codeAndMessage(error);
  if (TLS_CERT_CODES.has(code)) {
    return {
      detail: `TLS: the certificate of Kafka at ${brokers} is not trusted (${code}: ${message})`,
      fix: "set kafka.tls.ca to the CA certificate (PEM) that signed the broker's certificate",
    };
  }
  if (/SASL authentication failed|authentication failed/i.test(message)) {
    return {
      detail: `Kafka at ${brokers} refused the SASL credentials (${message})`,
      fix: 'fix kafka.sasl (mechanism, username, password) for a user the broker knows',
    };
  }
  if (/requires TLS/i.test(message)) {
    return {
      detail: `Kafka at ${brokers} requires TLS and the config connects in plaintext (${message})`,
      fix: "set kafka.tls (ca: the broker's CA certificate) and kafka.sasl if the listener is SASL_SSL",
    };
  }
  return {
    detail: `cannot reach Kafka at ${brokers} (${message})`,
    fix: 'start Kafka or fix kafka.brokers (and kafka.sasl / kafka.tls) in the config',
  };
}
