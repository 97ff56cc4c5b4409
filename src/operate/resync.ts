/**
 * `pgbisync resync <node>`: re-copies a node's tables to the other nodes, the fix for a lost slot
 * (PGB2005, ../source/slot-health.ts), without stopping any other direction.
 *
 * Mechanism: resync only asks. It sets pgbisync.capture_state.resync_requested_at on the node; the
 * node's capture, at its next start (a blocked capture retries every few seconds; a streaming one is
 * restarted here by ending its walsender, and resumes from its slot), drops an invalidated slot,
 * creates a new one if there is none, and sends every row of the node's tables and every delete the
 * node remembers (pgbisync.tombstones) of keys it no longer holds, each with its own commit time
 * (../source/snapshot.ts). The appliers apply them under the conflict policy's guards like streamed
 * changes: a version written on a target after the node's (or a tombstone there newer than the row) is
 * kept. The capture then clears the request and streams on from its slot.
 *
 * So deletes made while the slot was lost reach the other nodes without `verify --repair` (which would
 * need `run` stopped: it binds the appliers' origins). What a re-copy cannot bring back: a TRUNCATE in
 * the gap (it leaves no tombstones) and deletes on a table whose delete trigger was missing; `pgbisync
 * verify` finds those, `verify --repair` (with `run` stopped) settles them by last-writer-wins.
 *
 * Progress is followed from the outside, in the same order as the work: the request is taken (the
 * capture cleared snapshot_done_at), the copy is in Kafka (the request cleared, snapshot_done_at after
 * it), then every target's stored position (pgbisync.apply_progress / apply_positions) passes the end
 * of the node's topics as they were once the copy was in: every record of the copy is applied there.
 * Works whether `run` is running or not (it waits for it, or with `wait: false` only asks); a request
 * already pending is followed, not made again.
 */
import type { Config, NodeConfig } from '../config/schema.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { eventTopics, serverName } from '../kafka/topics.ts';
import { objectNames } from '../pg/sql-names.ts';
import type { Queryable } from '../pg/table-catalog.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { sleep } from '../runtime/sleep.ts';
import { clearCopyPositions } from '../source/copy-progress.ts';
import { pendingRequest, skipDeletedRecords, skipSupersededRecords } from './resync-positions.ts';
import { directions, resolveTables, withNode } from './sync-plan.ts';

export interface ResyncOptions {
  /** false: only ask, and say what happens next. */
  readonly wait: boolean;
  /**
   * Drop the node's slot first (the fix for a slot PostgreSQL cannot decode, PGB2006): the capture
   * then makes a new one and copies from its snapshot.
   */
  readonly newSlot?: boolean;
  /** Gives up (RESYNC_STALLED) after this long without any progress. */
  readonly stallTimeoutMs: number;
  readonly pollMs?: number;
  /** One line per step and, while waiting, every few seconds. */
  readonly onProgress: (line: string) => void;
}

export interface ResyncResult {
  readonly node: string;
  /** When the re-copy was asked for (ISO), by this call or an earlier one still pending. */
  readonly requestedAt: string;
  /** The copy is applied on every target (false with `wait: false`). */
  readonly applied: boolean;
  /** Per target: the offset in each of the node's topics that its position passed. */
  readonly targets: readonly { readonly node: string; readonly offsets: Readonly<Record<string, number>> }[];
}

const POLL_MS = 1000;
const REPORT_EVERY_MS = 5000;

export async function resync(config: Config, nodeName: string, o: ResyncOptions): Promise<ResyncResult> {
  const node = config.nodes.find((n) => n.name === nodeName);
  if (node === undefined) {
    throw new FatalError(`resync: no node named ${nodeName} in the config`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: `name one of ${config.nodes.map((n) => n.name).join(', ')}`,
    });
  }
  if (node.debezium !== undefined) {
    throw new FatalError(`resync: node ${nodeName} is captured by its Debezium connector, not by pgbisync`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 're-snapshot it with the connector (its snapshot.mode / an incremental snapshot signal)',
    });
  }
  const slot = objectNames.slot(node.name);
  // Dropped before the request is made: a capture starting in between finds no slot and no request
  // and stays blocked (PGB2005) until the request comes. The other order could let it copy from the
  // old slot's snapshot and clear the request before the slot is gone.
  if (o.newSlot === true) await withNode(node, 'resync', (db) => dropSlot(db, node.name, slot, o));
  const tables = await resolveTables(config);
  const topics =
    config.mode === 'per-table' ? eventTopics(config, node.name, tables) : [serverName(config, node.name)];
  const targets = directions(config)
    .filter((d) => d.source.name === node.name)
    .map((d) => d.target);
  const admin = new KafkaAdmin(kafkaOptions(config, 'resync'));
  try {
    // Before the request: the new slot's copy lands after these ends (no capture copies without it). Not
    // while an earlier request is pending: its copy may be in the topics already.
    if (o.newSlot === true && !(await withNode(node, 'resync', (db) => pendingRequest(db, node.name)))) {
      for (const m of await skipSupersededRecords(node.name, targets, topics, admin)) {
        o.onProgress(
          `resync ${node.name}: ${m.target} had not applied ${m.topic}[${m.partition}] from offset ${m.from}: what the old slot sent is superseded by the copy from the new one, its position moves to ${m.to}`,
        );
      }
    }
    return await followRequest(node, slot, topics, targets, admin, o);
  } finally {
    await admin.close();
  }
}

async function followRequest(
  node: NodeConfig,
  slot: string,
  topics: readonly string[],
  targets: readonly NodeConfig[],
  admin: KafkaAdmin,
  o: ResyncOptions,
): Promise<ResyncResult> {
  const requested = await withNode(node, 'resync', (db) => request(db, node.name, slot));
  o.onProgress(
    requested.fresh
      ? `resync ${node.name}: re-copy requested at ${requested.at}`
      : `resync ${node.name}: a re-copy requested at ${requested.at} is pending: following it`,
  );
  // With the re-copy asked for, what retention deleted before a target applied it may be skipped.
  for (const m of await skipDeletedRecords(node.name, targets, topics, admin)) {
    o.onProgress(
      `resync ${node.name}: ${m.target} had not applied ${m.topic}[${m.partition}] from offset ${m.from}, deleted from Kafka up to ${m.to}: its position moves to ${m.to}, the re-copy brings what those records carried`,
    );
  }
  if (!o.wait) {
    o.onProgress(
      `resync ${node.name}: the capture of ${node.name} copies its tables at its next start (\`pgbisync run\`); \`pgbisync resync ${node.name}\` follows it`,
    );
    return { node: node.name, requestedAt: requested.at, applied: false, targets: [] };
  }
  const ends = await followCopy(node, slot, requested.at, topics, admin, o);
  const applied = await followApply(node.name, targets, ends, o);
  o.onProgress(
    `resync ${node.name}: done: its rows and remembered deletes are applied on ${targets.map((t) => t.name).join(', ')}; \`pgbisync verify\` (once writes are quiet) confirms the nodes are equal`,
  );
  return { node: node.name, requestedAt: requested.at, applied: true, targets: applied };
}

/** How long `--new-slot` tries to drop a slot its capture keeps taking again. */
const DROP_SLOT_TIMEOUT_MS = 30_000;

/**
 * Drops the node's slot, ending the walsender that holds it (a blocked capture retries every few
 * seconds and takes it again meanwhile, hence the retries). No slot: nothing to do.
 */
async function dropSlot(db: Queryable, node: string, slot: string, o: ResyncOptions): Promise<void> {
  const deadline = Date.now() + DROP_SLOT_TIMEOUT_MS;
  for (;;) {
    const r = await db.query<{ lsn: string | null; pid: number | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    const s = r.rows[0];
    if (s === undefined) {
      o.onProgress(`resync ${node}: no replication slot ${slot} to drop`);
      return;
    }
    try {
      if (s.pid !== null) await db.query('SELECT pg_terminate_backend($1)', [s.pid]);
      await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
      o.onProgress(
        `resync ${node}: dropped replication slot ${slot} (confirmed up to ${s.lsn ?? 'nothing'}): the capture makes a new one and copies from its snapshot`,
      );
      return;
    } catch (error) {
      // 55006: active again (the walsender had not ended yet, or the capture took it back); 42704: gone.
      const code = (error as { code?: string }).code;
      if (code === '42704') continue;
      if (code !== '55006' || Date.now() > deadline) {
        throw new FatalError(`resync ${node}: could not drop replication slot ${slot}`, {
          code: ErrorCode.PG_PREREQUISITE,
          hint: `stop \`pgbisync run\`, then run \`pgbisync resync ${node} --new-slot\` again`,
          cause: error,
        });
      }
      await sleep(200);
    }
  }
}

/** Asks the capture for a re-copy, or finds the request still pending. */
async function request(
  db: Queryable,
  node: string,
  slot: string,
): Promise<{ readonly at: string; readonly fresh: boolean }> {
  const schema = await db.query<{ e: boolean }>(
    "SELECT to_regclass('pgbisync.capture_state') IS NOT NULL AS e",
  );
  if (schema.rows[0]?.e !== true) {
    throw new FatalError(`resync: node ${node} has no pgbisync schema`, {
      code: ErrorCode.PG_PREREQUISITE,
      hint: 'run `pgbisync setup` first',
    });
  }
  // A schema from before resync lacks the request column (checked first: ALTER TABLE locks the table).
  const column = await db.query(
    `SELECT 1 FROM pg_attribute WHERE attrelid = 'pgbisync.capture_state'::regclass
        AND attname = 'resync_requested_at' AND NOT attisdropped`,
  );
  if (column.rowCount === 0) {
    await db.query(
      'ALTER TABLE pgbisync.capture_state ADD COLUMN IF NOT EXISTS resync_requested_at timestamptz',
    );
  }
  const r = await db.query<{ at: string; fresh: boolean }>(
    `INSERT INTO pgbisync.capture_state AS s (node, slot, snapshot_done_at, resync_requested_at)
       VALUES ($1, $2, NULL, now())
     ON CONFLICT (node) DO UPDATE
       SET resync_requested_at = coalesce(s.resync_requested_at, EXCLUDED.resync_requested_at)
     RETURNING to_jsonb(s) ->> 'resync_requested_at' AS at, s.resync_requested_at = now() AS fresh`,
    [node, slot],
  );
  const row = r.rows[0]!;
  // A new request is a whole copy: where an earlier, interrupted one stopped does not count.
  if (row.fresh) await clearCopyPositions(db, node);
  return { at: row.at, fresh: row.fresh };
}

/** The progress lines while waiting, and the stall timeout: fails when `progress` stays the same too long. */
export class StallWatch {
  #last = '';
  #since = Date.now();
  #reportedAt = 0;
  readonly #o: ResyncOptions;

  constructor(o: ResyncOptions) {
    this.#o = o;
  }

  /** Reports `line` on a change or every few seconds; throws once nothing changed for too long. */
  step(progress: string, line: string, stalled: () => FatalError): void {
    const now = Date.now();
    if (progress !== this.#last) {
      this.#last = progress;
      this.#since = now;
      this.#reportedAt = now;
      this.#o.onProgress(line);
      return;
    }
    if (now - this.#since > this.#o.stallTimeoutMs) throw stalled();
    if (now - this.#reportedAt >= REPORT_EVERY_MS) {
      this.#reportedAt = now;
      this.#o.onProgress(line);
    }
  }
}

const stalledHint = (node: string) =>
  `start \`pgbisync run\` if it is not running, and look at its /status for a blocked component; the request stands: \`pgbisync resync ${node}\` follows it again`;

/**
 * Waits until the capture has put the copy in Kafka; returns the end offset of each of the node's
 * topics then (every record of the copy lies before it).
 */
async function followCopy(
  node: NodeConfig,
  slot: string,
  requestedAt: string,
  topics: readonly string[],
  admin: KafkaAdmin,
  o: ResyncOptions,
): Promise<Map<string, number>> {
  const watch = new StallWatch(o);
  let restarted = false;
  for (;;) {
    const s = await withNode(node, 'resync', async (db) => {
      const r = await db.query<{ pending: boolean; copying: boolean; copied: boolean; active: boolean }>(
        `SELECT s.resync_requested_at IS NOT DISTINCT FROM $2::timestamptz AS pending,
                s.snapshot_done_at IS NULL AS copying,
                s.snapshot_done_at >= $2::timestamptz AS copied,
                coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $3), false) AS active
           FROM pgbisync.capture_state s WHERE s.node = $1`,
        [node.name, requestedAt, slot],
      );
      const row = r.rows[0];
      if (row === undefined) {
        throw new FatalError(`resync ${node.name}: its capture state was removed while waiting`, {
          code: ErrorCode.PG_PREREQUISITE,
          hint: `was \`pgbisync teardown\` run? set up again, then \`pgbisync resync ${node.name}\``,
        });
      }
      if (row.pending && !row.copying && row.active && !restarted) {
        // A capture streaming from a healthy slot reads the request only when it starts.
        restarted = true;
        await db
          .query(
            'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
            [slot],
          )
          .then(
            () =>
              o.onProgress(
                `resync ${node.name}: restarted its streaming capture so that it takes the request (it resumes from its slot)`,
              ),
            (error: unknown) =>
              o.onProgress(
                `resync ${node.name}: could not restart its streaming capture (${error instanceof Error ? error.message : String(error)}): restart \`pgbisync run\` so that it takes the request`,
              ),
          );
      }
      return row;
    });
    const ends = await endOffsets(admin, topics);
    if (!s.pending && s.copied === true) {
      o.onProgress(
        `resync ${node.name}: copy sent to Kafka (${[...ends].map(([t, n]) => `${t} up to offset ${n}`).join(', ')})`,
      );
      return ends;
    }
    const sent = [...ends.values()].reduce((a, b) => a + b, 0);
    if (s.pending && s.copying) {
      watch.step(
        `copying ${sent}`,
        `resync ${node.name}: copying its tables to Kafka (${sent} records in its topics)`,
        () =>
          new FatalError(
            `resync ${node.name}: the copy stopped moving for ${o.stallTimeoutMs / 1000} s (${sent} records in its topics)`,
            { code: ErrorCode.RESYNC_STALLED, hint: stalledHint(node.name) },
          ),
      );
    } else {
      watch.step(
        'waiting',
        `resync ${node.name}: waiting for the capture of ${node.name} to take the request (is \`pgbisync run\` running?)`,
        () =>
          new FatalError(
            `resync ${node.name}: the capture of ${node.name} did not start the copy within ${o.stallTimeoutMs / 1000} s`,
            { code: ErrorCode.RESYNC_STALLED, hint: stalledHint(node.name) },
          ),
      );
    }
    await sleep(o.pollMs ?? POLL_MS);
  }
}

export async function endOffsets(admin: KafkaAdmin, topics: readonly string[]): Promise<Map<string, number>> {
  const ends = new Map<string, number>();
  for (const topic of topics) {
    let end = 0;
    for (const offset of (await admin.endOffsets(topic)).values()) end += Number(offset);
    ends.set(topic, end);
  }
  return ends;
}

/** Waits until every target's stored position in each topic reached `ends`. */
export async function followApply(
  source: string,
  targets: readonly NodeConfig[],
  ends: ReadonlyMap<string, number>,
  o: ResyncOptions,
): Promise<ResyncResult['targets']> {
  const watch = new StallWatch(o);
  const topics = [...ends.keys()];
  for (;;) {
    const positions = await Promise.all(
      targets.map(async (t) => ({
        node: t.name,
        offsets: await withNode(t, 'resync', (db) => appliedOffsets(db, source, topics)),
      })),
    );
    const behind = positions.flatMap((p) =>
      topics
        .filter((topic) => (p.offsets.get(topic) ?? 0) < ends.get(topic)!)
        .map(
          (topic) => `${source}->${p.node} at ${p.offsets.get(topic) ?? 0} of ${ends.get(topic)} in ${topic}`,
        ),
    );
    if (behind.length === 0) {
      return positions.map((p) => ({ node: p.node, offsets: Object.fromEntries(p.offsets) }));
    }
    watch.step(
      behind.join(', '),
      `resync ${source}: applying: ${behind.join(', ')}`,
      () =>
        new FatalError(
          `resync ${source}: applying the copy stopped moving for ${o.stallTimeoutMs / 1000} s: ${behind.join(', ')}`,
          {
            code: ErrorCode.RESYNC_STALLED,
            hint: `look at \`pgbisync run\`'s /status for a blocked applier and its fix: the copy is in Kafka, and is applied once the applier runs (\`pgbisync status\` shows its lag)`,
          },
        ),
    );
    await sleep(o.pollMs ?? POLL_MS);
  }
}

/** A target's stored next offset in each of `topics` for `source` (absent: nothing applied yet). */
async function appliedOffsets(
  db: Queryable,
  source: string,
  topics: readonly string[],
): Promise<Map<string, number>> {
  const positions = await db.query<{ e: boolean }>(
    "SELECT to_regclass('pgbisync.apply_positions') IS NOT NULL AS e",
  );
  const r = await db.query<{ topic: string; next: string }>(
    `SELECT topic, max(next_offset)::text AS next FROM (
       SELECT topic, next_offset FROM pgbisync.apply_progress WHERE source_node = $1
       ${positions.rows[0]?.e === true ? 'UNION ALL SELECT topic, next_offset FROM pgbisync.apply_positions WHERE source_node = $1' : ''}
     ) p WHERE topic = ANY($2::text[]) GROUP BY topic`,
    [source, topics],
  );
  return new Map(r.rows.map((row) => [row.topic, Number(row.next)]));
}
