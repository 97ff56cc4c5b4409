/**
 * When each direction was last known to have applied everything its source committed before some time:
 * what lets the stamp keeper (./stamp-keeper.ts) and the tombstone pruner (./tombstone-pruner.ts) move on
 * past a source that writes nothing (its last applied commit time stays where its last write left it).
 *
 * A probe of a source is its WAL insert position and the time on its clock. Once the source's capture slot
 * confirmed that position, every transaction that committed on the source before the probe was taken is
 * in Kafka (a capture confirms only what Kafka acknowledged, or keepalive positions with nothing pending);
 * if the direction's topics are then applied to their end, the direction has applied all of them: it is
 * caught up to the probe's time. (A commit racing the probe may be stamped a little before it and written
 * after: the users of these times subtract a slack.) A probe not yet confirmed is kept; a confirmed one is
 * replaced by a new one. A source with a copy still to send (its initial snapshot, a `resync`, a table
 * added, an interrupted or paused table copy) is not caught up: a copy carries rows of any age. A source
 * captured by Debezium is not probed.
 */
import type { Config } from '../config/schema.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { objectNames } from '../pg/sql-names.ts';
import { appliedOffsetSum, directionTopics, endOffsetSum } from './direction-offsets.ts';
import { type Direction, directions, withNode } from './sync-plan.ts';

interface Probe {
  readonly lsn: string;
  readonly atMs: number;
}

const key = (d: Direction) => `${d.source.name}->${d.target.name}`;

export class CatchUpTracker {
  readonly #probes = new Map<string, Probe>();
  readonly #caughtUpMs = new Map<string, number>();

  /** The source time (ms) the direction was last seen caught up to, or undefined. */
  caughtUpMs(d: Direction): number | undefined {
    return this.#caughtUpMs.get(key(d));
  }

  /**
   * For each source whose capture slot confirmed its probe, each of its directions with nothing left in
   * Kafka is caught up to the probe's time; then a new probe (one not yet confirmed stays).
   */
  async probe(config: Config, tables: readonly string[]): Promise<void> {
    const all = directions(config);
    let admin: KafkaAdmin | undefined;
    try {
      for (const source of config.nodes.filter((n) => n.debezium === undefined)) {
        const from = all.filter((d) => d.source.name === source.name);
        if (from.length === 0) continue;
        const probe = this.#probes.get(source.name);
        const now = await withNode(source, 'stamps', async (db) => {
          const r = await db.query<{ passed: boolean | null; copied: boolean; lsn: string; ms: number }>(
            `SELECT (SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1) AS passed,
                    coalesce((SELECT snapshot_done_at IS NOT NULL AND resync_requested_at IS NULL
                                     AND coalesce(copied_tables, $4::text[]) @> $4::text[]
                                FROM pgbisync.capture_state WHERE node = $3), false)
                      AND NOT EXISTS (SELECT 1 FROM pgbisync.copy_progress WHERE node = $3) AS copied,
                    pg_current_wal_insert_lsn()::text AS lsn,
                    (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`,
            [objectNames.slot(source.name), probe?.lsn ?? '0/0', source.name, tables],
          );
          return r.rows[0]!;
        });
        // A copy still to send (the initial one, a resync, an added table) carries rows of any age.
        if (probe !== undefined && (now.passed !== true || !now.copied)) continue;
        if (probe !== undefined) {
          admin ??= new KafkaAdmin(kafkaOptions(config, 'stamps'));
          const present = new Set(await admin.listTopics());
          for (const d of from) {
            const t = directionTopics(config, d, tables);
            const end = await endOffsetSum(admin, t.topics, present);
            const applied = await withNode(d.target, 'stamps', (db) =>
              appliedOffsetSum(db, d.source.name, t),
            );
            if (applied >= end)
              this.#caughtUpMs.set(key(d), Math.max(this.#caughtUpMs.get(key(d)) ?? 0, probe.atMs));
          }
        }
        this.#probes.set(source.name, { lsn: now.lsn, atMs: now.ms });
      }
    } finally {
      await admin?.close();
    }
  }
}
