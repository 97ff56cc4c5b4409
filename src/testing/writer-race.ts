/**
 * The applier's writer against a race with a local transaction on the target (db2 of the test's
 * databases): what the writer's and the partitioned target's pg tests share.
 */
import assert from 'node:assert/strict';
import { newPgClient } from '../pg/client.ts';
import { describeError, ErrorCode, RetryableError } from '../runtime/errors.ts';
import type { ApplyTransaction } from '../sink/apply-model.ts';
import { TransactionWriter } from '../sink/transaction-writer.ts';
import { waitFor } from './sync-fixture.ts';
import { nodeOfDatabase, type TestDatabases } from './test-databases.ts';

/** A writer applying source `src` into `url` (node named after its database), last-writer-wins. */
export function writerFor(url: string): TransactionWriter {
  return new TransactionWriter({
    url,
    targetNode: nodeOfDatabase(url),
    sourceNode: 'src',
    policyFor: () => ({ policy: 'last-writer-wins' }),
  });
}

/**
 * Applies `txn` while a local transaction runs `localSql` and commits once the applier waits on it;
 * the apply fails with a serialization failure whose message matches `reason`.
 */
export async function raceLocal(
  dbs: TestDatabases,
  localSql: string,
  txn: ApplyTransaction,
  reason: RegExp,
): Promise<void> {
  const local = newPgClient({ connectionString: dbs.db2, application_name: 'local-writer' });
  await local.connect();
  const writer = writerFor(dbs.db2);
  try {
    await local.query('BEGIN');
    await local.query(localSql);
    await writer.open();
    const applying = writer.apply([txn]);
    applying.catch(() => undefined);
    await waitFor('the applier waits on the local transaction', async () => {
      const r = await dbs.sql2(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
      );
      return r.rows[0].n > 0;
    });
    await local.query('COMMIT');
    await assert.rejects(applying, (error: unknown) => {
      assert.ok(error instanceof RetryableError, String(error));
      assert.equal(error.code, ErrorCode.APPLY_CONCURRENT);
      assert.match(describeError(error), reason);
      return true;
    });
  } finally {
    await writer.close();
    await local.end();
  }
}

/** Applies `txn` with a fresh writer (as the supervisor does after a retryable failure). */
export async function applyAgain(dbs: TestDatabases, txn: ApplyTransaction): Promise<unknown> {
  const writer = writerFor(dbs.db2);
  try {
    await writer.open();
    return await writer.apply([txn]);
  } finally {
    await writer.close();
  }
}
