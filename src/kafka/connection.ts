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

/**
 * A request the broker answers with a retriable error is tried again after 100 ms, then twice as long
 * each time up to 2 s: six retries over 5.1 s, the window the library's fixed 1 s delay and five
 * retries gave. The first retries come soon because most such errors last milliseconds: a new
 * cluster's first producer id (the broker asks its controller for a block of ids and answers the first
 * InitProducerId with a retriable error), a partition's leader that just moved. With the fixed second,
 * every producer's first send on a new cluster waited a second (measured: the initial copy's first
 * acknowledgement 1.07 s after its first range was read, the next ones ~10 ms).
 */
const RETRIES = 6;
export function retryDelayMs(attempt: number): number {
  return Math.min(100 * 2 ** (attempt - 1), 2_000);
}

/** The library's options for a client of any kind. */
export function baseOptions(o: KafkaConnectionOptions): BaseOptions {
  const tls: TlsOptions | undefined =
    o.tls === undefined || o.tls === false ? undefined : o.tls === true ? {} : o.tls;
  return {
    clientId: o.clientId,
    bootstrapBrokers: [...o.brokers],
    connectTimeout: 10_000,
    retries: RETRIES,
    retryDelay: (_client, _operation, attempt) => retryDelayMs(attempt),
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
