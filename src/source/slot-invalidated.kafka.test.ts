/**
 * A slot the server invalidated (max_slot_wal_keep_size): while its capture is stopped, the slot falls
 * behind the limit (status and doctor warn: wal_status unreserved), a checkpoint invalidates it
 * (wal_status lost) and START_REPLICATION fails with SQLSTATE 55000 for good. The capture must block with
 * PGB2005 and the resync fix instead of restarting forever; status is unhealthy. `resync`, asked for
 * while run is stopped this time (the CLI test asks while it runs), has the next run replace the slot
 * and bring the changes whose WAL was lost to the other node.
 *
 * max_slot_wal_keep_size is a server setting: set on db1 for this test (Kafka suites run one file at a
 * time) and reset afterwards, also when the test fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SyncRunner } from '../daemon/sync-runner.ts';
import { runDoctor } from '../operate/doctor.ts';
import { resync } from '../operate/resync.ts';
import { setup, teardown } from '../operate/setup.ts';
import { readStatus } from '../operate/status.ts';
import { ReplicationConnection } from '../pg/replication/replication-connection.ts';
import { ErrorCode, type FatalError } from '../runtime/errors.ts';
import { startSync, syncConfig, tableRows, waitFor, waitForStreaming } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const captureOf = (runner: SyncRunner, node: string) => runner.states.get(`capture ${node}`);

test('an invalidated slot blocks its capture with the resync fix; resync replaces it', async () => {
  await using dbs = await createTestDatabases();
  const ddl = 'CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  const config = syncConfig(dbs, ['public.items']);
  const [a, b] = config.nodes.map((n) => n.name) as [string, string];
  const slot = `pgbisync_${a}`;
  await setup(config);
  {
    await using sync = await startSync(config);
    await waitForStreaming(config, [dbs.sql1, dbs.sql2]);
    await dbs.sql1(`INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g`);
    await waitFor('rows on b', async () => (await tableRows(dbs.sql2, 'items')).length === 10);
    await sync.stop();
  }
  const walStatus = async () =>
    (await dbs.sql1('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows[0]
      ?.wal_status as string | undefined;
  try {
    await dbs.sql1("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await dbs.sql1('SELECT pg_reload_conf()');
    // WAL in new segments while the slot is inactive: it falls behind the 1 MB it may keep...
    for (let i = 0; i < 5 && (await walStatus()) !== 'unreserved'; i++) {
      await dbs.sql1(`INSERT INTO items VALUES (${1000 + i}, 'lost wal') ON CONFLICT DO NOTHING`);
      await dbs.sql1('SELECT pg_switch_wal()');
    }
    assert.equal(await walStatus(), 'unreserved');
    // ...which status and doctor warn of before it is too late.
    const warned = await readStatus(config);
    assert.ok(warned.healthy, JSON.stringify(warned));
    const toB = warned.directions.find((d) => d.source === a)!;
    assert.match(toB.warnings.join('\n'), /wal_status unreserved.*fix: let the capture of .* catch up/);
    const doctorWarn = (await runDoctor(config)).checks.find((c) => c.node === a && c.check === 'slot');
    assert.equal(doctorWarn?.status, 'warn', JSON.stringify(doctorWarn));
    // A checkpoint removes the WAL the slot still needed: the slot is invalidated.
    for (let i = 0; i < 5 && (await walStatus()) !== 'lost'; i++) {
      await dbs.sql1(`INSERT INTO items VALUES (${1100 + i}, 'lost wal') ON CONFLICT DO NOTHING`);
      await dbs.sql1('SELECT pg_switch_wal()');
      await dbs.sql1('CHECKPOINT');
    }
    assert.equal(await walStatus(), 'lost');
  } finally {
    await dbs.sql1('ALTER SYSTEM RESET max_slot_wal_keep_size');
    await dbs.sql1('SELECT pg_reload_conf()');
  }
  // What the server says to a START_REPLICATION on it: 55000, for good.
  const conn = await ReplicationConnection.connect(dbs.db1, 'test-invalidated');
  try {
    conn.start({ slot, publications: [`pgbisync_${a}`], startLsn: 0n });
    await assert.rejects(
      async () => {
        for await (const _ of conn.batches(AbortSignal.timeout(10_000))) {
          // nothing arrives
        }
      },
      (error: Error) => (error.cause as { code?: string }).code === '55000',
    );
  } finally {
    await conn.close();
  }

  {
    await using sync = await startSync(config);
    await waitFor(
      `a's capture blocked with PGB2005 (state: ${JSON.stringify(captureOf(sync.runner, a))})`,
      async () => {
        const s = captureOf(sync.runner, a);
        return s?.state === 'blocked' && s.code === 'PGB2005';
      },
    );
    const blocked = captureOf(sync.runner, a)!;
    assert.match(
      blocked.lastError ?? '',
      new RegExp(`replication slot ${slot} was invalidated by the server \\(wal_status lost`),
    );
    assert.match(blocked.fix ?? '', new RegExp(`pgbisync resync ${a}`));
    // It stays blocked (retried, never reported as a transient failure), and b -> a runs on.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(captureOf(sync.runner, a)?.state, 'blocked');
    assert.equal(captureOf(sync.runner, b)?.state, 'running');
    const sick = await readStatus(config);
    assert.equal(sick.healthy, false);
    assert.match(
      sick.directions.find((d) => d.source === a)!.problems.join('\n'),
      new RegExp(`was invalidated.*fix: run \`pgbisync resync ${a}\``),
    );
    assert.equal(sick.directions.find((d) => d.source === a)!.slot.walStatus, 'lost');
    const doctorFail = (await runDoctor(config)).checks.find((c) => c.node === a && c.check === 'slot');
    assert.equal(doctorFail?.status, 'FAIL', JSON.stringify(doctorFail));

    await sync.stop();
  }
  // The fix asked for while run is stopped. Waiting for it gives up when nothing moves (exit 1)...
  const lines: string[] = [];
  await assert.rejects(
    resync(config, a, { wait: true, stallTimeoutMs: 1500, pollMs: 200, onProgress: (l) => lines.push(l) }),
    (error: FatalError) =>
      error.code === ErrorCode.RESYNC_STALLED &&
      /the capture of .* did not start the copy within 1.5 s/.test(error.message) &&
      /the request stands/.test(error.hint ?? ''),
  );
  assert.match(lines.join('\n'), /re-copy requested at .*waiting for the capture of .* to take the request/s);
  // ...and the request stands: asked again, it is followed, not made anew; the next run makes the copy.
  lines.length = 0;
  const asked = await resync(config, a, {
    wait: false,
    stallTimeoutMs: 60_000,
    onProgress: (l) => lines.push(l),
  });
  assert.equal(asked.applied, false);
  assert.match(
    lines.join('\n'),
    /a re-copy requested at .* is pending: following it.*copies its tables at its next start/s,
  );
  const pending = (await readStatus(config)).directions.find((d) => d.source === a)!;
  assert.match(pending.problems.join('\n'), /was invalidated .*\(a resync was requested at /);
  {
    await using sync = await startSync(config);
    // The rows whose WAL was lost reach b, and the nodes are equal.
    await waitFor('b equals a', async () => {
      return (
        JSON.stringify(await tableRows(dbs.sql1, 'items')) ===
        JSON.stringify(await tableRows(dbs.sql2, 'items'))
      );
    });
    assert.ok((await dbs.sql2("SELECT count(*)::int AS n FROM items WHERE v = 'lost wal'")).rows[0].n > 0);
    await waitFor('status healthy, the request cleared', async () => {
      const status = await readStatus(config);
      return status.healthy && status.directions.every((d) => d.warnings.length === 0);
    });
    assert.equal(await walStatus(), 'reserved');
    assert.equal(captureOf(sync.runner, a)?.state, 'running');
    // a streams again.
    await dbs.sql1("INSERT INTO items VALUES (5000, 'after')");
    await waitFor(
      'a -> b streams again',
      async () => (await dbs.sql2('SELECT 1 FROM items WHERE id = 5000')).rowCount === 1,
    );
    await sync.stop();
  }
  await teardown(config, { keepTopics: false });
});
