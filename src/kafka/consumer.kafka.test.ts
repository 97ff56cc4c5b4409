/**
 * The consumer against a real broker: explicit start offsets (resume after close, out-of-range refused)
 * and a prompt stop on abort.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { Consumer } from '@platformatic/kafka';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import {
  assertSequence,
  consumerFor,
  kafkaConnection,
  oneTopic,
  readRecords,
  sequenceRecords,
} from '../testing/kafka-fixture.ts';
import { KafkaConsumer } from './consumer.ts';
import { KafkaProducer } from './producer.ts';
import type { InRecord } from './records.ts';

describe('kafka consumer on a real broker', () => {
  test('a consumer resumes from an explicit offset after close, without gap or duplicate', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const producer = new KafkaProducer({ ...kafkaConnection(), compression: 'lz4' });
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
    const producer = new KafkaProducer(kafkaConnection());
    try {
      await producer.send(sequenceRecords(topic, 0, 10));
    } finally {
      await producer.close();
    }
    const consumer = consumerFor(topic, [{ topic, partition: 0, offset: 500n }]);
    try {
      // Blocked (that reader's stream only, with the resync fix), never a whole-process failure.
      await assert.rejects(
        readRecords(consumer, 1, 10_000),
        (error: unknown) => error instanceof BlockedError && error.code === ErrorCode.KAFKA_EVENTS_GONE,
      );
    } finally {
      await consumer.close();
    }
  });

  test('the consumer stops promptly on abort, while waiting for records and before it started', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const consumer = new KafkaConsumer({
      ...kafkaConnection(),
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

  test('a read stopped while its consumer joins, the consumer then closed: the late stream does not crash the process', async () => {
    // Seen in a torture run (long seed 13): the read stopped while the consumer joined its group, the
    // consumer was closed, the join's answer then made the stream anyway; its start failed ("Client is
    // closed") and, with no listener, the 'error' event ended the process. The join is slowed down here
    // so that the answer comes after the close, as it did there.
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const join = Consumer.prototype.joinGroup;
    type JoinCallback = (error: unknown, id?: unknown) => void;
    type Join = (this: Consumer, options: unknown, callback?: JoinCallback) => unknown;
    // The join's answer is held until the test lets it through.
    const held = Promise.withResolvers<() => void>();
    (Consumer.prototype as unknown as { joinGroup: Join }).joinGroup = function (
      this: Consumer,
      options,
      callback,
    ) {
      if (callback === undefined) return (join as unknown as Join).call(this, options);
      return (join as unknown as Join).call(this, options, (error, id) =>
        held.resolve(() => callback(error, id)),
      );
    };
    try {
      const consumer = new KafkaConsumer({
        ...kafkaConnection(),
        groupId: `pgbisync-test-${randomBytes(6).toString('hex')}`,
        topics: [topic],
        startOffsets: [],
        maxWaitMs: 100,
      });
      const controller = new AbortController();
      const reading = (async () => {
        for await (const _ of consumer.batches(controller.signal)) assert.fail('no record was written');
      })();
      const answer = await held.promise;
      controller.abort();
      await reading;
      // The answer arrives while the consumer leaves its group.
      const closing = consumer.close();
      answer();
      await closing;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.deepEqual(uncaught.map(String), []);
    } finally {
      Consumer.prototype.joinGroup = join;
      process.off('uncaughtException', onUncaught);
    }
  });
});
