/**
 * The source commit time of the first change a direction has still to apply: what the commit-timestamp
 * horizon warning (../conflicts/commit-ts-horizon.ts) needs to tell a real risk from a source that was
 * merely idle longer than its target's horizon is old. pgbisync's topic of a node has one partition in
 * commit order, so the record at the direction's next offset is its oldest pending change; its
 * `source.ts_us` (or `ts_ms`) is the commit time.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';

/** How long `status` waits for the record before it keeps the warning. */
const READ_TIMEOUT_MS = 5_000;

/**
 * The commit time (ms since the epoch) of the first change record at or after `offset` of `topic`'s
 * partition 0, or null when none could be read in time (the warning then stays: unknown is not safe).
 */
export async function firstPendingCommitMs(
  config: Config,
  topic: string,
  offset: bigint,
  timeoutMs = READ_TIMEOUT_MS,
): Promise<number | null> {
  const signal = AbortSignal.timeout(timeoutMs);
  const consumer = new KafkaConsumer({
    ...kafkaOptions(config, 'status'),
    groupId: `${config.kafka.clientId}-status-${randomUUID().slice(0, 8)}`,
    topics: [topic],
    startOffsets: [{ topic, partition: 0, offset }],
    maxWaitMs: 200,
  });
  try {
    for await (const records of consumer.batches(signal)) {
      for (const record of records) {
        const ms = record.value === null ? null : commitTimeMs(record.value);
        if (ms !== null) return ms;
      }
    }
    return null;
  } catch {
    return null;
  } finally {
    await consumer.close();
  }
}

/** `source.ts_us` (else `ts_ms`) of a change event, with or without its schema; null if it has none. */
export function commitTimeMs(value: Buffer): number | null {
  let event: unknown;
  try {
    event = JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
  const body = (event as { payload?: unknown } | null)?.payload ?? event;
  const source = (body as { source?: { ts_us?: unknown; ts_ms?: unknown } } | null)?.source;
  if (typeof source?.ts_us === 'number') return source.ts_us / 1000;
  if (typeof source?.ts_ms === 'number') return source.ts_ms;
  return null;
}
