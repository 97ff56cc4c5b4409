/**
 * Capture under crashes: a writer commits 20,000 single-row transactions on a while `pgbisync run` is
 * SIGKILLed and restarted 5 times. Afterwards every committed row is in Kafka (at least once), first
 * seen in commit order, and at every kill the slot's confirmed_flush_lsn covered only transactions that
 * Kafka already held at that moment.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { decodeRecord } from '../events/decode.ts';
import { KafkaAdmin, KafkaConsumer } from '../kafka/client.ts';
import { serverName } from '../kafka/topics.ts';
import { kafkaOptions } from '../operate/kafka-options.ts';
import { setup, teardown } from '../operate/setup.ts';
import { parseLsn } from '../pg/lsn.ts';
import { killHard, startRun, writeRunConfig } from '../testing/run-process.ts';
import { syncConfig } from '../testing/sync-fixture.ts';
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
  let child = startRun(configPath);
  const slotActive = async () =>
    (await dbs.sql1('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [`pgbisync_${a}`]))
      .rows[0]?.active === true;
  const samples: { flush: bigint; end: bigint }[] = [];
  try {
    let next = 1;
    let kills = 0;
    let killAt = Date.now() + 1500;
    while (next <= ROWS || kills < KILLS) {
      if (next <= ROWS) {
        await writer.query('INSERT INTO ev (id) VALUES ($1)', [next]); // one transaction each (autocommit)
        next++;
      } else {
        await new Promise((r) => setTimeout(r, 50));
      }
      // Kill only a capture that is streaming (on a loaded machine a restart takes a while).
      if (Date.now() >= killAt && kills < KILLS && (await slotActive())) {
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
        kills++;
        child = startRun(configPath);
        killAt = Date.now() + 300 + Math.random() * 700;
      }
    }
    // Wait for the capture to publish everything, then read the whole topic.
    const firstSeen: number[] = [];
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
            firstSeen.push(id);
            offsetsOf.set(id, r.offset);
          }
          const lsn = r.headers.get('pgbisync.commit_lsn');
          if (lsn !== undefined) commitLsnOf.set(id, parseLsn(lsn));
        }
        if (seen.size >= ROWS) break;
      }
    } finally {
      clearTimeout(timer);
      await consumer.close();
    }
    assert.equal(seen.size, ROWS, 'every committed row is in Kafka');
    assert.deepEqual(
      firstSeen,
      Array.from({ length: ROWS }, (_, i) => i + 1),
      'first seen in commit order',
    );
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
