/**
 * `pgbisync resync <table> [--from <node>]`: re-copies one synced table online (after an out-of-band
 * change, a restore of one table, a repair), from one node or from every node, and ends with `verify`
 * of that table.
 *
 * Mechanism: the copy of a table added to `tables` (../source/added-tables.ts). The request removes the
 * table from each chosen node's record of copied tables (pgbisync.capture_state.copied_tables); that
 * node's capture, at its next start (a streaming one is restarted here by ending its walsender; it
 * resumes from its slot), copies the table with each row's own commit time and records it again. The
 * appliers apply the copy under the conflict policy like streamed changes: a version written on a target
 * later stays. The request survives restarts of `run` and of this command (the record lacks the table
 * until a copy completes): asked again, it is followed, and an interrupted copy resumes at the first
 * heap page Kafka had not acknowledged (../source/copy-progress.ts).
 *
 * Progress is followed from the outside: the record holds the table again (the copy is in Kafka), then
 * every target's stored position passes the end of the node's topics as they were then.
 */
import type { Config, NodeConfig } from '../config/schema.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { eventTopics, serverName } from '../kafka/topics.ts';
import { objectNames } from '../pg/sql-names.ts';
import { type Queryable, withLeafPartitions } from '../pg/table-catalog.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { sleep } from '../runtime/sleep.ts';
import { clearCopyPositions, readCopyPositions, setCopyPaused } from '../source/copy-progress.ts';
import { endOffsets, followApply, type ResyncOptions, StallWatch } from './resync.ts';
import { directions, resolveTables, withNode } from './sync-plan.ts';
import { DEFAULT_CHUNK_ROWS, type VerifyReport, verify } from './verify.ts';

export interface ResyncTableOptions extends ResyncOptions {
  /** The node to copy from; undefined: every node captured by pgbisync. */
  readonly from?: string;
  /** Pause the pending copy instead (`pgbisync resync <table>` resumes it where it stopped). */
  readonly pause?: boolean;
}

export interface ResyncTableResult {
  readonly table: string;
  readonly from: readonly string[];
  /** `verify` of the table once every copy is applied (undefined with `wait: false`). */
  readonly verified: VerifyReport | undefined;
}

export async function resyncTable(
  config: Config,
  table: string,
  o: ResyncTableOptions,
): Promise<ResyncTableResult> {
  const tables = await resolveTables(config);
  if (!tables.includes(table)) {
    throw new FatalError(`resync: ${table} is neither a node nor a synced table`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `name a node (${config.nodes.map((n) => n.name).join(', ')}) or a synced table (${tables.join(', ')}), as schema.table`,
    });
  }
  if (config.capture.snapshot === 'never') {
    throw new FatalError(`resync ${table}: capture.snapshot is 'never': the captures copy no table`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 'set capture.snapshot: initial (the default), restart `pgbisync run`, and resync again',
    });
  }
  const sources = sourcesOf(config, o.from);
  if (o.pause === true) {
    for (const node of sources) await withNode(node, 'resync', (db) => pause(db, node.name, table, o));
    return { table, from: sources.map((n) => n.name), verified: undefined };
  }
  for (const node of sources) {
    const fresh = await withNode(node, 'resync', (db) => request(db, node.name, table, tables));
    o.onProgress(
      fresh
        ? `resync ${table}: re-copy from ${node.name} requested`
        : `resync ${table}: a re-copy from ${node.name} is pending: following it`,
    );
  }
  if (!o.wait) {
    o.onProgress(
      `resync ${table}: the captures copy it at their next start; \`pgbisync resync ${table}\` follows it`,
    );
    return { table, from: sources.map((n) => n.name), verified: undefined };
  }
  const admin = new KafkaAdmin(kafkaOptions(config, 'resync'));
  try {
    for (const node of sources) {
      const topics =
        config.mode === 'per-table'
          ? eventTopics(config, node.name, [table])
          : [serverName(config, node.name)];
      await followCopy(node, table, o);
      const ends = await endOffsets(admin, topics);
      o.onProgress(`resync ${table}: copy from ${node.name} sent to Kafka`);
      const targets = directions(config)
        .filter((d) => d.source.name === node.name)
        .map((d) => d.target);
      await followApply(node.name, targets, ends, o);
      o.onProgress(
        `resync ${table}: copy from ${node.name} applied on ${targets.map((t) => t.name).join(', ')}`,
      );
    }
  } finally {
    await admin.close();
  }
  const { report } = await verify(config, { chunkRows: DEFAULT_CHUNK_ROWS, tables: [table] });
  o.onProgress(
    report.identical
      ? `resync ${table}: done: verify finds the table identical on every node`
      : `resync ${table}: done, but verify finds differences (writes in flight show as differences: run \`pgbisync verify\` once writes are quiet)`,
  );
  return { table, from: sources.map((n) => n.name), verified: report };
}

function sourcesOf(config: Config, from: string | undefined): NodeConfig[] {
  const captured = config.nodes.filter((n) => n.debezium === undefined);
  if (from === undefined) return captured;
  const node = captured.find((n) => n.name === from);
  if (node === undefined) {
    throw new FatalError(`resync: --from ${from} is not a node captured by pgbisync`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `name one of ${captured.map((n) => n.name).join(', ')}`,
    });
  }
  return [node];
}

/** Takes the table out of the node's record of copied tables; false: it was out already (pending). */
async function request(
  db: Queryable,
  node: string,
  table: string,
  tables: readonly string[],
): Promise<boolean> {
  const r = await db.query<{ fresh: boolean }>(
    `UPDATE pgbisync.capture_state s SET copied_tables = array_remove(coalesce(s.copied_tables, $3::text[]), $2)
      WHERE node = $1
      RETURNING $2 = ANY(coalesce((SELECT copied_tables FROM pgbisync.capture_state WHERE node = $1), $3::text[])) AS fresh`,
    [node, table, [...tables]],
  );
  if (r.rowCount === 0) {
    throw new FatalError(`resync: the capture of ${node} has not started yet (no capture state)`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: '`pgbisync resync <table>` once `pgbisync run` has copied it at its first start',
    });
  }
  const fresh = r.rows[0]?.fresh === true;
  // A new request is a whole copy; a pending one (paused, or interrupted) resumes where it stopped.
  if (fresh) await clearCopyPositions(db, node, await withLeafPartitions(db, [table]));
  else if ((await readCopyPositions(db, node)).get(table)?.paused === true)
    await setCopyPaused(db, node, table, false);
  return fresh;
}

/** Pauses the pending copy of `table` from `node`: its capture stops copying it within a second. */
async function pause(db: Queryable, node: string, table: string, o: ResyncOptions): Promise<void> {
  const state = await db.query<{ pending: boolean; partitioned: boolean }>(
    `SELECT NOT ($2 = ANY(coalesce(s.copied_tables, '{}'))) AS pending,
            EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass($2) AND c.relkind = 'p') AS partitioned
       FROM pgbisync.capture_state s WHERE s.node = $1`,
    [node, table],
  );
  const row = state.rows[0];
  if (row?.pending !== true) {
    throw new FatalError(`resync ${table} --pause: no copy of it from ${node} is pending`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `\`pgbisync resync ${table}\` asks for one (and \`--pause\` then pauses it)`,
    });
  }
  if (row.partitioned) {
    throw new FatalError(`resync ${table} --pause: a partitioned table's copy is not paused`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 'its copy resumes partition by partition where it stopped after a restart of `pgbisync run`',
    });
  }
  const at = await setCopyPaused(db, node, table, true);
  o.onProgress(
    `resync ${table}: the copy from ${node} is paused (at heap page ${at.nextPage}); \`pgbisync resync ${table}\` resumes it there`,
  );
}

/** Waits until the node's capture recorded the table as copied again, restarting a streaming capture once. */
async function followCopy(node: NodeConfig, table: string, o: ResyncOptions): Promise<void> {
  const slot = objectNames.slot(node.name);
  const watch = new StallWatch(o);
  let restarted = false;
  for (;;) {
    const done = await withNode(node, 'resync', async (db) => {
      if ((await readCopyPositions(db, node.name)).get(table)?.paused === true) {
        throw new FatalError(`resync ${table}: the copy from ${node.name} is paused`, {
          code: ErrorCode.RESYNC_STALLED,
          hint: `\`pgbisync resync ${table}\` resumes it where it stopped`,
        });
      }
      const r = await db.query<{ copied: boolean; active: boolean }>(
        `SELECT $2 = ANY(coalesce(s.copied_tables, '{}')) AS copied,
                coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $3), false) AS active
           FROM pgbisync.capture_state s WHERE s.node = $1`,
        [node.name, table, slot],
      );
      const row = r.rows[0];
      if (row?.copied === true) return true;
      if (row?.active === true && !restarted) {
        // A capture streaming from its slot reads the request only when it starts.
        restarted = true;
        await db.query(
          'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
          [slot],
        );
        o.onProgress(
          `resync ${table}: restarted the streaming capture of ${node.name} so that it takes the request`,
        );
      }
      return false;
    });
    if (done) return;
    watch.step(
      'waiting',
      `resync ${table}: waiting for the capture of ${node.name} to copy it (is \`pgbisync run\` running?)`,
      () =>
        new FatalError(
          `resync ${table}: the capture of ${node.name} did not copy it within ${o.stallTimeoutMs / 1000} s`,
          {
            code: ErrorCode.RESYNC_STALLED,
            hint: `start \`pgbisync run\` if it is not running, and look at its /status for a blocked capture; the request stands: \`pgbisync resync ${table}\` follows it again`,
          },
        ),
    );
    await sleep(o.pollMs ?? 1000);
  }
}
