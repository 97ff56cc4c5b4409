/**
 * The topic admin port (./records.ts `TopicAdmin`) on @platformatic/kafka. The library behaviour it
 * works around is with the code: `createTopics` waits for partition leaders.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin, ListOffsetTimestamps } from '@platformatic/kafka';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import { baseOptions, type KafkaConnectionOptions } from './connection.ts';
import type { TopicAdmin, TopicSpec } from './records.ts';

const TOPIC_READY_TIMEOUT_MS = 30_000;

export class KafkaAdmin implements TopicAdmin {
  readonly #admin: Admin;

  constructor(options: KafkaConnectionOptions) {
    this.#admin = new Admin(baseOptions(options));
  }

  async listTopics(): Promise<string[]> {
    return this.#admin.listTopics();
  }

  /**
   * Creates the topics that do not exist yet (existing ones are left as they are) and returns once every
   * partition of them has a leader: right after CreateTopics a producer can still get "Unknown topic",
   * which the client does not retry.
   */
  async createTopics(specs: readonly TopicSpec[]): Promise<string[]> {
    const existing = new Set(await this.listTopics());
    const created: string[] = [];
    for (const spec of specs) {
      if (existing.has(spec.name)) continue;
      await this.#admin.createTopics({
        topics: [spec.name],
        partitions: spec.partitions,
        replicas: spec.replicationFactor,
        configs: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
      });
      created.push(spec.name);
    }
    if (created.length > 0) await this.#waitForLeaders(created);
    return created;
  }

  async #waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + TOPIC_READY_TIMEOUT_MS;
    for (;;) {
      try {
        const metadata = await this.#admin.metadata({ topics, forceUpdate: true });
        const ready = topics.every((name) => {
          const partitions = metadata.topics.get(name)?.partitions ?? [];
          return partitions.length > 0 && partitions.every((p) => p.leader >= 0);
        });
        if (ready) return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new RetryableError('created kafka topics did not become available', {
            code: ErrorCode.KAFKA,
            cause: error,
          });
        }
      }
      if (Date.now() > deadline) {
        throw new RetryableError('created kafka topics have partitions without a leader', {
          code: ErrorCode.KAFKA,
        });
      }
      await sleep(100);
    }
  }

  async deleteTopics(names: readonly string[]): Promise<void> {
    if (names.length > 0) await this.#admin.deleteTopics({ topics: [...names] });
  }

  /** Latest offset (next to be written) of every partition of the topic. */
  async endOffsets(topic: string): Promise<Map<number, bigint>> {
    return await this.#offsets(topic, ListOffsetTimestamps.LATEST);
  }

  /** First retained offset of every partition of the topic (older records were deleted). */
  async startOffsets(topic: string): Promise<Map<number, bigint>> {
    return await this.#offsets(topic, ListOffsetTimestamps.EARLIEST);
  }

  async #offsets(topic: string, timestamp: bigint): Promise<Map<number, bigint>> {
    const metadata = await this.#admin.metadata({ topics: [topic], forceUpdate: true });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({
      partitionIndex,
      timestamp,
    }));
    const listed = await this.#admin.listOffsets({ topics: [{ name: topic, partitions }] });
    const out = new Map<number, bigint>();
    for (const t of listed) for (const p of t.partitions) out.set(p.partitionIndex, p.offset);
    return out;
  }

  async close(): Promise<void> {
    await this.#admin.close();
  }
}
