/**
 * The topic admin against a real broker: topics with explicit settings, existing topics left alone, end
 * offsets of every partition, and topic deletion.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { kafkaConnection, oneTopic, sequenceRecords, topicsContext } from '../testing/kafka-fixture.ts';
import { testEnv } from '../testing/test-env.ts';
import { KafkaAdmin } from './admin.ts';
import { KafkaProducer } from './producer.ts';

describe('kafka admin on a real broker', () => {
  test('creates a topic with explicit settings and leaves an existing one alone', async () => {
    const configs = {
      'cleanup.policy': 'delete',
      'retention.ms': String(7 * 24 * 3600 * 1000),
      'min.insync.replicas': '1',
      'message.timestamp.type': 'CreateTime',
    };
    await using ctx = await oneTopic(configs);
    const [topic] = ctx.names as [string];
    assert.ok((await ctx.admin.listTopics()).includes(topic));
    assert.deepEqual(
      await ctx.admin.createTopics([{ name: topic, partitions: 1, replicationFactor: 1, configs }]),
      [],
    );
    const raw = new Admin({ clientId: 'pgbisync-test', bootstrapBrokers: testEnv.kafkaBrokers() });
    try {
      const [described] = await raw.describeConfigs({
        resources: [
          {
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: topic,
            configurationKeys: Object.keys(configs),
          },
        ],
      });
      const actual = Object.fromEntries(described!.configs.map((c) => [c.name, c.value]));
      assert.deepEqual(actual, configs);
    } finally {
      await raw.close();
    }
  });

  test('end offsets cover every partition; deleted topics are gone', async () => {
    const ctx = await topicsContext([{ partitions: 3, replicationFactor: 1, configs: {} }]);
    const [topic] = ctx.names as [string];
    try {
      const producer = new KafkaProducer(kafkaConnection());
      try {
        await producer.send([
          ...sequenceRecords(topic, 0, 3).map((r) => ({ ...r, partition: 0 })),
          ...sequenceRecords(topic, 3, 5).map((r) => ({ ...r, partition: 2 })),
        ]);
      } finally {
        await producer.close();
      }
      assert.deepEqual(
        await ctx.admin.endOffsets(topic),
        new Map([
          [0, 3n],
          [1, 0n],
          [2, 5n],
        ]),
      );
    } finally {
      await ctx[Symbol.asyncDispose]();
    }
    const admin = new KafkaAdmin(kafkaConnection());
    try {
      assert.ok(!(await admin.listTopics()).includes(topic));
    } finally {
      await admin.close();
    }
  });
});
