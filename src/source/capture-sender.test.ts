/**
 * Capture's send path without a broker: pgoutput transactions through the TransactionAssembler and the
 * CaptureSender into in-memory Kafka, with acknowledgements held back or failing on purpose. The rule
 * under test: the slot's position never passes a transaction before it and every earlier one are
 * acknowledged.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { InRecord, RecordProducer } from '../kafka/records.ts';
import { commitLsnOf, endsTransaction, WIRE_HEADER } from '../kafka/wire-headers.ts';
import type { RelationMessage } from '../pg/pgoutput/messages.ts';
import type { ReplicationItem } from '../pg/replication/replication-connection.ts';
import { RetryableError } from '../runtime/errors.ts';
import { FaultyProducer, MemoryKafka } from '../testing/memory-kafka.ts';
import { CaptureSender } from './capture-sender.ts';
import type { ChangeEncoder } from './change-encoder.ts';
import { TransactionAssembler } from './transaction-assembler.ts';

const TOPIC = 'pgbisync.a';

/** Key: the row's id; value: the id and the change's source position, as JSON. */
const encoder: ChangeEncoder = {
  forRelation: () => ({
    change: (op, before, after, source) => {
      const row = after ?? before;
      const id = row?.[0]?.kind === 'text' ? row[0].text : '?';
      return {
        key: Buffer.from(id),
        value: Buffer.from(JSON.stringify({ op, id, txId: source.txId, lsn: String(source.lsn) })),
      };
    },
    tombstone: (before) => ({
      key: Buffer.from(before[0]?.kind === 'text' ? before[0].text : '?'),
      value: null,
    }),
    truncate: () => ({ key: null, value: Buffer.from('{"op":"t"}') }),
  }),
};

const RELATION: ReplicationItem = {
  kind: 'data',
  lsn: 0n,
  message: {
    tag: 'relation',
    relationId: 1,
    schema: 'public',
    table: 't',
    replicaIdentity: 'default',
    columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }],
  } satisfies RelationMessage,
};

/** The end LSN (the position the slot may move to) of the transaction committed at `commitLsn`. */
const end = (commitLsn: bigint) => commitLsn + 0x10n;

/** A transaction inserting rows `ids`, committed at `commitLsn`, as the replication stream sends it. */
function transaction(xid: number, commitLsn: bigint, ids: readonly number[]): ReplicationItem[] {
  return [
    { kind: 'data', lsn: 0n, message: { tag: 'begin', finalLsn: commitLsn, commitTimeUs: 1n, xid } },
    ...ids.map(
      (id, i): ReplicationItem => ({
        kind: 'data',
        lsn: commitLsn - 0x10n + BigInt(i),
        message: { tag: 'insert', relationId: 1, newTuple: [{ kind: 'text', text: String(id) }] },
      }),
    ),
    {
      kind: 'data',
      lsn: commitLsn,
      message: { tag: 'commit', flags: 0, commitLsn, endLsn: end(commitLsn), commitTimeUs: 1n },
    },
  ];
}

/** Capture's send path on `producer`; `feed` is one read of the replication connection (then a flush). */
function capturePath(producer: RecordProducer, maxUnackedBytes = 1 << 20) {
  const confirmed: bigint[] = [];
  const sender = new CaptureSender({
    producer,
    onConfirm: (lsn) => confirmed.push(lsn),
    maxBatchEvents: 1_000,
    maxUnackedBytes,
  });
  const assembler = new TransactionAssembler({ encoder, topicFor: () => TOPIC, partition: 0 }, sender);
  const feed = (...items: ReplicationItem[]) => {
    for (const item of items) assembler.handle(item);
    sender.flush();
  };
  return { sender, confirmed, feed };
}

/** Lets every acknowledgement that is due arrive. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await nextTurn();
}

const ids = (records: readonly InRecord[]) => records.map((r) => r.key?.toString());

function topicWith(): MemoryKafka {
  const kafka = new MemoryKafka();
  kafka.createTopic(TOPIC);
  return kafka;
}

describe('capture send path on in-memory kafka', () => {
  test('the position passes a transaction only once it and every earlier one are acknowledged', async () => {
    const kafka = topicWith();
    const producer = new FaultyProducer(kafka.producer(), { hold: [1] });
    const { confirmed, feed } = capturePath(producer);
    feed(RELATION, ...transaction(7, 0x100n, [1, 2]));
    feed(...transaction(8, 0x200n, [3]));
    feed(...transaction(9, 0x300n, [4, 5]));
    await settle();
    assert.equal(producer.calls, 3);
    assert.deepEqual(ids(kafka.records(TOPIC)), ['1', '2', '3', '4', '5'], 'written in commit order');
    assert.deepEqual(confirmed, [], 'transactions 8 and 9 are acknowledged, 7 is not: nothing confirmed');
    producer.release(1);
    await settle();
    assert.deepEqual(confirmed, [end(0x100n), end(0x200n), end(0x300n)], 'then each, in commit order');
  });

  test("each transaction's last record, and only it, carries the end marker, commit LSN and wire version", async () => {
    const kafka = topicWith();
    const { feed } = capturePath(kafka.producer());
    // One read of the stream holding two transactions: one producer call, two ends inside it.
    feed(RELATION, ...transaction(7, 0x100n, [1, 2]), ...transaction(8, 0x200n, [3]));
    await settle();
    const records = kafka.records(TOPIC);
    assert.deepEqual(
      records.map((r) => [r.key?.toString(), endsTransaction(r.headers), commitLsnOf(r.headers)]),
      [
        ['1', false, undefined],
        ['2', true, 0x100n],
        ['3', true, 0x200n],
      ],
    );
    assert.deepEqual(
      records.map((r) => r.headers.get(WIRE_HEADER)),
      [undefined, '1', '1'],
    );
  });

  test('a failed send: the position never passes the transaction before it; a restart sends the rest again', async () => {
    const kafka = topicWith();
    // The second call fails after its records were written (a broker can do that), the third is refused.
    const producer = new FaultyProducer(kafka.producer(), { fail: { call: 2, written: true } });
    const first = capturePath(producer);
    first.feed(RELATION, ...transaction(7, 0x100n, [1, 2]));
    await settle();
    first.feed(...transaction(8, 0x200n, [3]));
    first.feed(...transaction(9, 0x300n, [4, 5]));
    await settle();
    assert.deepEqual(first.confirmed, [end(0x100n)]);
    assert.ok(first.sender.failure instanceof RetryableError);
    assert.deepEqual(ids(kafka.records(TOPIC)), ['1', '2', '3'], 'nothing sent after the failed call');

    // The restarted capture reads the slot again from the confirmed position: transactions 8 and 9.
    const restarted = capturePath(kafka.producer());
    restarted.feed(RELATION, ...transaction(8, 0x200n, [3]), ...transaction(9, 0x300n, [4, 5]));
    await settle();
    assert.deepEqual(restarted.confirmed, [end(0x300n)]);
    // At-least-once: transaction 8 is there twice, with the same commit LSN (an applier skips it by it).
    assert.deepEqual(ids(kafka.records(TOPIC)), ['1', '2', '3', '3', '4', '5']);
    assert.deepEqual(
      kafka.records(TOPIC).flatMap((r) => commitLsnOf(r.headers) ?? []),
      [0x100n, 0x200n, 0x200n, 0x300n],
    );
  });

  test('a keepalive position is confirmed only behind what was sent before it', async () => {
    const kafka = topicWith();
    const producer = new FaultyProducer(kafka.producer(), { hold: [1] });
    const { confirmed, feed } = capturePath(producer);
    feed(RELATION, ...transaction(7, 0x100n, [1]), { kind: 'keepalive', walEnd: 0x900n });
    await settle();
    assert.deepEqual(confirmed, []);
    producer.release(1);
    await settle();
    assert.deepEqual(confirmed, [0x900n]);
    // With nothing in flight, a keepalive is confirmed at once.
    feed({ kind: 'keepalive', walEnd: 0xa00n });
    assert.deepEqual(confirmed, [0x900n, 0xa00n]);
  });

  test('above the unacknowledged bound, backpressure waits for acknowledgements; a failure ends it', async () => {
    const kafka = topicWith();
    const producer = new FaultyProducer(kafka.producer(), { hold: [1], fail: { call: 3 } });
    const { sender, feed } = capturePath(producer, 40);
    feed(RELATION, ...transaction(7, 0x100n, [1, 2]));
    assert.equal(sender.overBound, true, 'two records of about 40 bytes each are over a 40-byte bound');
    let waited = false;
    const waiting = sender.backpressure(AbortSignal.timeout(10_000)).then(() => {
      waited = true;
    });
    await settle();
    assert.equal(waited, false, 'still waiting for the held acknowledgement');
    producer.release(1);
    await waiting;
    assert.equal(sender.overBound, false);

    feed(...transaction(8, 0x200n, [3]));
    feed(...transaction(9, 0x300n, [4, 5, 6]));
    await assert.rejects(sender.backpressure(AbortSignal.timeout(10_000)), RetryableError);
  });
});
