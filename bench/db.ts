/**
 * The benchmark's databases: one `bench` database per server, recreated for every scenario so that each
 * starts from empty tables, no slot, no subscription and no pgbisync objects.
 *
 * Tables (the same on both servers):
 * - bulk:   ~150-byte rows written by the bulk phase;
 * - steady: ~1 KB rows written by the steady phase (insert/update/delete); `seq` numbers every change
 *           and `src_ts` is the source's clock when the change was written, right before its commit;
 * - marker: one row per "everything before this is written" point; commit order makes a marker visible
 *           on the target only after every earlier transaction of the same source;
 * - snap:   the snapshot comparison's table (filled only there);
 * - huge:   the huge-transaction scenario's 5-column table (filled only there).
 * Load generators are server-side procedures (COMMIT per transaction), so the source takes changes much
 * faster than any replication applies them and the client costs no CPU per change.
 */
import pg from 'pg';

export const BENCH_DATABASE = 'bench';

export const TABLES_SQL = `
CREATE TABLE bulk (id bigint PRIMARY KEY, grp int NOT NULL, ts timestamptz NOT NULL, payload text NOT NULL);
CREATE TABLE steady (id bigint PRIMARY KEY, seq bigint NOT NULL, src_ts timestamptz NOT NULL, payload text NOT NULL);
CREATE INDEX steady_seq ON steady (seq);
CREATE TABLE marker (id bigint PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE snap (id bigint PRIMARY KEY, grp int NOT NULL, ts timestamptz NOT NULL, payload text NOT NULL);
CREATE TABLE huge (id bigint PRIMARY KEY, a int NOT NULL, b bigint NOT NULL, c text NOT NULL, d timestamptz NOT NULL);`;

/** Installed on every server (both are sources in the two-way run). */
export const PROCEDURES_SQL = `
CREATE FUNCTION bench_payload(n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'row ' || n || ' ' || repeat('x', 70)
$$;
CREATE PROCEDURE bench_single(first bigint, n int) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 0 .. n - 1 LOOP
    INSERT INTO bulk VALUES (first + i, 0, clock_timestamp(), bench_payload(first + i));
    COMMIT;
  END LOOP;
END $$;
CREATE PROCEDURE bench_multi(first bigint, txns int, rows_per_txn int) LANGUAGE plpgsql AS $$
BEGIN
  FOR t IN 0 .. txns - 1 LOOP
    INSERT INTO bulk
      SELECT first + t::bigint * rows_per_txn + g, 1, clock_timestamp(), bench_payload(first + t::bigint * rows_per_txn + g)
        FROM generate_series(0, rows_per_txn - 1) g;
    COMMIT;
  END LOOP;
END $$;
-- Changes at a fixed rate, one per transaction, in the cycle insert, insert, update, update, delete
-- (40/40/20): ids [id0, next_insert) minus the deleted prefix always exist. Returns the number written.
-- The updated row is drawn once per change (random() in the WHERE clause would be drawn per scanned
-- row: a sequential scan of the whole table, updating zero, one or several rows).
CREATE PROCEDURE bench_steady(rate float8, seconds float8, seq0 bigint, id0 bigint, INOUT changes bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
  elapsed float8;
  due bigint;
  next_insert bigint := id0;
  next_delete bigint := id0;
  target bigint;
  pad text;
BEGIN
  changes := 0;
  LOOP
    elapsed := extract(epoch FROM clock_timestamp() - t0);
    EXIT WHEN elapsed >= seconds;
    due := floor(elapsed * rate)::bigint;
    WHILE changes < due LOOP
      pad := repeat(md5((seq0 + changes)::text), 31);
      CASE changes % 5
        WHEN 0, 1 THEN
          INSERT INTO steady VALUES (next_insert, seq0 + changes, clock_timestamp(), pad);
          next_insert := next_insert + 1;
        WHEN 2, 3 THEN
          target := next_delete + floor(random() * (next_insert - next_delete))::bigint;
          UPDATE steady SET seq = seq0 + changes, src_ts = clock_timestamp(), payload = pad WHERE id = target;
        ELSE
          DELETE FROM steady WHERE id = next_delete;
          next_delete := next_delete + 1;
      END CASE;
      COMMIT;
      changes := changes + 1;
    END LOOP;
    PERFORM pg_sleep(0.0005);
  END LOOP;
END $$;`;

/** A bench database URL on the server of `serverUrl`. */
export function benchUrl(serverUrl: string, database = BENCH_DATABASE): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function connect(url: string, applicationName = 'bench-client'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  return client;
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Drops and creates the bench database on a server with the bench tables and procedures. Removes
 * first what would block the drop or leak into the next scenario: subscriptions in it, logical slots
 * on it, and pgbisync's replication origins (cluster-wide).
 */
export async function recreateBenchDatabase(serverUrl: string): Promise<void> {
  const exists = await withClient(
    serverUrl,
    async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [BENCH_DATABASE])).rowCount,
  );
  if (exists === 1) {
    await withClient(benchUrl(serverUrl), async (c) => {
      const subs = await c.query<{ subname: string }>(
        'SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())',
      );
      for (const { subname } of subs.rows) {
        const name = pg.escapeIdentifier(subname);
        await c.query(`ALTER SUBSCRIPTION ${name} DISABLE`);
        await c.query(`ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`);
        await c.query(`DROP SUBSCRIPTION ${name}`);
      }
    });
  }
  await withClient(serverUrl, async (c) => {
    await c.query(
      `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
        WHERE database = $1 AND active_pid IS NOT NULL`,
      [BENCH_DATABASE],
    );
    // A terminated walsender releases its slot asynchronously.
    for (let attempt = 0; ; attempt++) {
      try {
        await c.query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1',
          [BENCH_DATABASE],
        );
        break;
      } catch (error) {
        if (attempt >= 50) throw error;
        await sleep(100);
      }
    }
    await c.query(
      "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE 'pgbisync\\_%'",
    );
    await c.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${BENCH_DATABASE}`);
  });
  await withClient(benchUrl(serverUrl), async (c) => {
    await c.query(TABLES_SQL);
    await c.query(PROCEDURES_SQL);
  });
}

/** Waits until the marker row `id` is visible; returns performance.now() of the poll that saw it. */
export async function waitForMarker(
  client: pg.Client,
  id: number,
  timeoutMs: number,
  pollMs = 5,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await client.query('SELECT 1 FROM marker WHERE id = $1', [id]);
    const now = performance.now();
    if (r.rowCount === 1) return now;
    if (now > deadline) throw new Error(`marker ${id} not visible after ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

/** Row count and an order-independent content hash of a table. */
export async function tableDigest(client: pg.Client, table: string): Promise<string> {
  const r = await client.query<{ n: string; h: string }>(
    `SELECT count(*)::text AS n, coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text AS h FROM ${pg.escapeIdentifier(table)} t`,
  );
  return `${r.rows[0]!.n} rows, hash ${r.rows[0]!.h}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
