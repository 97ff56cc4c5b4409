/**
 * What `dev up --secure` needs to speak TLS and authenticate: a CA, a server certificate it signed
 * (valid for 127.0.0.1 and localhost, so clients can verify the host: `sslmode=verify-full`) with its
 * key, made once with openssl, and the passwords of the stack's SCRAM users. Kept in `<state>/secure/`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { run } from './process-tools.ts';

export interface TlsMaterial {
  /** The CA certificate (PEM): what clients trust (`sslrootcert`, `kafka.tls.ca`). */
  readonly caFile: string;
  /** The server certificate (PEM), signed by the CA, for 127.0.0.1 and localhost. */
  readonly certFile: string;
  /** Its private key (PKCS#8 PEM, not encrypted). */
  readonly keyFile: string;
}

export interface SecureCredentials {
  /** The PostgreSQL role the stack creates (LOGIN, a member of {@link TLS_GROUP}), and its password. */
  readonly pgUser: string;
  readonly pgPassword: string;
  /** The Kafka SCRAM-SHA-256 user of the SASL_SSL listener, and its password. */
  readonly kafkaUser: string;
  readonly kafkaPassword: string;
}

/** Members of this PostgreSQL group role must connect over TLS with a SCRAM password (pg_hba.conf). */
export const TLS_GROUP = 'pgbisync_tls';

async function openssl(args: readonly string[]): Promise<void> {
  await run('openssl', args, { timeoutMs: 60_000 }).catch((error: unknown) => {
    throw new FatalError(`openssl ${args[0]} failed`, {
      code: ErrorCode.TOOL_MISSING,
      hint: 'dev up --secure makes its certificates with openssl: install it (apt-get install openssl)',
      cause: error,
    });
  });
}

/**
 * A CA and a server certificate in `dir` (made once; `name` goes into the subjects). Exported for tests
 * that need a second, untrusted CA.
 */
export async function ensureTlsMaterial(dir: string, name = 'pgbisync dev'): Promise<TlsMaterial> {
  const m = tlsPaths(dir);
  if (existsSync(join(dir, '.complete'))) return m;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const caKey = join(dir, 'ca.key');
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', caKey]);
  await openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-sha256',
    '-days',
    '3650',
    '-subj',
    `/CN=${name} CA`,
    '-out',
    m.caFile,
  ]);
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', m.keyFile]);
  const csr = join(dir, 'server.csr');
  await openssl(['req', '-new', '-key', m.keyFile, '-subj', `/CN=${name} server`, '-out', csr]);
  const ext = join(dir, 'server.ext');
  writeFileSync(
    ext,
    'subjectAltName = IP:127.0.0.1, DNS:localhost\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n',
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    m.caFile,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-days',
    '3650',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    m.certFile,
  ]);
  writeFileSync(join(dir, '.complete'), '');
  return m;
}

/** Where {@link ensureTlsMaterial} keeps its files in `dir`. */
export function tlsPaths(dir: string): TlsMaterial {
  return { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key') };
}

/** The stack's SCRAM passwords: made once, random, kept beside the certificates. */
export function ensureCredentials(dir: string): SecureCredentials {
  const file = join(dir, 'credentials.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as SecureCredentials;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const credentials: SecureCredentials = {
    pgUser: 'pgbisync',
    pgPassword: randomBytes(18).toString('base64url'),
    kafkaUser: 'pgbisync',
    kafkaPassword: randomBytes(18).toString('base64url'),
  };
  writeFileSync(file, JSON.stringify(credentials, null, 2), { mode: 0o600 });
  return credentials;
}
