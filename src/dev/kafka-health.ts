/**
 * Proves a broker works end to end: metadata answers, a topic can be created, produced to and consumed
 * from. Used by `dev up` before it returns, so callers never race a half-started broker.
 */
import { randomUUID } from 'node:crypto';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { sleep } from './process-tools.ts';

export async function checkKafka(bootstrap: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      await roundTrip(bootstrap);
      return;
    } catch (error) {
      lastError = error;
      await sleep(500);
    }
  }
  throw new FatalError(`Kafka at ${bootstrap} did not pass the health check (create, produce, consume)`, {
    code: ErrorCode.KAFKA,
    cause: lastError,
  });
}

async function roundTrip(bootstrap: string): Promise<void> {
  const topic = `__pgbisync_health_${randomUUID().slice(0, 8)}`;
  const common = { clientId: 'pgbisync-dev-health', bootstrapBrokers: [bootstrap], connectTimeout: 3_000 };
  const admin = new Admin(common);
  const producer = new Producer({ ...common, serializers: stringSerializers });
  const consumer = new Consumer({ ...common, groupId: topic, deserializers: stringDeserializers });
  try {
    await admin.metadata({ topics: [] });
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
    await producer.send({ messages: [{ topic, key: 'k', value: 'ping' }] });
    const stream = await consumer.consume({
      topics: [topic],
      mode: 'earliest',
      autocommit: false,
      maxWaitTime: 500,
    });
    try {
      for await (const message of stream) {
        if (message.value !== 'ping') throw new Error(`health topic returned ${String(message.value)}`);
        break;
      }
    } finally {
      await stream.close();
    }
    await admin.deleteTopics({ topics: [topic] });
  } finally {
    await Promise.allSettled([consumer.close(true), producer.close(), admin.close()]);
  }
}
