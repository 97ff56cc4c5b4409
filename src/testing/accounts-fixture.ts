/**
 * The accounts table of the stale-record tests (src/sink/stale-part.kafka.test.ts,
 * src/sink/late-run.kafka.test.ts): rows 1-4 with balance 100 on node a, set up for sync both ways, and
 * what those tests do with the records a real capture left on a's topic (read a row from one, send some
 * again as a stopped or fenced capture would have).
 */

import type { Config } from '../config/schema.ts';
import { kafkaOptions } from '../kafka/kafka-options.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import type { InRecord } from '../kafka/records.ts';
import { serverName } from '../kafka/topics.ts';
import { setup } from '../operate/setup.ts';
import { syncConfig } from './sync-fixture.ts';
import type { TestDatabases } from './test-databases.ts';

export interface Accounts {
  readonly config: Config;
  /** Node a's topic. */
  readonly topic: string;
  /** A row's balance on node b (undefined: no row). */
  balanceOnB(id: number): Promise<number | undefined>;
}

/** Makes the table on both nodes, rows 1-4 (balance 100) on a, and runs setup. */
export async function accountsOnBothNodes(dbs: TestDatabases): Promise<Accounts> {
  const ddl = 'CREATE TABLE public.acct (id int PRIMARY KEY, balance int NOT NULL)';
  await dbs.sql1(ddl);
  await dbs.sql2(ddl);
  await dbs.sql1('INSERT INTO acct SELECT g, 100 FROM generate_series(1, 4) g');
  const config = syncConfig(dbs, ['public.acct']);
  await setup(config);
  return {
    config,
    topic: serverName(config, config.nodes[0]!.name),
    balanceOnB: async (id) => (await dbs.sql2(`SELECT balance FROM acct WHERE id = ${id}`)).rows[0]?.balance,
  };
}

/** The row after a change event (row batches of the initial copy and tombstones have none). */
export function accountAfter(record: InRecord): { id: number; balance: number } | undefined {
  if (record.value === null) return undefined;
  const v = JSON.parse(record.value.toString()) as {
    payload?: { after?: { id: number; balance: number } | null };
  };
  return v.payload?.after ?? undefined;
}

/** Produces `records` to `topic` again, headers included. */
export async function sendAgain(config: Config, topic: string, records: readonly InRecord[]): Promise<void> {
  const producer = new KafkaProducer(kafkaOptions(config, 'send-again'));
  try {
    await producer.send(
      records.map((r) => ({ topic, key: r.key, value: r.value, headers: Object.fromEntries(r.headers) })),
    );
  } finally {
    await producer.close();
  }
}
