/**
 * Part of `pgbisync resync <node>` (./resync.ts): a target whose stored position in the node's topics
 * lies before the first record Kafka still keeps (retention deleted records it had not applied: its
 * applier is blocked with PGB3002) is moved to that first record. The re-copy the resync asked for
 * carries every row and remembered delete of the node, so what the deleted records carried reaches the
 * target again (except a TRUNCATE: it leaves no tombstones; `pgbisync verify` finds it).
 *
 * Only a position behind the retained range moves (a compare-and-set on the stored offset): an applier
 * that reads its topic normally is never touched, and a blocked one cannot be writing the row.
 */
import type { NodeConfig } from '../config/schema.ts';
import type { KafkaAdmin } from '../kafka/admin.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { withNode } from './sync-plan.ts';

/** One moved position, for the resync's output. */
export interface MovedPosition {
  readonly target: string;
  readonly topic: string;
  readonly partition: number;
  readonly from: bigint;
  readonly to: bigint;
}

export async function skipDeletedRecords(
  source: string,
  targets: readonly NodeConfig[],
  topics: readonly string[],
  admin: Pick<KafkaAdmin, 'startOffsets'>,
): Promise<MovedPosition[]> {
  return await skipTo(source, targets, topics, (topic) => admin.startOffsets(topic));
}

/**
 * `resync <node> --new-slot`, once the old slot is dropped and before the copy is asked for: every
 * target's position in the node's topics moves to their end. What the old slot sent and a target had
 * not applied is superseded by the copy from the new slot (every row and remembered delete of the node,
 * each with its own commit time); and it may be what stopped the target: transactions of a node whose
 * WAL went back (a disk snapshot restored, PGB4005), which no applier may take for re-sent ones.
 */
export async function skipSupersededRecords(
  source: string,
  targets: readonly NodeConfig[],
  topics: readonly string[],
  admin: Pick<KafkaAdmin, 'endOffsets'>,
): Promise<MovedPosition[]> {
  return await skipTo(source, targets, topics, (topic) => admin.endOffsets(topic));
}

async function skipTo(
  source: string,
  targets: readonly NodeConfig[],
  topics: readonly string[],
  offsets: (topic: string) => Promise<Map<number, bigint>>,
): Promise<MovedPosition[]> {
  const firsts = new Map<string, Map<number, bigint>>();
  for (const topic of topics) firsts.set(topic, await offsets(topic));
  const moved: MovedPosition[] = [];
  for (const target of targets) {
    await withNode(target, 'resync', async (db) => {
      for (const [topic, partitions] of firsts) {
        for (const [partition, first] of partitions) {
          for (const from of await moveUp(db, source, topic, partition, first)) {
            moved.push({ target: target.name, topic, partition, from, to: first });
          }
        }
      }
    });
  }
  return moved;
}

/** Moves the stored positions of `source` in topic[partition] below `first` up to it; returns their old offsets. */
async function moveUp(
  db: Queryable,
  source: string,
  topic: string,
  partition: number,
  first: bigint,
): Promise<bigint[]> {
  const tables = await db.query<{ progress: boolean; positions: boolean }>(
    `SELECT to_regclass('pgbisync.apply_progress') IS NOT NULL AS progress,
            to_regclass('pgbisync.apply_positions') IS NOT NULL AS positions`,
  );
  const exists = tables.rows[0];
  const out: bigint[] = [];
  for (const table of ['apply_progress', 'apply_positions'] as const) {
    if (!(table === 'apply_progress' ? exists?.progress : exists?.positions)) continue;
    // The old value is read in the same statement (a CTE sees the row before the update).
    const r = await db.query<{ was: string }>(
      `WITH old AS (SELECT next_offset FROM pgbisync.${table}
                     WHERE source_node = $1 AND topic = $2 AND kafka_partition = $3 AND next_offset < $4::bigint
                     FOR UPDATE)
       UPDATE pgbisync.${table} p SET next_offset = $4::bigint FROM old
        WHERE p.source_node = $1 AND p.topic = $2 AND p.kafka_partition = $3 AND p.next_offset = old.next_offset
       RETURNING old.next_offset::text AS was`,
      [source, topic, partition, String(first)],
    );
    out.push(...r.rows.map((row) => BigInt(row.was)));
  }
  if (exists?.progress === true && first > 0n) {
    // A target that never applied anything of the node reads its topic from offset 0 (see the applier).
    const r = await db.query(
      `INSERT INTO pgbisync.apply_progress (source_node, topic, kafka_partition, next_offset, commit_lsn, commit_time, applied_at)
       SELECT $1, $2, $3, $4::bigint, '0/0', now(), now()
        WHERE NOT EXISTS (SELECT 1 FROM pgbisync.apply_progress WHERE source_node = $1)
       ON CONFLICT (source_node) DO NOTHING`,
      [source, topic, partition, String(first)],
    );
    if (r.rowCount === 1) out.push(0n);
  }
  return out;
}

/** Whether a re-copy of `node` was asked for and its capture has not finished it. */
export async function pendingRequest(db: Queryable, node: string): Promise<boolean> {
  const table = await db.query<{ e: boolean }>(
    "SELECT to_regclass('pgbisync.capture_state') IS NOT NULL AS e",
  );
  if (table.rows[0]?.e !== true) return false; // request() names the missing schema
  const r = await db.query(
    `SELECT 1 FROM pgbisync.capture_state s WHERE s.node = $1 AND to_jsonb(s) ->> 'resync_requested_at' IS NOT NULL`,
    [node],
  );
  return r.rowCount === 1;
}
