/**
 * `pgbisync status`: per direction, what an operator checks first — the source slot's retained WAL,
 * Kafka lag of the applier, the last applied source LSN and commit time, end-to-end lag and conflicts.
 * Read from the nodes and Kafka (not from a running process), so it works while `run` is down too.
 * A source whose slot is lost (gone after its capture streamed from it, or invalidated) makes its
 * directions unhealthy with the fix (`pgbisync resync <node>`); one close to being invalidated
 * (wal_status unreserved, little safe_wal_size left), a resync under way or schema drift between the
 * nodes (./schema-drift.ts) is a warning, and so is a direction with changes pending from before its
 * target's commit-timestamp horizon (../conflicts/commit-ts-horizon.ts).
 */

import type { Config } from '../config/schema.ts';
import { type ClockOffset, readClockOffset, skewMs, skewWarning } from '../conflicts/clock-skew.ts';
import { readCommitTsHorizonMs, stampRiskWarning } from '../conflicts/commit-ts-horizon.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { objectNames } from '../pg/sql-names.ts';
import { judgeSlot, readSlotHealth, type SlotVerdict } from '../source/slot-health.ts';
import { appliedOffsetSum, directionTopics, endOffsetSum } from './direction-offsets.ts';
import { ownedComponents, readOwner } from './ownership.ts';
import { firstPendingCommitMs } from './pending-commit-time.ts';
import { driftBetween, readCatalogs } from './schema-drift.ts';
import { directions, resolveTables, withNode } from './sync-plan.ts';

export interface SlotStatus {
  readonly exists: boolean;
  readonly active: boolean;
  readonly retainedWalBytes: number;
  readonly confirmedFlushLsn: string | null;
  /** pg_replication_slots.wal_status (reserved, extended, unreserved, lost); null when missing. */
  readonly walStatus: string | null;
  /** pg_replication_slots.safe_wal_size; null without max_slot_wal_keep_size (or when lost). */
  readonly safeWalBytes: number | null;
  /** A re-copy `pgbisync resync` asked for and the capture has not finished (ISO time), or null. */
  readonly resyncRequestedAt: string | null;
}

export interface DirectionStatus {
  readonly source: string;
  readonly target: string;
  readonly slot: SlotStatus;
  /** The source's event topic (transactional mode), or its topics joined by ',' (per-table topics). */
  readonly topic: string;
  /** End offsets and applied offsets summed over the source's topics. */
  readonly topicEndOffset: number;
  readonly appliedOffset: number;
  readonly kafkaLag: number;
  readonly lastAppliedLsn: string | null;
  readonly lastAppliedCommitTime: string | null;
  /** Seconds between now and the commit time of the last applied transaction, when events are pending. */
  readonly lagSeconds: number;
  readonly conflicts: number;
  /** How far the source server's clock runs ahead of the target's (ms; negative: behind). */
  readonly clockSkewMs: number;
  readonly healthy: boolean;
  readonly problems: readonly string[];
  /** Not (yet) a problem: a slot close to being invalidated, a resync under way. */
  readonly warnings: readonly string[];
}

/** Who runs a component (several `run` instances share them, docs/deployment.md). */
export interface ComponentOwnerStatus {
  readonly component: string;
  readonly node: string;
  /** The owning instance, or null when none does (no `run` up, or between owners). */
  readonly owner: string | null;
  /** Since when it owns the component (ISO time), or null. */
  readonly since: string | null;
}

export interface StatusReport {
  readonly healthy: boolean;
  readonly directions: readonly DirectionStatus[];
  readonly components: readonly ComponentOwnerStatus[];
}

export async function readStatus(config: Config): Promise<StatusReport> {
  const slots = new Map<string, SlotStatus>();
  const verdicts = new Map<string, SlotVerdict>();
  const clocks = new Map<string, ClockOffset>();
  const horizons = new Map<string, number | null>();
  const horizonErrors = new Map<string, string>();
  for (const node of config.nodes) {
    const health = await withNode(node, 'status', async (db) => {
      clocks.set(node.name, await readClockOffset(db));
      // Only a warning depends on it: status goes on without it (a server that cannot tell, say why).
      horizons.set(
        node.name,
        await readCommitTsHorizonMs(db).catch((error: unknown) => {
          horizonErrors.set(node.name, String(error));
          return null;
        }),
      );
      return await readSlotHealth(db, node.name, objectNames.slot(node.name));
    });
    slots.set(node.name, {
      exists: health.exists,
      active: health.active,
      retainedWalBytes: health.retainedWalBytes,
      confirmedFlushLsn: health.confirmedFlushLsn,
      walStatus: health.walStatus,
      safeWalBytes: health.safeWalBytes,
      resyncRequestedAt: health.resyncRequestedAt,
    });
    // A node captured by Debezium has no pgbisync slot to judge.
    if (node.debezium === undefined) verdicts.set(node.name, judgeSlot(health));
  }
  const tables = await resolveTables(config);
  const catalogs = await readCatalogs(config, tables);
  const admin = new KafkaAdmin(kafkaOptions(config, 'status'));
  const out: DirectionStatus[] = [];
  try {
    const topics = new Set(await admin.listTopics());
    for (const d of directions(config)) {
      const dt = directionTopics(config, d, tables);
      const perTopic = dt.perTopic;
      const sourceTopics = dt.topics;
      const topic = sourceTopics.join(',');
      const missing = sourceTopics.filter((t) => !topics.has(t));
      const end = await endOffsetSum(admin, sourceTopics, topics);
      const applied = await withNode(d.target, 'status', async (db) => {
        const hasSchema = await db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgbisync'");
        if (hasSchema.rowCount === 0) return undefined;
        const p = await db.query<{
          next_offset: string;
          lsn: string;
          ct: string;
          ct_ms: number;
          age: number;
        }>(
          `SELECT next_offset::text, commit_lsn::text AS lsn, commit_time::text AS ct,
                  (extract(epoch FROM commit_time) * 1000)::float8 AS ct_ms,
                  extract(epoch FROM clock_timestamp() - commit_time)::float8 AS age
             FROM pgbisync.apply_progress WHERE source_node = $1`,
          [d.source.name],
        );
        const c = await db.query<{ n: string }>(
          'SELECT count(*)::text AS n FROM pgbisync.conflicts WHERE remote_node = $1',
          [d.source.name],
        );
        const perTopicOffset = perTopic ? await appliedOffsetSum(db, d.source.name, dt) : undefined;
        return {
          progress: p.rows[0],
          conflicts: Number(c.rows[0]?.n ?? 0),
          perTopicOffset,
        };
      });
      const slot = slots.get(d.source.name)!;
      const appliedOffset = applied?.perTopicOffset ?? Number(applied?.progress?.next_offset ?? 0);
      const kafkaLag = Math.max(0, end - appliedOffset);
      const lagSeconds = kafkaLag > 0 ? (applied?.progress?.age ?? 0) : 0;
      const problems: string[] = [];
      const warnings: string[] = [];
      const verdict = verdicts.get(d.source.name);
      if (verdict?.kind === 'lost') problems.push(`${verdict.error.message}; fix: ${verdict.error.hint}`);
      if (verdict?.kind === 'warn') warnings.push(`${verdict.problem}; fix: ${verdict.fix}`);
      warnings.push(...driftBetween(catalogs, d.source.name, d.target.name));
      const clockSkewMs = skewMs(clocks.get(d.source.name)!, clocks.get(d.target.name)!);
      const skewed = skewWarning(d.source.name, d.target.name, clockSkewMs, config.conflicts.maxClockSkewMs);
      if (skewed !== undefined) warnings.push(skewed);
      const appliedMs = applied?.progress?.ct_ms ?? null;
      const horizonMs = horizons.get(d.target.name)!;
      let risk = stampRiskWarning(d.source.name, d.target.name, kafkaLag, appliedMs, horizonMs);
      // The last applied commit is older than the horizon; so may the pending ones be, or the source
      // was idle longer than the horizon is old: its first pending change tells (one topic, in order).
      if (risk !== undefined && !perTopic && horizonMs !== null) {
        const firstMs = await firstPendingCommitMs(config, topic, BigInt(appliedOffset));
        if (firstMs !== null && firstMs >= horizonMs) risk = undefined;
      }
      if (risk !== undefined) warnings.push(risk);
      const horizonError = horizonErrors.get(d.target.name);
      if (horizonError !== undefined)
        warnings.push(`could not read the commit-timestamp horizon of ${d.target.name}: ${horizonError}`);
      if (applied === undefined)
        problems.push(`pgbisync schema missing on ${d.target.name}: run pgbisync setup`);
      if (missing.length > 0) {
        problems.push(
          d.source.debezium === undefined
            ? `topic ${missing.join(', ')} missing: run pgbisync setup`
            : `topic ${missing.join(', ')} missing: is ${d.source.name}'s Debezium connector running with topic.prefix ${d.source.debezium.topicPrefix}?`,
        );
      }
      if (slot.retainedWalBytes > config.limits.maxRetainedWalBytes) {
        problems.push(
          `slot on ${d.source.name} retains ${slot.retainedWalBytes} bytes of WAL (limit limits.maxRetainedWalBytes=${config.limits.maxRetainedWalBytes})`,
        );
      }
      if (lagSeconds > config.limits.maxLagSeconds) {
        problems.push(
          `apply lag ${lagSeconds.toFixed(1)} s over limits.maxLagSeconds=${config.limits.maxLagSeconds}`,
        );
      }
      out.push({
        source: d.source.name,
        target: d.target.name,
        slot,
        topic,
        topicEndOffset: end,
        appliedOffset,
        kafkaLag,
        lastAppliedLsn: applied?.progress?.lsn ?? null,
        lastAppliedCommitTime: applied?.progress?.ct ?? null,
        lagSeconds,
        conflicts: applied?.conflicts ?? 0,
        clockSkewMs,
        healthy: problems.length === 0,
        problems,
        warnings,
      });
    }
  } finally {
    await admin.close();
  }
  return { healthy: out.every((d) => d.healthy), directions: out, components: await readOwners(config) };
}

/** Each component's owner, from the leases on the nodes. */
async function readOwners(config: Config): Promise<ComponentOwnerStatus[]> {
  const owned = ownedComponents(config);
  const out: ComponentOwnerStatus[] = [];
  for (const node of config.nodes) {
    const here = owned.filter((c) => c.node === node.name);
    if (here.length === 0) continue;
    await withNode(node, 'status', async (db) => {
      for (const c of here) {
        const owner = await readOwner(db, c.name);
        out.push({
          component: c.name,
          node: c.node,
          owner: owner?.instance ?? null,
          since: owner?.since || null,
        });
      }
    });
  }
  return out;
}

export function formatStatus(report: StatusReport): string {
  const lines = [
    'direction      slot retained WAL  kafka lag  lag s   last applied LSN  conflicts  health',
    ...report.directions.map((d) =>
      [
        `${d.source}->${d.target}`.padEnd(14),
        `${!d.slot.exists ? 'none' : d.slot.walStatus === 'lost' ? 'lost' : d.slot.active ? 'active' : 'idle'} ${d.slot.retainedWalBytes} B`.padEnd(
          18,
        ),
        String(d.kafkaLag).padStart(9),
        d.lagSeconds.toFixed(1).padStart(6),
        `  ${(d.lastAppliedLsn ?? '-').padEnd(16)}`,
        String(d.conflicts).padStart(9),
        `  ${d.healthy ? 'ok' : `UNHEALTHY: ${d.problems.join('; ')}`}${d.warnings.length === 0 ? '' : `${d.healthy ? ',' : ';'} WARNING: ${d.warnings.join('; ')}`}`,
      ].join(' '),
    ),
    '',
    'component         owner (since)',
    ...report.components.map(
      (c) => `${c.component.padEnd(17)} ${c.owner === null ? '-' : `${c.owner} (${c.since ?? '?'})`}`,
    ),
  ];
  return lines.join('\n');
}
