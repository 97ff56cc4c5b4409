/**
 * Where a direction stands in Kafka: the topics its applier reads, their end offsets, and how far its
 * target applied them. `status` reports the difference as the direction's Kafka lag; the stamp keeper
 * (../conflicts/stamp-keeper.ts) takes a lag of 0 as "everything its source sent is applied".
 */
import type { Config } from '../config/schema.ts';
import type { KafkaAdmin } from '../kafka/admin.ts';
import { eventTopics, serverName } from '../kafka/topics.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import type { Direction } from './sync-plan.ts';

export interface DirectionTopics {
  /** One stored position per topic (mode per-table, or a Debezium connector's topics). */
  readonly perTopic: boolean;
  readonly topics: readonly string[];
}

export function directionTopics(config: Config, d: Direction, tables: readonly string[]): DirectionTopics {
  const perTopic = config.mode === 'per-table' || d.source.debezium !== undefined;
  return {
    perTopic,
    topics: perTopic ? eventTopics(config, d.source.name, tables) : [serverName(config, d.source.name)],
  };
}

/** The sum of the end offsets of every partition of those `topics` that exist (`present`). */
export async function endOffsetSum(
  admin: KafkaAdmin,
  topics: readonly string[],
  present: ReadonlySet<string>,
): Promise<number> {
  let end = 0;
  for (const t of topics) {
    if (!present.has(t)) continue;
    for (const offset of (await admin.endOffsets(t)).values()) end += Number(offset);
  }
  return end;
}

/**
 * How much of `topics` the target `db` applied from `source`, comparable with {@link endOffsetSum}: the
 * sum of its per-topic positions, or its one next offset; 0 before it applied anything.
 */
export async function appliedOffsetSum(db: Queryable, source: string, t: DirectionTopics): Promise<number> {
  if (t.perTopic) {
    const has = await db.query("SELECT 1 WHERE to_regclass('pgbisync.apply_positions') IS NOT NULL");
    if (has.rows.length === 0) return 0;
    const r = await db.query<{ n: string }>(
      `SELECT coalesce(sum(next_offset), 0)::text AS n FROM pgbisync.apply_positions
        WHERE source_node = $1 AND topic = ANY($2::text[])`,
      [source, t.topics],
    );
    return Number(r.rows[0]?.n ?? 0);
  }
  const r = await db.query<{ n: string }>(
    'SELECT next_offset::text AS n FROM pgbisync.apply_progress WHERE source_node = $1',
    [source],
  );
  return Number(r.rows[0]?.n ?? 0);
}
