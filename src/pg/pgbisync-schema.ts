/**
 * The `pgbisync` schema on every node: pgbisync's own bookkeeping, never part of a publication.
 *
 * - capture_state: per capturing node, whether the initial snapshot completed (a crash mid-snapshot
 *   keeps the slot and reads the tables again; events are upserts, so repeats are harmless), and a
 *   re-copy `pgbisync resync` asked for (resync_requested_at, cleared by the capture once it is done).
 *   A completed snapshot with no slot means the slot was lost: the capture blocks (PGB2005).
 * - capture_runs: per capturing node, its capture's last run (src/source/capture-run.ts).
 * - copy_progress: per capturing node and table, where an interrupted copy of the table resumes (the
 *   first heap page whose rows Kafka has not acknowledged) and whether the operator paused it
 *   (`pgbisync resync <table> --pause`; src/source/copy-progress.ts).
 * - apply_progress: per source node, the Kafka position and source commit of the last applied
 *   transaction, written inside that same target transaction (exactly-once effect), with the identity
 *   (system identifier, timeline and its history) of the source WAL its commit LSN is of
 *   (src/offsets/source-watermark.ts; nulls: written before identities, or by a capture without them),
 *   the newest capture run read from the source's records (capture_run; src/source/capture-run.ts), and
 *   the commit time of the transaction at the watermark (watermark_us, Unix microseconds; null: not known), which tells
 *   a re-sent transaction from one of a source whose WAL went back (src/offsets/source-watermark.ts).
 * - apply_positions: for sources spread over several topics (a Debezium connector's per-table topics),
 *   the next offset of every topic/partition, written in the same target transaction as apply_progress.
 * - conflicts: every conflict resolved on this node, with both versions.
 * - tombstones: keys deleted on this node, stamped by the deleting transaction (its xmin gives the
 *   commit time and origin), so a late, older update cannot resurrect a row deleted later; key '{}' is
 *   the table's latest TRUNCATE (local or applied), which every older row of the table lost to. Pruned
 *   once every direction applied past them (src/operate/tombstone-pruner.ts).
 * - tombstone_horizon: per table, the time before which its tombstones were pruned: an incoming change
 *   older than it, for a key this node lacks, is refused as a tombstone would refuse it.
 * - event_schemas: with `capture.schemasEnabled: false`, the value schema of every relation version
 *   this node's capture encoded, by the id its schemaless records name (src/events/schema-store.ts).
 */
import type { Queryable } from './table-catalog.ts';

export const PGBISYNC_SCHEMA_SQL = `
CREATE SCHEMA IF NOT EXISTS pgbisync;
CREATE TABLE IF NOT EXISTS pgbisync.capture_state (
  node text PRIMARY KEY,
  slot text NOT NULL,
  consistent_lsn pg_lsn,
  snapshot_done_at timestamptz,
  resync_requested_at timestamptz,
  copied_tables text[]
);
ALTER TABLE pgbisync.capture_state ADD COLUMN IF NOT EXISTS resync_requested_at timestamptz;
ALTER TABLE pgbisync.capture_state ADD COLUMN IF NOT EXISTS copied_tables text[];
CREATE TABLE IF NOT EXISTS pgbisync.capture_runs (
  node text PRIMARY KEY,
  run bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS pgbisync.copy_progress (
  node text NOT NULL,
  table_name text NOT NULL,
  next_page bigint NOT NULL DEFAULT 0,
  paused boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (node, table_name)
);
CREATE TABLE IF NOT EXISTS pgbisync.apply_progress (
  source_node text PRIMARY KEY,
  topic text NOT NULL,
  kafka_partition int NOT NULL,
  next_offset bigint NOT NULL,
  commit_lsn pg_lsn NOT NULL,
  commit_time timestamptz NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  source_system_id text,
  source_timeline bigint,
  source_timeline_history text,
  capture_run bigint,
  watermark_us bigint
);
ALTER TABLE pgbisync.apply_progress ADD COLUMN IF NOT EXISTS source_system_id text;
ALTER TABLE pgbisync.apply_progress ADD COLUMN IF NOT EXISTS source_timeline bigint;
ALTER TABLE pgbisync.apply_progress ADD COLUMN IF NOT EXISTS source_timeline_history text;
ALTER TABLE pgbisync.apply_progress ADD COLUMN IF NOT EXISTS capture_run bigint;
ALTER TABLE pgbisync.apply_progress ADD COLUMN IF NOT EXISTS watermark_us bigint;
CREATE TABLE IF NOT EXISTS pgbisync.apply_positions (
  source_node text NOT NULL,
  topic text NOT NULL,
  kafka_partition int NOT NULL,
  next_offset bigint NOT NULL,
  PRIMARY KEY (source_node, topic, kafka_partition)
);
CREATE TABLE IF NOT EXISTS pgbisync.conflicts (
  id bigserial PRIMARY KEY,
  detected_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  table_name text NOT NULL,
  conflict_type text NOT NULL,
  key jsonb NOT NULL,
  local_row jsonb,
  local_commit_time timestamptz,
  local_node text,
  remote_row jsonb,
  remote_commit_time timestamptz NOT NULL,
  remote_node text NOT NULL,
  resolution text NOT NULL,
  policy text NOT NULL
);
-- The keys the applier repairs from their source (src/sink/toast-repair.ts): found without a scan.
CREATE INDEX IF NOT EXISTS conflicts_needs_repair ON pgbisync.conflicts (remote_node, id) WHERE resolution = 'needs_repair';
CREATE TABLE IF NOT EXISTS pgbisync.event_schemas (
  schema_id text PRIMARY KEY,
  value_schema text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS pgbisync.tombstones (
  table_name text NOT NULL,
  key jsonb NOT NULL,
  PRIMARY KEY (table_name, key)
);
CREATE TABLE IF NOT EXISTS pgbisync.tombstone_horizon (
  table_name text PRIMARY KEY,
  pruned_before timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION pgbisync.record_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  k jsonb := '{}'::jsonb;
  col text;
  moved boolean := false;
  name text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  root oid := pg_partition_root(TG_RELID);
BEGIN
  -- An update that moves the row to another key deletes the old key as surely as a DELETE does.
  IF TG_OP = 'UPDATE' THEN
    FOREACH col IN ARRAY TG_ARGV LOOP
      moved := moved OR (to_jsonb(OLD) -> col) IS DISTINCT FROM (to_jsonb(NEW) -> col);
    END LOOP;
    IF NOT moved THEN RETURN NULL; END IF;
  END IF;
  FOREACH col IN ARRAY TG_ARGV LOOP
    k := k || jsonb_build_object(col, to_jsonb(OLD) -> col);
  END LOOP;
  -- A partition's row is its partitioned table's: changes are published, and applied, by the root
  -- (publish_via_partition_root).
  IF root IS NOT NULL AND root <> TG_RELID THEN
    SELECT n.nspname || '.' || c.relname INTO name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = root;
  END IF;
  -- The row's xmin becomes this transaction: its commit time and origin date the delete.
  INSERT INTO pgbisync.tombstones AS t (table_name, key) VALUES (name, k)
    ON CONFLICT (table_name, key) DO UPDATE SET key = EXCLUDED.key;
  RETURN OLD;
END $$;
-- A local TRUNCATE of a synced table (statement trigger pgbisync_truncate): the table's tombstone, key '{}',
-- dated by this transaction, so a row written elsewhere before the truncate and arriving after it stays
-- deleted (the applier's upsert checks it beside the key's own tombstone; an applied truncate writes it too).
CREATE OR REPLACE FUNCTION pgbisync.record_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The statement's partitioned tables are truncated: see truncate_partition.
  PERFORM set_config('pgbisync.truncating', '', true);
  INSERT INTO pgbisync.tombstones AS t (table_name, key) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, '{}'::jsonb)
    ON CONFLICT (table_name, key) DO UPDATE SET key = EXCLUDED.key;
  RETURN NULL;
END $$;
-- A TRUNCATE of a partition alone (statement trigger pgbisync_truncate_partition, BEFORE, on each partition
-- of a synced partitioned table): pgoutput publishes changes by the root (publish_via_partition_root) and
-- then leaves a partition's TRUNCATE out, so its rows are deleted first, each delete published and
-- remembered as any other. The same trigger on the root notes, for the statement, that the whole table
-- is truncated (its partitions' triggers then do nothing: the root's truncate is published); the root's
-- pgbisync_truncate (AFTER) clears the note.
CREATE OR REPLACE FUNCTION pgbisync.truncate_partition() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  root oid := pg_partition_root(TG_RELID);
BEGIN
  IF root IS NULL OR root = TG_RELID THEN
    PERFORM set_config('pgbisync.truncating',
      coalesce(current_setting('pgbisync.truncating', true), '') || ',' || TG_RELID::text || ',', true);
  ELSIF position(',' || root::text || ',' IN coalesce(current_setting('pgbisync.truncating', true), '')) = 0 THEN
    EXECUTE format('DELETE FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  END IF;
  RETURN NULL;
END $$;
-- The applier's upsert calls this for each row it wrote: a row its snapshot saw that it had to insert
-- anew was deleted by a concurrent transaction, whose tombstone the snapshot cannot see. Failing with a
-- serialization failure makes the applier apply the transaction again, with a snapshot that sees it.
CREATE OR REPLACE FUNCTION pgbisync.deleted_meanwhile(inserted boolean, table_name text, key jsonb)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF inserted THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = format('%s %s was deleted by a concurrent transaction while the applier wrote it', table_name, key),
      HINT = 'the applier applies the transaction again';
  END IF;
  RETURN false;
END $$;
-- The applier's upsert into a partitioned table calls this for a row its ON CONFLICT found that the
-- statement's snapshot does not show (inserted by a concurrent transaction): its version cannot be read
-- there, so the transaction is applied again, with a snapshot that shows it.
CREATE OR REPLACE FUNCTION pgbisync.inserted_meanwhile(table_name text, key jsonb)
RETURNS xid LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
    MESSAGE = format('%s %s was inserted by a concurrent transaction while the applier wrote it', table_name, key),
    HINT = 'the applier applies the transaction again';
END $$;
-- Records a conflict the applier's upsert resolved (called from its ON CONFLICT guard, on the locked
-- version, and from its tombstone check, for a key deleted here later) and counts it in the transaction-local setting pgbisync.conflicts, which the statement then
-- reports (take_conflicts). Returns whether the incoming change is applied (resolution apply_remote).
CREATE OR REPLACE FUNCTION pgbisync.record_conflict(table_name text, conflict_type text, key jsonb,
  local_row jsonb, local_commit_time timestamptz, local_node text, remote_row jsonb,
  remote_commit_time timestamptz, remote_node text, resolution text, policy text)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  INSERT INTO pgbisync.conflicts (table_name, conflict_type, key, local_row, local_commit_time, local_node,
      remote_row, remote_commit_time, remote_node, resolution, policy)
    VALUES (table_name, conflict_type, key, local_row, local_commit_time, local_node, remote_row,
      remote_commit_time, remote_node, resolution, policy);
  PERFORM set_config('pgbisync.conflicts',
    (coalesce(nullif(current_setting('pgbisync.conflicts', true), ''), '0')::int + 1)::text, true);
  RETURN resolution = 'apply_remote';
END $$;
-- Whether an incoming change (its commit time and node) beats a version (its time and node) by a
-- policy's guard: wins, the policy's SQL over $1 the incoming time, $2 its node, $3 the version's time,
-- $4 its node (src/conflicts/policy.ts, incomingWinsSql). For the functions below, which run only where a
-- conflict may be.
CREATE OR REPLACE FUNCTION pgbisync.incoming_wins(wins text, remote_commit_time timestamptz,
  remote_node text, local_commit_time timestamptz, local_node text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
  r boolean;
BEGIN
  EXECUTE 'SELECT ' || wins INTO r USING remote_commit_time, remote_node, local_commit_time, local_node;
  RETURN r;
END $$;
-- The applier's upsert calls this from its ON CONFLICT guard for a version another node wrote (x, the
-- locked row's xmin): decides by the policy and records the conflict (record_conflict); returns whether
-- the incoming change is applied (wins: see incoming_wins). Called only on a conflict, this work stays
-- out of the statement's plan, which PostgreSQL builds at every execution, taken or not.
CREATE OR REPLACE FUNCTION pgbisync.upsert_conflict(table_name text, conflict_type text, x xid, key jsonb,
  local_row jsonb, remote_row jsonb, remote_commit_time timestamptz, remote_node text, this_node text,
  policy text, wins text)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  t timestamptz := pgbisync.version_time(x);
  n text := CASE WHEN x = xid(pg_current_xact_id_if_assigned()) THEN remote_node
    ELSE pgbisync.version_node(x, this_node) END;
BEGIN
  RETURN pgbisync.record_conflict(table_name, conflict_type, key, local_row, t, n, remote_row,
    remote_commit_time, remote_node,
    CASE WHEN pgbisync.incoming_wins(wins, remote_commit_time, remote_node, t, n) THEN 'apply_remote' ELSE 'keep_local' END,
    policy);
END $$;
-- The applier's one-row upsert calls this for a key its snapshot shows no row at, when the key or its
-- table has a tombstone (key '{}': the table's latest TRUNCATE) or the table's horizon is not older
-- than the incoming change: whether one of them beats the change (wins: see incoming_wins), which
-- then stays deleted (conflict update_deleted, keep_deleted, recorded). STABLE: it reads the tombstones
-- with the calling statement's snapshot, as the statement's own checks do.
CREATE OR REPLACE FUNCTION pgbisync.insert_blocked(table_name text, key jsonb,
  remote_commit_time timestamptz, remote_node text, this_node text, policy text, wins text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
  b record;
BEGIN
  FOR b IN SELECT pgbisync.version_time(s.xmin) AS t,
      CASE WHEN s.xmin = xid(pg_current_xact_id_if_assigned()) THEN remote_node
        ELSE pgbisync.version_node(s.xmin, this_node) END AS n
    FROM pgbisync.tombstones s
    WHERE s.table_name = insert_blocked.table_name AND s.key IN (insert_blocked.key, '{}'::jsonb)
  LOOP
    IF pgbisync.incoming_wins(wins, remote_commit_time, remote_node, b.t, b.n) IS NOT TRUE THEN
      PERFORM pgbisync.record_conflict(table_name, 'update_deleted', key, NULL, b.t, b.n, NULL,
        remote_commit_time, remote_node, 'keep_deleted', policy);
      RETURN true;
    END IF;
  END LOOP;
  -- Tombstones older than the horizon were pruned: a change older than it is refused as they would
  -- refuse it (no local node).
  FOR b IN SELECT h.pruned_before AS t FROM pgbisync.tombstone_horizon h
    WHERE h.table_name = insert_blocked.table_name
  LOOP
    IF pgbisync.incoming_wins(wins, remote_commit_time, remote_node, b.t, ''::text) IS NOT TRUE THEN
      PERFORM pgbisync.record_conflict(table_name, 'update_deleted', key, NULL, b.t, NULL, NULL,
        remote_commit_time, remote_node, 'keep_deleted', policy);
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;
-- The number of conflicts recorded by record_conflict since the last call (and resets it).
CREATE OR REPLACE FUNCTION pgbisync.take_conflicts() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n int := coalesce(nullif(current_setting('pgbisync.conflicts', true), ''), '0')::int;
BEGIN
  PERFORM set_config('pgbisync.conflicts', '0', true);
  RETURN n;
END $$;
-- Commit time of a row version. Unknown (written while track_commit_timestamp was off, or its commit
-- timestamp truncated) is the Unix epoch: the time the snapshot sends such a row with, so every node
-- compares it the same way, equal times broken by the node name (src/conflicts/policy.ts).
CREATE OR REPLACE FUNCTION pgbisync.version_time(x xid) RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT coalesce(pg_xact_commit_timestamp(x), 'epoch'::timestamptz)
$$;
-- The source node of a pgbisync origin: pgbisync_<source>@<target>, or pgbisync_<source> as earlier
-- versions named it; NULL for any other origin.
CREATE OR REPLACE FUNCTION pgbisync.origin_node(roname text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN roname LIKE 'pgbisync\\_%' THEN split_part(substr(roname, 10), '@', 1) END
$$;
-- version_node reads the name as origin_node does, inline: it runs for every row a guard compares.
-- Keep the roname condition: without it, PostgreSQL 15 with enable_seqscan off (the applier's session)
-- took ~27 ms per call (measured on 1,200 rows: 32.7 s without it, 3.9 ms with it).
CREATE OR REPLACE FUNCTION pgbisync.version_node(x xid, local_node text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    (SELECT split_part(substr(o.roname, 10), '@', 1) FROM pg_replication_origin o
      WHERE o.roident = (pg_xact_commit_timestamp_origin(x)).roident AND o.roname LIKE 'pgbisync\\_%'),
    local_node)
$$;
`;

export async function ensurePgbisyncSchema(db: Queryable): Promise<void> {
  await db.query(PGBISYNC_SCHEMA_SQL);
}
