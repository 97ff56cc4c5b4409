/**
 * Tombstone pruning on real servers (./tombstone-pruner.ts): a tombstone goes once every direction of
 * the mesh applied past it (not before: a direction that applied nothing, or one behind it, holds it),
 * on every node, and a delayed change older than a pruned tombstone is still refused, by the table's
 * horizon. The directions are applied with the transaction writer, as `run` applies them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import type { ApplyTransaction, RowChange } from '../sink/apply-model.ts';
import { TransactionWriter } from '../sink/transaction-writer.ts';
import { syncConfig } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';
import { pruneTombstonesOnce } from './tombstone-pruner.ts';

const S = 1_000_000n;

const row = (id: number, v: string): RowChange => ({
  op: 'c',
  schema: 'public',
  table: 'item',
  after: { id: String(id), v },
});
const del = (id: number): RowChange => ({
  op: 'd',
  schema: 'public',
  table: 'item',
  beforeKey: { id: String(id) },
});

test('a tombstone is pruned once every direction applied past it; an older delayed change is still refused', async () => {
  await using dbs = await createTestDatabases('prune');
  const config = syncConfig(dbs, ['public.item'], 'conflicts: { tombstoneRetentionMs: 0 }');
  const [a, b] = [`${dbs.name}_a`, `${dbs.name}_b`];
  const urls = { [a]: dbs.db1, [b]: dbs.db2 };
  for (const url of [dbs.db1, dbs.db2]) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('CREATE TABLE public.item (id int PRIMARY KEY, v text NOT NULL)');
    await ensurePgbisyncSchema(c);
    await c.query(
      "CREATE TRIGGER pgbisync_tombstone AFTER DELETE ON public.item FOR EACH ROW EXECUTE FUNCTION pgbisync.record_tombstone('id')",
    );
    await c.end();
  }
  let lsn = 0x100;
  /** Applies one transaction of `source` into `target`, committed (at the source) at `us`. */
  const apply = async (source: string, target: string, us: bigint, changes: RowChange[]) => {
    const w = new TransactionWriter({
      url: urls[target]!,
      sourceNode: source,
      targetNode: target,
      policyFor: () => ({ policy: 'last-writer-wins' }),
    });
    try {
      await w.open();
      lsn++;
      const txn: ApplyTransaction = {
        sourceNode: source,
        commitLsn: BigInt(lsn),
        commitTimeUs: us,
        lsnOrdered: true,
        snapshot: false,
        changes,
        topic: `t.${source}`,
        partition: 0,
        lastOffset: BigInt(lsn),
      };
      return await w.apply([txn]);
    } finally {
      await w.close();
    }
  };
  const tombstones = async (sql: typeof dbs.sql1) =>
    (await sql("SELECT key->>'id' AS id FROM pgbisync.tombstones ORDER BY 1")).rows.map((r) => r.id);

  // a deletes 1 locally (its tombstone, dated T1), and the delete reaches b.
  await dbs.sql1("INSERT INTO item VALUES (1, 'a'), (2, 'a')");
  await dbs.sql1('DELETE FROM item WHERE id = 1');
  const t1 = BigInt(
    (
      await dbs.sql1(
        'SELECT (extract(epoch FROM pgbisync.version_time(xmin)) * 1000000)::bigint::text AS us FROM pgbisync.tombstones',
      )
    ).rows[0].us,
  );
  await apply(a, b, t1, [row(2, 'a'), del(1)]);
  assert.deepEqual(await tombstones(dbs.sql1), ['1']);
  assert.deepEqual(await tombstones(dbs.sql2), ['1']);

  // b -> a has applied nothing yet: b may still send anything, nothing is pruned.
  const none = await pruneTombstonesOnce(config);
  assert.equal(none.before, undefined);
  assert.deepEqual(await tombstones(dbs.sql1), ['1']);

  // b -> a applied up to T1 + 1 s, a -> b only up to T1: the tombstone is not older than every position.
  await apply(b, a, t1 + S, [row(5, 'b')]);
  const held = await pruneTombstonesOnce(config);
  assert.equal(held.before, new Date(Number(t1 / 1000n)).toISOString());
  assert.deepEqual(Object.fromEntries(held.pruned), { [a]: 0, [b]: 0 });
  assert.deepEqual(await tombstones(dbs.sql2), ['1']);

  // a -> b applied past it too: pruned on both nodes, and the tables' horizon recorded.
  await apply(a, b, t1 + 2n * S, [row(6, 'a')]);
  const round = await pruneTombstonesOnce(config);
  assert.deepEqual(Object.fromEntries(round.pruned), { [a]: 1, [b]: 1 });
  assert.deepEqual(await tombstones(dbs.sql1), []);
  assert.deepEqual(await tombstones(dbs.sql2), []);
  const horizonMs = Number((t1 + S) / 1000n);
  for (const sql of [dbs.sql1, dbs.sql2]) {
    const h = await sql('SELECT table_name, pruned_before FROM pgbisync.tombstone_horizon');
    assert.deepEqual(
      h.rows.map((r) => [r.table_name, r.pruned_before.getTime()]),
      [['public.item', horizonMs]],
    );
  }

  // A delayed change of b older than the pruned tombstone (a clock stepped back, a restored backup):
  // refused as the tombstone refused it, and recorded. A newer one goes in.
  const stale = await apply(b, a, t1 - S, [row(1, 'stale')]);
  assert.equal(stale.conflicts, 1);
  assert.equal((await dbs.sql1('SELECT count(*)::int AS n FROM item WHERE id = 1')).rows[0].n, 0);
  const c = await dbs.sql1(
    'SELECT conflict_type, resolution, local_node, local_commit_time, remote_node FROM pgbisync.conflicts WHERE key = \'{"id": 1}\'',
  );
  assert.deepEqual(
    c.rows.map((r) => [
      r.conflict_type,
      r.resolution,
      r.local_node,
      r.local_commit_time.getTime(),
      r.remote_node,
    ]),
    [['update_deleted', 'keep_deleted', null, horizonMs, b]],
  );
  // So is each row of a delayed transaction of several (the statement asks once whether the horizon
  // beats it, then row by row).
  const staleRows = await apply(b, a, t1 - S, [row(30, 'stale'), row(31, 'stale')]);
  assert.equal(staleRows.conflicts, 2);
  assert.equal((await dbs.sql1('SELECT count(*)::int AS n FROM item WHERE id IN (30, 31)')).rows[0].n, 0);
  await apply(b, a, t1 + 3n * S, [row(1, 'new')]);
  assert.deepEqual((await dbs.sql1('SELECT v FROM item WHERE id = 1')).rows, [{ v: 'new' }]);
});
