/**
 * Re-published transactions are recognised by commit LSN on the source's timeline, not by LSN alone:
 * after a failover to a standby that lagged (or a point-in-time restore) the source's new timeline
 * forks below LSNs the applier already applied from the old one, and reuses them for new transactions
 * (docs/correctness.md, "failover or point-in-time restore of a source"). Checked with plain SQL on the
 * target.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceIdentity } from '../pg/replication/source-identity.ts';
import { BlockedError, ErrorCode } from '../runtime/errors.ts';
import { createTestDatabases, nodeOfDatabase, withPgbisyncSchema } from '../testing/test-databases.ts';
import type { ApplyTransaction } from './apply-model.ts';
import { TransactionWriter } from './transaction-writer.ts';

const T0_US = 1_764_400_000_000_000n;
const SYSTEM = '7581234567890123456';
const TLI1: SourceIdentity = { systemId: SYSTEM, timeline: 1, history: [] };
/** The standby promoted after replaying timeline 1 up to 0/5800 only. */
const TLI2: SourceIdentity = {
  systemId: SYSTEM,
  timeline: 2,
  history: [{ timeline: 1, switchLsn: 0x5800n }],
};
/** Another cluster behind the same node name (a restore into a new cluster). */
const OTHER: SourceIdentity = { systemId: '7581234567890999999', timeline: 1, history: [] };

/** The source node: named after each test's database (set in the test). */
let SOURCE = 'src';
let offset = 0n;
/** A source transaction inserting row `id`, committed at `lsn` on `source`'s timeline. */
function insertAt(lsn: bigint, id: number, source: SourceIdentity | undefined): ApplyTransaction {
  offset += 1n;
  return {
    sourceNode: SOURCE,
    commitLsn: lsn,
    commitTimeUs: T0_US + offset,
    lsnOrdered: true,
    snapshot: false,
    ...(source === undefined ? {} : { source }),
    changes: [{ op: 'c', schema: 'public', table: 'items', after: { id: String(id), n: String(id) } }],
    topic: 'pgbisync.src',
    partition: 0,
    lastOffset: offset,
  };
}

function writerFor(url: string): TransactionWriter {
  return new TransactionWriter({
    url,
    targetNode: nodeOfDatabase(url),
    sourceNode: SOURCE,
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
}

test('a newer source timeline forked below the applied LSN is applied; what both timelines share is still skipped', async () => {
  await using dbs = await createTestDatabases('timeline');
  SOURCE = dbs.name; // replication origins are per cluster: named after the database, dropped with it
  await dbs.sql2('CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)');
  await withPgbisyncSchema(dbs.db2);
  const ids = async () => (await dbs.sql2('SELECT id::int FROM items ORDER BY id')).rows.map((r) => r.id);

  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    // Timeline 1: the old primary's transactions up to 0/6000, applied.
    assert.deepEqual(await writer.apply([insertAt(0x5000n, 1, TLI1), insertAt(0x6000n, 2, TLI1)]), {
      applied: 2,
      skipped: 0,
      conflicts: 0,
    });
    // The promoted standby (timeline 2, forked at 0/5800): a transaction below the fork is one both
    // timelines hold (its capture re-publishes it: skipped); one past the fork, at an LSN below 0/6000
    // that timeline 1 used, is new.
    assert.deepEqual(await writer.apply([insertAt(0x5000n, 101, TLI2), insertAt(0x5900n, 3, TLI2)]), {
      applied: 1,
      skipped: 1,
      conflicts: 0,
    });
    // Timeline 1 re-sent below the fork (a former primary's capture): still skipped.
    assert.deepEqual(await writer.apply([insertAt(0x5000n, 102, TLI1)]), {
      applied: 0,
      skipped: 1,
      conflicts: 0,
    });
  } finally {
    await writer.close();
  }
  assert.deepEqual(await ids(), [1, 2, 3]);
  const row = async () =>
    (
      await dbs.sql2(
        'SELECT commit_lsn::text AS lsn, source_system_id AS sys, source_timeline::int AS tli, source_timeline_history AS history FROM pgbisync.apply_progress',
      )
    ).rows[0];
  assert.deepEqual(await row(), { lsn: '0/5900', sys: SYSTEM, tli: 2, history: '1@0/5800' });

  // A restarted applier reads the identity back with the watermark.
  const again = writerFor(dbs.db2);
  try {
    await again.open();
    assert.deepEqual(
      await again.apply([
        insertAt(0x5900n, 103, TLI2), // re-published: skipped
        insertAt(0x5000n, 104, TLI1), // timeline 1 below the fork: skipped
        insertAt(0x5a00n, 4, TLI2), // new
        insertAt(0x100n, 5, OTHER), // another cluster: its LSNs order nothing of the old one's
        insertAt(0x100n, 105, OTHER), // re-published there: skipped
      ]),
      { applied: 2, skipped: 3, conflicts: 0 },
    );
  } finally {
    await again.close();
  }
  assert.deepEqual(await ids(), [1, 2, 3, 4, 5]);
  assert.deepEqual(await row(), { lsn: '0/100', sys: OTHER.systemId, tli: 1, history: '' });
});

test('records without an identity (an older capture) keep the LSN rule; the first identity is adopted as is', async () => {
  await using dbs = await createTestDatabases('timeline');
  SOURCE = dbs.name; // replication origins are per cluster: named after the database, dropped with it
  await dbs.sql2('CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)');
  await withPgbisyncSchema(dbs.db2);
  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    assert.deepEqual(
      await writer.apply([
        insertAt(0x6000n, 1, undefined),
        insertAt(0x6000n, 101, undefined), // re-published: skipped
        insertAt(0x5000n, 102, TLI1), // the same WAL, now with its identity: skipped by LSN
        insertAt(0x7000n, 2, TLI1),
      ]),
      { applied: 2, skipped: 2, conflicts: 0 },
    );
  } finally {
    await writer.close();
  }
  assert.deepEqual(
    (await dbs.sql2('SELECT id::int FROM items ORDER BY id')).rows.map((r) => r.id),
    [1, 2],
  );
});

test('a progress table set up by an older version (no identity columns) blocks the writer with the fix', async () => {
  await using dbs = await createTestDatabases('timeline');
  SOURCE = dbs.name;
  await withPgbisyncSchema(dbs.db2);
  await dbs.sql2('ALTER TABLE pgbisync.apply_progress DROP COLUMN source_timeline');
  const writer = writerFor(dbs.db2);
  try {
    await assert.rejects(writer.open(), (error: unknown) => {
      assert.ok(error instanceof BlockedError, String(error));
      assert.equal(error.code, ErrorCode.PG_PREREQUISITE);
      assert.match(
        error.message,
        new RegExp(`${dbs.name} lacks pgbisync\\.apply_progress\\.source_timeline:`),
      );
      assert.match(error.hint ?? '', /run `pgbisync setup`/);
      return true;
    });
  } finally {
    await writer.close();
  }
});

test('a source whose WAL went back on its own timeline (a disk snapshot restored) blocks the direction, whatever restarts; a re-sent transaction is still skipped', async () => {
  await using dbs = await createTestDatabases('timeline');
  SOURCE = dbs.name;
  await dbs.sql2('CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)');
  await withPgbisyncSchema(dbs.db2);
  const applied = insertAt(0x6000n, 2, TLI1);
  /** Written after the restore at a WAL position the source had passed, a minute after `applied`. */
  const restored = { ...insertAt(0x5800n, 3, TLI1), commitTimeUs: applied.commitTimeUs + 60_000_000n };
  const wentBack = (error: unknown) => {
    assert.ok(error instanceof BlockedError, String(error));
    assert.equal(error.code, ErrorCode.SOURCE_WENT_BACK);
    assert.match(
      error.message,
      new RegExp(`source ${dbs.name}: a transaction at commit LSN 0/5800 .* 0/6000`),
    );
    assert.match(error.hint ?? '', new RegExp(`pgbisync resync ${dbs.name} --new-slot`));
    return true;
  };
  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    assert.deepEqual(await writer.apply([insertAt(0x5000n, 1, TLI1), applied]), {
      applied: 2,
      skipped: 0,
      conflicts: 0,
    });
    // Re-sent by a restarted capture (its own commit time): skipped as before.
    assert.deepEqual(
      await writer.apply([{ ...insertAt(0x5000n, 101, TLI1), commitTimeUs: applied.commitTimeUs - 1n }]),
      {
        applied: 0,
        skipped: 1,
        conflicts: 0,
      },
    );
    await assert.rejects(writer.apply([restored]), wentBack);
  } finally {
    await writer.close();
  }
  const stored = await dbs.sql2('SELECT watermark_us::text AS us FROM pgbisync.apply_progress');
  assert.deepEqual(
    stored.rows,
    [{ us: String(applied.commitTimeUs) }],
    "the watermark's commit time is kept",
  );
  // A restarted applier reads it back: the same transaction blocks again, nothing of it written.
  const again = writerFor(dbs.db2);
  try {
    await again.open();
    await assert.rejects(again.apply([restored]), wentBack);
  } finally {
    await again.close();
  }
  assert.deepEqual(
    (await dbs.sql2('SELECT id::int FROM items ORDER BY id')).rows.map((r) => r.id),
    [1, 2],
  );
});
