import type { Config } from '../config/schema.ts';
import type { KafkaConnectionOptions } from './connection.ts';

/** Kafka connection settings from the config; `role` tags the client id (visible in broker logs). */
export function kafkaOptions(config: Config, role: string): KafkaConnectionOptions {
  const { sasl, tls } = config.kafka;
  return {
    brokers: config.kafka.brokers,
    clientId: `${config.kafka.clientId}-${role}`,
    ...(sasl === undefined ? {} : { sasl }),
    ...(tls === undefined ? {} : { tls: tls as NonNullable<KafkaConnectionOptions['tls']> }),
  };
}
