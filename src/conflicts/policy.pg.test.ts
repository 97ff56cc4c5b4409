/**
 * Both forms of the conflict policy against one table of cases (../testing/conflict-cases.ts): the SQL
 * guard evaluated by a real server (`SELECT <guard>` over parameters, as the applier's statements pass
 * the incoming commit time and source), the same guard as the applier's conflict functions evaluate it
 * (pgbisync.incoming_wins), and the TypeScript twin. Each must give the expected result.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ensurePgbisyncSchema } from '../pg/pgbisync-schema.ts';
import { CONFLICT_CASES, caseTitle, sqlTime } from '../testing/conflict-cases.ts';
import { createTestDatabases, type TestDatabases } from '../testing/test-databases.ts';
import { incomingWins, incomingWinsSql } from './policy.ts';

let db: pg.Client;
let dbs: TestDatabases;

before(async () => {
  dbs = await createTestDatabases('policy_cases');
  db = new pg.Client({ connectionString: dbs.db1 });
  await db.connect();
  await ensurePgbisyncSchema(db); // pgbisync.incoming_wins
});

after(async () => {
  await db.end();
  await dbs[Symbol.asyncDispose]();
});

for (const c of CONFLICT_CASES) {
  test(caseTitle(c), async () => {
    // The existing version's time and node typed as pgbisync.version_time / version_node return them.
    const guard = incomingWinsSql(c.policy, 'v.ts', 'v.src', 'v.time', 'v.node');
    const values = '$1::text AS ts, $2::text AS src, $3::timestamptz AS time, $4::text AS node';
    const r = await db.query<{ wins: boolean }>(`SELECT ${guard} AS wins FROM (SELECT ${values}) v`, [
      sqlTime(c.incoming),
      c.incoming.node,
      sqlTime(c.existing),
      c.existing.node,
    ]);
    assert.equal(r.rows[0]?.wins, c.wins, `SQL: ${guard}`);
    assert.equal(incomingWins(c.policy, c.incoming, c.existing), c.wins, 'TypeScript');
    // The guard as the applier's conflict functions evaluate it (pgbisync.incoming_wins).
    const f = await db.query<{ wins: boolean }>(
      'SELECT pgbisync.incoming_wins($1, $2::timestamptz, $3, $4::timestamptz, $5) AS wins',
      [
        incomingWinsSql(c.policy, '$1', '$2', '$3', '$4'),
        sqlTime(c.incoming),
        c.incoming.node,
        sqlTime(c.existing),
        c.existing.node,
      ],
    );
    assert.equal(f.rows[0]?.wins, c.wins, 'pgbisync.incoming_wins');
  });
}

test("an unknown commit time is the Unix epoch in SQL, the TypeScript form's null", async () => {
  // The cases stand for an unknown time as the epoch: check that pgbisync.version_time gives it.
  await using dbs = await createTestDatabases('policy');
  const client = new pg.Client({ connectionString: dbs.db1 });
  await client.connect();
  try {
    await ensurePgbisyncSchema(client);
    // xid 2 is FrozenTransactionId, xid 1 BootstrapTransactionId: neither has a commit timestamp.
    await client.query("SET TimeZone = 'UTC'");
    const epoch = '1970-01-01 00:00:00+00';
    const u = await client.query<{ frozen: string; bootstrap: string }>(
      `SELECT pgbisync.version_time('2'::xid)::text AS frozen, pgbisync.version_time('1'::xid)::text AS bootstrap`,
    );
    assert.deepEqual(u.rows[0], { frozen: epoch, bootstrap: epoch });
  } finally {
    await client.end();
  }
});
