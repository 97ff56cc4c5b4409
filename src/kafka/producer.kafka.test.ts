/**
 * The producer against a real broker: records with keys, tombstones and headers read back field by field
 * and in order, requests cut below the broker's size limit, a failed send stopping every later one, and
 * an abandoned producer sending nothing more.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BlockedError, ErrorCode, RetryableError } from '../runtime/errors.ts';
import {
  assertSequence,
  consumerFor,
  kafkaConnection,
  oneTopic,
  readRecords,
  sequenceRecords,
} from '../testing/kafka-fixture.ts';
import { KafkaProducer } from './producer.ts';
import type { InRecord, OutRecord } from './records.ts';
import { LAST_HEADER, LAST_VALUE } from './wire-headers.ts';

describe('kafka producer on a real broker', () => {
  test('keys, tombstones, headers and timestamps come back as sent, in order', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const records: OutRecord[] = [
      {
        topic,
        key: Buffer.from('k1'),
        value: Buffer.from('{"v":1}'),
        headers: { [LAST_HEADER]: LAST_VALUE, ünï: 'çødé' },
      },
      { topic, key: Buffer.from('k2'), value: null },
      { topic, key: null, value: Buffer.from('no key') },
      { topic, key: Buffer.from('k4'), value: Buffer.alloc(0) },
      { topic, key: Buffer.from([0, 255, 1]), value: Buffer.from([0, 0, 7]) },
    ];
    const before = Date.now();
    const producer = new KafkaProducer(kafkaConnection());
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
    const producer = new KafkaProducer(kafkaConnection());
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
    const producer = new KafkaProducer(kafkaConnection());
    try {
      await producer.send(sequenceRecords(topic, 0, 10));
      const tooLarge = producer.send([{ topic, key: null, value: Buffer.alloc(200_000) }]);
      const later = producer.send(sequenceRecords(topic, 10, 10));
      // Blocked (its capture only, retried), naming the event's size and topic and the fix.
      await assert.rejects(
        tooLarge,
        (error: unknown) =>
          error instanceof BlockedError &&
          error.code === ErrorCode.KAFKA_RECORD_TOO_LARGE &&
          new RegExp(`an event of 200000 bytes \\(key none\\) on topic ${topic} as too large`).test(
            error.message,
          ) &&
          /max\.message\.bytes/.test(error.hint ?? ''),
      );
      await assert.rejects(later, BlockedError);
      await assert.rejects(producer.send(sequenceRecords(topic, 20, 1)), BlockedError);
      await assert.rejects(
        producer.send([{ topic, key: null, value: 'not a buffer' as unknown as Buffer }]),
        BlockedError,
      );
    } finally {
      await producer.close();
    }
    assert.deepEqual(await ctx.admin.endOffsets(topic), new Map([[0, 10n]]), 'nothing after the failed send');
  });

  test('abandoned: every send rejects at once, nothing queued behind the request in flight is sent', async () => {
    await using ctx = await oneTopic();
    const [topic] = ctx.names as [string];
    const producer = new KafkaProducer(kafkaConnection());
    const lost = new RetryableError('lost the lease', { code: ErrorCode.OWNERSHIP_LOST });
    try {
      // The first call goes out at once; the next two wait behind it, as a capture's sends do.
      const inFlight = producer.send(sequenceRecords(topic, 0, 10));
      const queued = [
        producer.send(sequenceRecords(topic, 10, 10)),
        producer.send(sequenceRecords(topic, 20, 10)),
      ];
      producer.abandon(lost);
      for (const send of [inFlight, ...queued])
        await assert.rejects(send, (error: unknown) => error === lost);
      await assert.rejects(producer.send(sequenceRecords(topic, 30, 1)), (error: unknown) => error === lost);
    } finally {
      await producer.close();
    }
    // The request in flight may have landed (or been cut by close); nothing queued behind it did.
    const end = (await ctx.admin.endOffsets(topic)).get(0);
    assert.ok(end === 0n || end === 10n, `end offset ${end}`);
  });
});
