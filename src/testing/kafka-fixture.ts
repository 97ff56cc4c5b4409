/**
 * Fixtures of the Kafka client tests (src/kafka/*.kafka.test.ts): topics a test owns, deleted when it
 * ends (also when it fails), a consumer from explicit offsets, and numbered records with their check.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KafkaAdmin } from '../kafka/admin.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import type { InRecord, OutRecord, StartOffset, TopicSpec } from '../kafka/records.ts';
import { testEnv } from './test-env.ts';

export const kafkaConnection = () => ({ brokers: testEnv.kafkaBrokers(), clientId: 'pgbisync-test' });

/** Creates one topic per spec under a random name; disposing the context deletes them. */
export async function topicsContext(specs: readonly Omit<TopicSpec, 'name'>[]) {
  const admin = new KafkaAdmin(kafkaConnection());
  const suffix = randomBytes(6).toString('hex');
  const topics = specs.map((spec, i) => ({ ...spec, name: `pgbisync-test-client-${suffix}-${i}` }));
  await admin.createTopics(topics);
  return {
    admin,
    names: topics.map((t) => t.name),
    async [Symbol.asyncDispose]() {
      try {
        await admin.deleteTopics(topics.map((t) => t.name));
      } finally {
        await admin.close();
      }
    },
  };
}

export function oneTopic(configs: Record<string, string> = { 'cleanup.policy': 'delete' }) {
  return topicsContext([{ partitions: 1, replicationFactor: 1, configs }]);
}

export function consumerFor(topic: string, startOffsets: readonly StartOffset[], groupId?: string) {
  return new KafkaConsumer({
    ...kafkaConnection(),
    groupId: groupId ?? `pgbisync-test-${randomBytes(6).toString('hex')}`,
    topics: [topic],
    startOffsets,
    maxWaitMs: 200,
  });
}

/** Reads until `count` records arrived (then stops the consumer) or `timeoutMs` passed. */
export async function readRecords(
  consumer: KafkaConsumer,
  count: number,
  timeoutMs = 20_000,
): Promise<InRecord[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  const out: InRecord[] = [];
  for await (const batch of consumer.batches(signal)) {
    out.push(...batch);
    if (out.length >= count) break;
  }
  return out;
}

/** Records `from` .. `from + count - 1`: key `k<i>`, the number in the value's first four bytes. */
export function sequenceRecords(topic: string, from: number, count: number, valueBytes = 100): OutRecord[] {
  return Array.from({ length: count }, (_, j) => {
    const i = from + j;
    const value = Buffer.alloc(valueBytes, i % 251);
    value.writeUInt32BE(i, 0);
    return { topic, key: Buffer.from(`k${i}`), value };
  });
}

/** `records` are exactly the numbered records `from` .. `from + count - 1`, at offsets of the same number. */
export function assertSequence(records: readonly InRecord[], from: number, count: number): void {
  assert.equal(records.length, count);
  records.forEach((r, j) => {
    assert.equal(r.offset, BigInt(from + j), `offset at ${j}`);
    assert.equal(r.key?.toString(), `k${from + j}`, `key at ${j}`);
    assert.equal(r.value?.readUInt32BE(0), from + j, `value at ${j}`);
  });
}
