/** The in-memory Kafka keeps the ports' contracts (src/kafka/records.ts), or tests built on it would lie. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InRecord, OutRecord } from '../kafka/records.ts';
import { FatalError, RetryableError } from '../runtime/errors.ts';
import { FaultyProducer, MemoryKafka } from './memory-kafka.ts';

const record = (topic: string, n: number): OutRecord => ({
  topic,
  key: Buffer.from(`k${n}`),
  value: Buffer.from(`v${n}`),
});
const keys = (records: readonly InRecord[]) => records.map((r) => r.key?.toString());

describe('in-memory kafka', () => {
  test('sends resolve in call order, after their records are written in call order', async () => {
    const kafka = new MemoryKafka();
    kafka.createTopic('t');
    const producer = kafka.producer();
    const order: number[] = [];
    const calls = [1, 2, 3].map((n) => producer.send([record('t', n)]).then(() => order.push(n)));
    assert.deepEqual(order, [], 'not acknowledged within the call');
    await Promise.all(calls);
    assert.deepEqual(order, [1, 2, 3]);
    assert.deepEqual(keys(kafka.records('t')), ['k1', 'k2', 'k3']);
    assert.deepEqual(await kafka.admin().endOffsets('t'), new Map([[0, 3n]]));
  });

  test('after a failed send every later send of that producer fails, and writes nothing', async () => {
    const kafka = new MemoryKafka();
    kafka.createTopic('t');
    const producer = kafka.producer();
    await assert.rejects(producer.send([record('missing', 1)]), RetryableError);
    await assert.rejects(producer.send([record('t', 2)]), RetryableError);
    const faulty = new FaultyProducer(kafka.producer(), { fail: { call: 1 } });
    await assert.rejects(faulty.send([record('t', 3)]), RetryableError);
    await assert.rejects(faulty.send([record('t', 4)]), RetryableError);
    assert.deepEqual(kafka.records('t'), []);
  });

  test('a consumer reads from its start offsets, each record once, waits for more, and stops on abort', async () => {
    const kafka = new MemoryKafka();
    kafka.createTopic('t', 2);
    const producer = kafka.producer();
    await producer.send([0, 1, 2, 3].map((n) => ({ ...record('t', n), partition: n % 2 })));
    const consumer = kafka.consumer({
      topics: ['t'],
      startOffsets: [{ topic: 't', partition: 1, offset: 1n }],
    });
    const controller = new AbortController();
    const read: InRecord[] = [];
    for await (const batch of consumer.batches(controller.signal)) {
      read.push(...batch);
      if (read.length === 3) void producer.send([{ ...record('t', 4), partition: 1 }]);
      if (read.length === 4) controller.abort();
    }
    assert.deepEqual(keys(read), ['k0', 'k2', 'k3', 'k4']);
    assert.deepEqual(
      read.map((r) => [r.partition, r.offset]),
      [
        [0, 0n],
        [0, 1n],
        [1, 1n],
        [1, 2n],
      ],
    );
  });

  test('a start offset beyond the end of a partition is refused, as a broker does', async () => {
    const kafka = new MemoryKafka();
    kafka.createTopic('t');
    await kafka.producer().send([record('t', 0)]);
    const at = (offset: bigint) =>
      kafka.consumer({ topics: ['t'], startOffsets: [{ topic: 't', partition: 0, offset }] });
    const first = async (offset: bigint) => {
      for await (const batch of at(offset).batches(AbortSignal.timeout(50))) return batch;
      return [];
    };
    assert.deepEqual(await first(1n), [], 'the end itself is a valid start: nothing to read yet');
    await assert.rejects(first(2n), FatalError);
  });
});
