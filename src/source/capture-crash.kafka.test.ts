/**
 * Capture under crashes: a writer commits 20,000 single-row transactions on a while `pgbisync run` is
 * SIGKILLed and restarted 5 times. Afterwards every committed row is in Kafka (at least once), first
 * streamed in commit order, and at every kill the slot's confirmed_flush_lsn covered only transactions that
 * Kafka already held at that moment.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { decodeRecord } from '../events/decode.ts';
import { KafkaAdmin } from '../kafka/admin.ts';
import { KafkaConsumer } from '../kafka/consumer.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { serverName } from '../kafka/topics.ts';
import { commitLsnOf as commitLsnHeader } from '../kafka/wire-headers.ts';
import { setup, teardown } from '../operate/setup.ts';
import { parseLsn } from '../pg/lsn.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig, waitFor } from '../testing/sync-fixture.ts';
import { createTestDatabases } from '../testing/test-databases.ts';

const ROWS = Number(process.env.PGBISYNC_TEST_CAPTURE_ROWS ?? 20_000);
const KILLS = 5;

test(`${ROWS} committed changes with ${KILLS} SIGKILLs all reach Kafka, in commit order, never acked early`, async () => {
  await using dbs = await createTestDatabases();
  await dbs.sql1('CREATE TABLE public.ev (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');
  await dbs.sql2('CREATE TABLE public.ev (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');
  const config = syncConfig(dbs, ['public.ev']);
  const a = config.nodes[0]!.name;
  const topic = serverName(config, a);
  const configPath = writeRunConfig(config, ['public.ev']);
  await setup(config);
  const admin = new KafkaAdmin(kafkaOptions(config, 'test'));
  const writer = new pg.Client({ connectionString: dbs.db1 });
  await writer.connect();
  const logPath = (n: number) => join(dirname(configPath), `run-${n}.log`);
  let child = startRun(configPath, logPath(0));
  const slotActive = async () =>
    (await dbs.sql1('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [`pgbisync_${a}`]))
      .rows[0]?.active === true;
  const samples: { flush: bigint; end: bigint }[] = [];
  const kills: { end: bigint }[] = [];
  try {
    // Every row is to be streamed: write only once the (empty) initial snapshot is done.
    await waitFor('the capture of a to stream', async () => {
      const r = await dbs.sql1(
        'SELECT snapshot_done_at IS NOT NULL AS done FROM pgbisync.capture_state WHERE node = $1',
        [a],
      );
      return r.rows[0]?.done === true && (await slotActive());
    });
    let next = 1;
    let killAt = Date.now() + 1500;
    while (next <= ROWS || kills.length < KILLS) {
      if (next <= ROWS) {
        await writer.query('INSERT INTO ev (id) VALUES ($1)', [next]); // one transaction each (autocommit)
        next++;
      } else {
        await new Promise((r) => setTimeout(r, 50));
      }
      // Kill only a capture that is streaming (on a loaded machine a restart takes a while).
      if (Date.now() >= killAt && kills.length < KILLS && (await slotActive())) {
        await killHard(child);
        // What the slot had confirmed and what Kafka held when the capture died.
        const flush = (
          await dbs.sql1(
            'SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1',
            [`pgbisync_${a}`],
          )
        ).rows[0]?.l as string | undefined;
        const end = (await admin.endOffsets(topic)).get(0) ?? 0n;
        if (flush !== undefined) samples.push({ flush: parseLsn(flush), end });
        kills.push({ end });
        child = startRun(configPath, logPath(kills.length));
        killAt = Date.now() + 300 + Math.random() * 700;
      }
    }
    // Wait until the slot confirmed every commit (Kafka acknowledged all of them), then read the whole
    // topic up to its end: a row seen in a snapshot re-read may still be streamed later.
    const lastLsn = parseLsn((await dbs.sql1('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
    await waitFor(
      'the slot to confirm every commit',
      async () => {
        const flush = (
          await dbs.sql1(
            'SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1',
            [`pgbisync_${a}`],
          )
        ).rows[0]?.l as string | null | undefined;
        return typeof flush === 'string' && parseLsn(flush) >= lastLsn;
      },
      120_000,
    );
    const endOffset = (await admin.endOffsets(topic)).get(0) ?? 0n;
    /** Rows in the order of the first change event streamed for each. */
    const streamed: number[] = [];
    const streamedSet = new Set<number>();
    const commitLsnOf = new Map<number, bigint>();
    const offsetsOf = new Map<number, bigint>();
    const seen = new Set<number>();
    const consumer = new KafkaConsumer({
      ...kafkaOptions(config, 'test-reader'),
      groupId: `reader-${dbs.name}`,
      topics: [topic],
      startOffsets: [],
      maxWaitMs: 100,
    });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 90_000);
    try {
      for await (const batch of consumer.batches(controller.signal)) {
        for (const r of batch) {
          if (r.value === null) continue;
          const event = decodeRecord(r.key, r.value);
          if (event.kind !== 'change' || event.op === 't') continue;
          const id = Number(event.after?.get('id'));
          if (!seen.has(id)) {
            seen.add(id);
            offsetsOf.set(id, r.offset);
          }
          if (event.op === 'c' && !streamedSet.has(id)) {
            streamedSet.add(id);
            streamed.push(id);
          }
          const lsn = commitLsnHeader(r.headers);
          if (lsn !== undefined) commitLsnOf.set(id, lsn);
        }
        if ((batch.at(-1)?.offset ?? -1n) >= endOffset - 1n) break;
      }
    } finally {
      clearTimeout(timer);
      await consumer.close();
    }
    assert.equal(seen.size, ROWS, 'every committed row is in Kafka');
    // Every row was streamed, first in commit order (replays after a kill repeat a suffix, never reorder).
    const outOfOrder = streamed.findIndex((id, i) => id !== i + 1);
    if (outOfOrder >= 0) {
      const around = streamed
        .slice(Math.max(0, outOfOrder - 3), outOfOrder + 4)
        .map((id) => `${id}@${offsetsOf.get(id)}`);
      assert.fail(
        `first streamed in commit order: position ${outOfOrder} holds row ${streamed[outOfOrder]} (row@offset of first sight: ${around.join(' ')}); kills at topic ends ${kills.map((k) => k.end).join(', ')}; logs in ${dirname(configPath)}`,
      );
    }
    assert.equal(streamed.length, ROWS, 'every row was streamed');
    assert.equal(samples.length, KILLS, 'a flush position sampled at every kill');
    for (const s of samples) {
      for (const [id, lsn] of commitLsnOf) {
        if (lsn <= s.flush) {
          assert.ok(
            offsetsOf.get(id)! < s.end,
            `row ${id} (commit ${lsn}) was confirmed to PostgreSQL before Kafka held it`,
          );
        }
      }
    }
  } finally {
    await killHard(child);
    await writer.end();
    await admin.close();
  }
  await teardown(config, { keepTopics: false });
});
