/**
 * Where tests find the real services: scripts/test.sh starts a dev stack and exports these variables.
 * Tests that need a service call these accessors; a missing variable is a clear setup error (tests are
 * run through `npm test`, which sets them), never a silent skip.
 */
import type { StackStatus } from '../dev/stack.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value.length === 0) {
    throw new Error(
      `${name} is not set: run service tests through 'npm test' (scripts/test.sh starts the stack)`,
    );
  }
  return value;
}

export const testEnv = {
  db1Url: (): string => required('PGBISYNC_TEST_DB1_URL'),
  db2Url: (): string => required('PGBISYNC_TEST_DB2_URL'),
  kafkaBrokers: (): string[] => required('PGBISYNC_TEST_KAFKA_BROKERS').split(','),
  pgMajor: (): number => Number(process.env.PGBISYNC_TEST_PG_MAJOR ?? '0'),
  /** Kafka Connect's REST API (stacks started with `dev up --connect`; `*.connect.test.ts` only). */
  connectUrl: (): string => required('PGBISYNC_TEST_CONNECT_URL'),
  /** The stack's TLS and SCRAM side (`dev up --secure`; `dev status --json`'s `secure`). */
  secure: (): NonNullable<StackStatus['secure']> =>
    JSON.parse(required('PGBISYNC_TEST_SECURE')) as NonNullable<StackStatus['secure']>,
};
