/**
 * The Kafka ports against a real broker: topics with explicit settings, records with keys, tombstones and
 * headers read back field by field and in order, requests cut below the broker's size limit, a failed send
 * stopping every later one, explicit start offsets (resume after close, out-of-range refused), prompt
 * stop on abort, end offsets of every partition, and topic deletion.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { FatalError } from '../runtime/errors.ts';
import { testEnv } from '../testing/test-env.ts';
import {
  type ConsumerOptions,
  type InRecord,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  type OutRecord,
  type TopicSpec,
} from './client.ts';

const connection = () => ({ brokers: testEnv.kafkaBrokers(), clientId: 'pgbisync-test' });

/** Topics owned by one test, deleted when the test ends (also when it fails). */
async function topicsContext(specs: readonly Omit<TopicSpec, 'name'>[]) {
  const admin = new KafkaAdmin(connection());
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

function oneTopic(configs: Record<string, string> = { 'cleanup.policy': 'delete' }) {
  return topicsContext([{ partitions: 1, replicationFactor: 1, configs }]);
}

function consumerFor(topic: string, startOffsets: ConsumerOptions['startOffsets'], groupId?: string) {
  return new KafkaConsumer({
    ...connection(),
    groupId: groupId ?? `pgbisync-test-${randomBytes(6).toString('hex')}`,
    topics: [topic],
    startOffsets,
    maxWaitMs: 200,
  });
}

/** Reads until `count` records arrived (then stops the consumer) or `timeoutMs` passed. */
async function readRecords(consumer: KafkaConsumer, count: number, timeoutMs = 20_000): Promise<InRecord[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  const out: InRecord[] = [];
  for await (const batch of consumer.batches(signal)) {
    out.push(...batch);
    if (out.length >= count) break;
  }
  return out;
}

function sequenceRecords(topic: string, from: number, count: number, valueBytes = 100): OutRecord[] {
  return Array.from({ length: count }, (_, j) => {
    const i = from + j;
    const value = Buffer.alloc(valueBytes, i % 251);
    value.writeUInt32BE(i, 0);
    return { topic, key: Buffer.from(`k${i}`), value };
  });
}

function assertSequence(records: readonly InRecord[], from: number, count: number): void {
  assert.equal(records.length, count);
  records.forEach((r, j) => {
    assert.equal(r.offset, BigInt(from + j), `offset at ${j}`);
    assert.equal(r.key?.toString(), `k${from + j}`, `key at ${j}`);
    assert.equal(r.value?.readUInt32BE(0), from + j, `value at ${j}`);
  });
}

describe('kafka client on a real broker', () => {
  test('creates a topic with explicit settings; keys, tombstones, headers come back in order', async () => {
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

    const records: OutRecord[] = [
      {
        topic,
        key: Buffer.from('k1'),
        value: Buffer.from('{"v":1}'),
        headers: { 'pgbisync.last': '1', ünï: 'çødé' },
      },
      { topic, key: Buffer.from('k2'), value: null },
      { topic, key: null, value: Buffer.from('no key') },
      { topic, key: Buffer.from('k4'), value: Buffer.alloc(0) },
      { topic, key: Buffer.from([0, 255, 1]), value: Buffer.from([0, 0, 7]) },
    ];
    const before = Date.now();
    const producer = new KafkaProducer(connection());
    try {
      // Calls not awaited one by one, as capture makes them; an empty call in between.
      await Promise.all([
        producer.send(records.slice(0, 2)),
        producer.send([]),
        producer.send(records.slice(2)),
      ]);
    } finally {
      await producer.close();
    }
    assert.deepEqual(await ctx.admin.endOffsets(topic), new Map([[0, 5n]]));

    const consumer = consumerFor(topic, [{ topic, partition: 0, offset: 0n }]);
    let got: InRecord[];
    try {
      got = await readRecords(consumer, records.length);
    } finally {
      await consumer.close();
    }
    assert.equal(got.length, records.length);
    got.forEach((r, i) => {
      const sent = records[i]!;
      assert.equal(r.topic, topic);
      assert.equal(r.partition, 0);
      assert.equal(r.offset, BigInt(i));
      assert.deepEqual(r.key, sent.key, `key ${i}`);
      assert.deepEqual(r.value, sent.value, `value ${i}`);
      assert.deepEqual(r.headers, new Map(Object.entries(sent.headers ?? {})), `headers ${i}`);
      assert.ok(r.timestampMs >= before - 60_000 && r.timestampMs <= Date.now() + 60_000, `timestamp ${i}`);
    });
    assert.equal(got[1]!.value, null, 'a tombstone reads back as null, not as an empty buffer');
    assert.equal(got[2]!.key, null);
    assert.equal(got[3]!.value?.length, 0, 'an empty value stays empty, not null');
  });

  test('sends above the broker limit are cut into requests; pipelined calls land in call order', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    // No compression: the size limit applies to what is sent.
    const producer = new KafkaProducer(connection());
    const calls: Promise<void>[] = [];
    try {
      // One call of ~3 MB (one partition: a single request would be refused as too large) ...
      calls.push(producer.send(sequenceRecords(topic, 0, 6_000, 500)));
      // ... then many small calls made without waiting.
      for (let c = 0; c < 100; c++)
        calls.push(producer.send(sequenceRecords(topic, 6_000 + c * 50, 50, 500)));
      await Promise.all(calls);
    } finally {
      await producer.close();
    }
    assert.deepEqual(await ctx.admin.endOffsets(topic), new Map([[0, 11_000n]]));
    const consumer = consumerFor(topic, []);
    try {
      assertSequence(await readRecords(consumer, 11_000), 0, 11_000);
    } finally {
      await consumer.close();
    }
  });

  test('a record the broker refuses fails that send and every later one', async () => {
    await using ctx = await oneTopic({ 'max.message.bytes': '100000' });
    const [topic] = ctx.names as [string];
    const producer = new KafkaProducer(connection());
    try {
      await producer.send(sequenceRecords(topic, 0, 10));
      const tooLarge = producer.send([{ topic, key: null, value: Buffer.alloc(200_000) }]);
      const later = producer.send(sequenceRecords(topic, 10, 10));
      await assert.rejects(
        tooLarge,
        (error: unknown) => error instanceof FatalError && error.hint !== undefined,
      );
      await assert.rejects(later, FatalError);
      await assert.rejects(producer.send(sequenceRecords(topic, 20, 1)), FatalError);
      await assert.rejects(
        producer.send([{ topic, key: null, value: 'not a buffer' as unknown as Buffer }]),
        FatalError,
      );
    } finally {
      await producer.close();
    }
    assert.deepEqual(await ctx.admin.endOffsets(topic), new Map([[0, 10n]]), 'nothing after the failed send');
  });

  test('a consumer resumes from an explicit offset after close, without gap or duplicate', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const producer = new KafkaProducer({ ...connection(), compression: 'lz4' });
    try {
      await producer.send(sequenceRecords(topic, 0, 1_000));
      const groupId = `pgbisync-test-${randomBytes(6).toString('hex')}`;
      const first = consumerFor(topic, [{ topic, partition: 0, offset: 0n }], groupId);
      let read: InRecord[];
      try {
        read = (await readRecords(first, 400)).slice(0, 400);
      } finally {
        await first.close();
      }
      assertSequence(read, 0, 400);
      // Records written while no consumer runs are read too.
      await producer.send(sequenceRecords(topic, 1_000, 500));
      const startedAt = Date.now();
      const second = consumerFor(topic, [{ topic, partition: 0, offset: read.at(-1)!.offset + 1n }], groupId);
      try {
        assertSequence(await readRecords(second, 1_100), 400, 1_100);
      } finally {
        await second.close();
      }
      // Static membership: the same group rejoins at once, not after the old member's session timeout.
      assert.ok(Date.now() - startedAt < 10_000, `second consumer took ${Date.now() - startedAt} ms`);
    } finally {
      await producer.close();
    }
  });

  test('a start offset beyond the end of the partition is refused, not silently rewound', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const producer = new KafkaProducer(connection());
    try {
      await producer.send(sequenceRecords(topic, 0, 10));
    } finally {
      await producer.close();
    }
    const consumer = consumerFor(topic, [{ topic, partition: 0, offset: 500n }]);
    try {
      await assert.rejects(readRecords(consumer, 1, 10_000), FatalError);
    } finally {
      await consumer.close();
    }
  });

  test('the consumer stops promptly on abort, while waiting for records and before it started', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const consumer = new KafkaConsumer({
      ...connection(),
      groupId: `pgbisync-test-${randomBytes(6).toString('hex')}`,
      topics: [topic],
      startOffsets: [],
      maxWaitMs: 10_000,
    });
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 1_500);
      let abortedAt = 0;
      controller.signal.addEventListener('abort', () => {
        abortedAt = Date.now();
      });
      let batches = 0;
      for await (const _ of consumer.batches(controller.signal)) batches++;
      const lagMs = Date.now() - abortedAt;
      assert.equal(batches, 0);
      assert.ok(lagMs < 1_000, `the consumer stopped ${lagMs} ms after the abort`);

      const started = Date.now();
      for await (const _ of consumer.batches(AbortSignal.abort())) batches++;
      assert.equal(batches, 0);
      assert.ok(Date.now() - started < 1_000);
    } finally {
      await consumer.close();
    }
  });

  test('end offsets cover every partition; deleted topics are gone', async () => {
    const ctx = await topicsContext([{ partitions: 3, replicationFactor: 1, configs: {} }]);
    const [topic] = ctx.names as [string];
    try {
      const producer = new KafkaProducer(connection());
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
    const admin = new KafkaAdmin(connection());
    try {
      assert.ok(!(await admin.listTopics()).includes(topic));
    } finally {
      await admin.close();
    }
  });
});
