/**
 * What the three clients (./producer.ts, ./consumer.ts, ./admin.ts) share: connection settings as
 * @platformatic/kafka takes them, the header (de)serializers, and how a Kafka protocol error is found in
 * the library's errors.
 *
 * The library is @platformatic/kafka (pure TypeScript, maintained; chosen by measurement, see
 * bench/kafka-clients.ts and docs/kafka-client.md). Callers see only the ports of ./records.ts; each
 * client's module lists the library behaviours it works around.
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { type BaseOptions, findErrorBy, type SASLMechanismValue } from '@platformatic/kafka';

export interface KafkaConnectionOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly sasl?: {
    mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
    username: string;
    password: string;
  };
  readonly tls?: boolean | { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
}

const SASL_MECHANISMS: Record<NonNullable<KafkaConnectionOptions['sasl']>['mechanism'], SASLMechanismValue> =
  {
    plain: 'PLAIN',
    'scram-sha-256': 'SCRAM-SHA-256',
    'scram-sha-512': 'SCRAM-SHA-512',
  };

/** The library's options for a client of any kind. */
export function baseOptions(o: KafkaConnectionOptions): BaseOptions {
  const tls: TlsOptions | undefined =
    o.tls === undefined || o.tls === false ? undefined : o.tls === true ? {} : o.tls;
  return {
    clientId: o.clientId,
    bootstrapBrokers: [...o.brokers],
    connectTimeout: 10_000,
    retries: 5,
    ...(o.sasl === undefined
      ? {}
      : {
          sasl: {
            mechanism: SASL_MECHANISMS[o.sasl.mechanism],
            username: o.sasl.username,
            password: o.sasl.password,
          },
        }),
    ...(tls === undefined ? {} : { tls }),
  };
}

/** Header keys and values are strings in pgbisync, UTF-8 on the wire. */
export const utf8Serializer = (s?: string) => (s === undefined ? undefined : Buffer.from(s));
export const utf8Deserializer = (b?: Buffer) => b?.toString('utf8');

/** Whether the client's error (or one it aggregates) carries this Kafka protocol error name. */
export function hasApiError(error: unknown, apiId: string): boolean {
  return error instanceof Error && findErrorBy(error, 'apiId', apiId) !== null;
}
