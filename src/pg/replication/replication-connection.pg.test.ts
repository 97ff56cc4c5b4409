/**
 * The replication connection against a real PostgreSQL: a pgoutput slot on a fresh database, transactions
 * streamed and decoded message by message, replication origins (and their server-side filtering on PG 16+),
 * confirm -> confirmed_flush_lsn, resuming after a reconnect, shutdown by signal, failures and keepalives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { RetryableError } from '../../runtime/errors.ts';
import { createTestDatabases, query, type TestDatabases } from '../../testing/test-databases.ts';
import { testEnv } from '../../testing/test-env.ts';
import { formatLsn, parseLsn } from '../lsn.ts';
import type {
  BeginMessage,
  CommitMessage,
  InsertMessage,
  PgoutputMessage,
  RelationMessage,
} from '../pgoutput/messages.ts';
import {
  ReplicationConnection,
  type ReplicationItem,
  type ReplicationItemData,
  type StartReplicationOptions,
} from './replication-connection.ts';

const serverVersionNum = Number(
  (await query(testEnv.db1Url(), 'SHOW server_version_num')).rows[0].server_version_num,
);
/** `origin 'none'` (server-side filtering of changes that came from a replication origin) is PG 16+. */
const HAS_ORIGIN_OPTION = serverVersionNum >= 160_000;

/** Mixed case on purpose: publication_names must be quoted identifiers, not folded to lower case. */
const PUBLICATION = 'Pub_Items';
const text = (s: string) => ({ kind: 'text', text: s }) as const;
const NULL = { kind: 'null' } as const;

interface Fixture {
  readonly dbs: TestDatabases;
  readonly slot: string;
  readonly relationId: number;
}

/** A table, a publication and a pgoutput slot on db1 of a fresh test database. */
async function fixture(dbs: TestDatabases): Promise<Fixture> {
  await dbs.sql1('CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, note text)');
  await dbs.sql1(`CREATE PUBLICATION "${PUBLICATION}" FOR TABLE public.items`);
  const slot = `slot_${dbs.name}`;
  await dbs.sql1(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
  const rel = await dbs.sql1(`SELECT 'public.items'::regclass::oid AS oid`);
  return { dbs, slot, relationId: Number(rel.rows[0].oid) };
}

interface Stream extends AsyncDisposable {
  readonly conn: ReplicationConnection;
}

/** Connects and starts streaming from the slot's confirmed position; closed on dispose. */
async function openStream(
  f: Fixture,
  options: Partial<StartReplicationOptions> = {},
  url = f.dbs.db1,
): Promise<Stream> {
  const conn = await ReplicationConnection.connect(url, `pgbisync-test-${f.dbs.name}`);
  conn.start({ slot: f.slot, publications: [PUBLICATION], startLsn: 0n, ...options });
  return { conn, [Symbol.asyncDispose]: () => conn.close() };
}

interface Read {
  readonly messages: PgoutputMessage[];
  readonly items: ReplicationItem[];
}

/** Reads batches until `done(messages)` holds (checked after each batch); fails after `timeoutMs`. */
async function readUntil(
  conn: ReplicationConnection,
  done: (messages: readonly PgoutputMessage[]) => boolean,
  timeoutMs = 15_000,
): Promise<Read> {
  const read: Read = { messages: [], items: [] };
  for await (const batch of conn.batches(AbortSignal.timeout(timeoutMs))) {
    for (const item of batch) {
      read.items.push(item);
      if (item.kind === 'data') read.messages.push(item.message);
    }
    if (done(read.messages)) return read;
  }
  assert.fail(`timed out after ${timeoutMs} ms; read ${read.messages.map((m) => m.tag).join(', ')}`);
}

const commits = (n: number) => (messages: readonly PgoutputMessage[]) =>
  messages.filter((m) => m.tag === 'commit').length >= n;

function as<T extends PgoutputMessage['tag']>(
  message: PgoutputMessage | undefined,
  tag: T,
): Extract<PgoutputMessage, { tag: T }> {
  assert.equal(message?.tag, tag);
  return message as Extract<PgoutputMessage, { tag: T }>;
}

/** Runs `sql` in one transaction on `url`; returns its xid and commit timestamp in µs since the Unix epoch. */
async function transaction(url: string, sql: string): Promise<{ xid: number; commitTimeUs: bigint }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(sql);
    const xid = (await client.query(`SELECT pg_current_xact_id()::text AS xid`)).rows[0].xid as string;
    await client.query('COMMIT');
    const ts = await client.query(
      `SELECT (extract(epoch FROM pg_xact_commit_timestamp($1::xid)) * 1000000)::bigint::text AS us`,
      [String(BigInt(xid) % 2n ** 32n)],
    );
    return { xid: Number(BigInt(xid) % 2n ** 32n), commitTimeUs: BigInt(ts.rows[0].us) };
  } finally {
    await client.end();
  }
}

async function slotState(f: Fixture): Promise<{ confirmedFlushLsn: bigint; active: boolean }> {
  const r = await f.dbs.sql1(
    'SELECT confirmed_flush_lsn::text AS lsn, active FROM pg_replication_slots WHERE slot_name = $1',
    [f.slot],
  );
  return { confirmedFlushLsn: parseLsn(r.rows[0].lsn), active: r.rows[0].active };
}

async function poll<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) {
      const last = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? formatLsn(v) : v));
      assert.fail(`timed out waiting for ${what}; last value ${last}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Writes row 1 as a replayed change would be (replication origin `pgbisync_<db>`, origin commit LSN
 * 2/ABCDEF), then row 2 as a local transaction. Returns the origin's name.
 */
async function writeUnderOrigin(f: Fixture): Promise<string> {
  const origin = `pgbisync_${f.dbs.name}`;
  await f.dbs.sql1('SELECT pg_replication_origin_create($1)', [origin]);
  const client = new pg.Client({ connectionString: f.dbs.db1 });
  await client.connect();
  try {
    await client.query('SELECT pg_replication_origin_session_setup($1)', [origin]);
    await client.query('BEGIN');
    await client.query(`SELECT pg_replication_origin_xact_setup('2/ABCDEF', now())`);
    await client.query(`INSERT INTO items VALUES (1, 'from the other node', NULL)`);
    await client.query('COMMIT');
    await client.query('SELECT pg_replication_origin_session_reset()');
  } finally {
    await client.end();
  }
  await f.dbs.sql1(`INSERT INTO items VALUES (2, 'local', NULL)`);
  return origin;
}

describe('ReplicationConnection', () => {
  it('streams transactions as Begin, Relation, Insert..., Commit with their values', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const tx1 = await transaction(
      dbs.db1,
      `INSERT INTO items VALUES (1, 'one', NULL); INSERT INTO items VALUES (2, 'zoë 😀', 'x')`,
    );
    const tx2 = await transaction(
      dbs.db1,
      `UPDATE items SET note = 'n' WHERE id = 1; UPDATE items SET id = 3 WHERE id = 2; DELETE FROM items WHERE id = 1`,
    );
    await using stream = await openStream(f);
    const { messages, items } = await readUntil(stream.conn, commits(2));

    assert.deepEqual(
      messages.map((m) => m.tag),
      ['begin', 'relation', 'insert', 'insert', 'commit', 'begin', 'update', 'update', 'delete', 'commit'],
    );
    const relation: RelationMessage = {
      tag: 'relation',
      relationId: f.relationId,
      schema: 'public',
      table: 'items',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
        { name: 'name', typeOid: 25, typeMod: -1, isKey: false },
        { name: 'note', typeOid: 25, typeMod: -1, isKey: false },
      ],
    };
    assert.deepEqual(messages[1], relation);
    const rel = f.relationId;
    assert.deepEqual(messages.slice(2, 4), [
      { tag: 'insert', relationId: rel, newTuple: [text('1'), text('one'), NULL] },
      { tag: 'insert', relationId: rel, newTuple: [text('2'), text('zoë 😀'), text('x')] },
    ] satisfies InsertMessage[]);
    assert.deepEqual(messages.slice(6, 9), [
      // Key unchanged: no old tuple. Key changed: the old key ('K'), non-key columns null.
      { tag: 'update', relationId: rel, newTuple: [text('1'), text('one'), text('n')] },
      {
        tag: 'update',
        relationId: rel,
        oldKey: [text('2'), NULL, NULL],
        newTuple: [text('3'), text('zoë 😀'), text('x')],
      },
      { tag: 'delete', relationId: rel, oldKey: [text('1'), NULL, NULL] },
    ]);

    const expectTransaction = (begin: BeginMessage, commit: CommitMessage, tx: typeof tx1) => {
      assert.equal(begin.xid, tx.xid);
      assert.equal(begin.commitTimeUs, tx.commitTimeUs);
      assert.equal(commit.commitTimeUs, tx.commitTimeUs);
      assert.equal(begin.finalLsn, commit.commitLsn, 'Begin carries the LSN of the commit record');
      assert.ok(commit.endLsn > commit.commitLsn);
      assert.equal(commit.flags, 0);
    };
    expectTransaction(as(messages[0], 'begin'), as(messages[4], 'commit'), tx1);
    expectTransaction(as(messages[5], 'begin'), as(messages[9], 'commit'), tx2);
    assert.ok(as(messages[4], 'commit').endLsn <= as(messages[5], 'begin').finalLsn);

    // A change's item carries the position of its WAL record: inside its transaction, in order.
    const changes = items.filter(
      (i): i is ReplicationItemData => i.kind === 'data' && /^(insert|update|delete)$/.test(i.message.tag),
    );
    const [commit1, commit2] = [as(messages[4], 'commit'), as(messages[9], 'commit')];
    assert.deepEqual(
      changes.map((c) =>
        c.lsn < commit1.commitLsn ? 1 : c.lsn >= commit1.endLsn && c.lsn < commit2.commitLsn ? 2 : 0,
      ),
      [1, 1, 2, 2, 2],
    );
    for (let i = 1; i < changes.length; i++) assert.ok(changes[i]!.lsn > changes[i - 1]!.lsn);
    assert.equal(stream.conn.flushLsn, 0n, 'receiving never confirms');
  });

  it('decodes logical messages, transactional and not', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    await transaction(
      dbs.db1,
      `SELECT pg_logical_emit_message(true, 'pgbisync', 'in tx'); INSERT INTO items VALUES (1, 'a', NULL)`,
    );
    await dbs.sql1(`SELECT pg_logical_emit_message(false, 'pgbisync.heartbeat', '\\x00ff'::bytea)`);
    await using stream = await openStream(f);
    const { messages } = await readUntil(stream.conn, (ms) =>
      ms.some((m) => m.tag === 'message' && !m.transactional),
    );
    assert.deepEqual(
      messages.map((m) => m.tag),
      ['begin', 'message', 'relation', 'insert', 'commit', 'message'],
    );
    const inTx = as(messages[1], 'message');
    assert.deepEqual(
      { ...inTx, lsn: 0n },
      { tag: 'message', transactional: true, lsn: 0n, prefix: 'pgbisync', content: Buffer.from('in tx') },
    );
    const outside = as(messages[5], 'message');
    assert.equal(outside.transactional, false);
    assert.equal(outside.prefix, 'pgbisync.heartbeat');
    assert.deepEqual(outside.content, Buffer.from([0x00, 0xff]));
    assert.ok(outside.lsn > as(messages[4], 'commit').endLsn);
  });

  it('marks a transaction replayed under a replication origin with an Origin message', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const origin = await writeUnderOrigin(f);
    await using stream = await openStream(f);
    const { messages } = await readUntil(stream.conn, commits(2));
    assert.deepEqual(
      messages.map((m) => m.tag),
      ['begin', 'origin', 'relation', 'insert', 'commit', 'begin', 'insert', 'commit'],
    );
    assert.deepEqual(messages[1], { tag: 'origin', originLsn: parseLsn('2/ABCDEF'), name: origin });
    assert.deepEqual(as(messages[3], 'insert').newTuple, [text('1'), text('from the other node'), NULL]);
    assert.deepEqual(as(messages[6], 'insert').newTuple, [text('2'), text('local'), NULL]);
  });

  it('lets the server drop transactions that have an origin when originNone is set', {
    skip: HAS_ORIGIN_OPTION ? false : `PG ${serverVersionNum} < 16 has no pgoutput origin option`,
  }, async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    await writeUnderOrigin(f);
    await using stream = await openStream(f, { originNone: true });
    const { messages } = await readUntil(stream.conn, commits(1));
    assert.deepEqual(
      messages.map((m) => m.tag),
      ['begin', 'relation', 'insert', 'commit'],
    );
    assert.deepEqual(as(messages[2], 'insert').newTuple, [text('2'), text('local'), NULL]);
  });

  it('confirm advances confirmed_flush_lsn, and a reconnect resumes after it', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    await dbs.sql1(`INSERT INTO items VALUES (1, 'tx1', NULL)`);
    await dbs.sql1(`INSERT INTO items VALUES (2, 'tx2', NULL)`);
    const initial = await slotState(f);

    let tx2Commit: CommitMessage;
    {
      await using stream = await openStream(f);
      const { messages } = await readUntil(stream.conn, commits(2));
      const [tx1Commit, commit2] = messages.filter((m) => m.tag === 'commit');
      tx2Commit = commit2!;
      assert.equal(
        (await slotState(f)).confirmedFlushLsn,
        initial.confirmedFlushLsn,
        'nothing confirmed yet',
      );
      stream.conn.confirm(tx1Commit!.endLsn);
      assert.equal(stream.conn.flushLsn, tx1Commit!.endLsn);
      stream.conn.confirm(tx1Commit!.endLsn - 1n);
      assert.equal(stream.conn.flushLsn, tx1Commit!.endLsn, 'confirm never moves backwards');
      const state = await poll(
        'confirmed_flush_lsn to reach the first commit',
        () => slotState(f),
        (s) => s.confirmedFlushLsn >= tx1Commit!.endLsn,
      );
      assert.equal(formatLsn(state.confirmedFlushLsn), formatLsn(tx1Commit!.endLsn));
    }

    // Reconnect: only the unconfirmed transaction comes again, then new ones.
    await poll(
      'the slot to be released',
      () => slotState(f),
      (s) => !s.active,
    );
    await using stream = await openStream(f);
    const replay = await readUntil(stream.conn, commits(1));
    assert.deepEqual(
      replay.messages.map((m) => m.tag),
      ['begin', 'relation', 'insert', 'commit'],
    );
    assert.deepEqual(as(replay.messages[2], 'insert').newTuple, [text('2'), text('tx2'), NULL]);
    assert.deepEqual(replay.messages[3], tx2Commit);

    await dbs.sql1(`INSERT INTO items VALUES (3, 'tx3', NULL)`);
    const live = await readUntil(stream.conn, commits(1));
    assert.deepEqual(as(live.messages[1], 'insert').newTuple, [text('3'), text('tx3'), NULL]);
    const tx3Commit = as(live.messages.at(-1), 'commit');

    // Two confirms in a row: the second is sent with the next status update at the latest, and close()
    // sends a last one, so the slot has it even though the connection ends right away.
    stream.conn.confirm(tx2Commit.endLsn);
    stream.conn.confirm(tx3Commit.endLsn);
    await stream.conn.close();
    const state = await poll(
      'confirmed_flush_lsn to reach the last commit',
      () => slotState(f),
      (s) => s.confirmedFlushLsn >= tx3Commit.endLsn,
    );
    assert.equal(formatLsn(state.confirmedFlushLsn), formatLsn(tx3Commit.endLsn));
  });

  it('ends batches() without error when the signal aborts, and close() releases the slot', async (t) => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const stream = await openStream(f);
    await poll(
      'the slot to be active',
      () => slotState(f),
      (s) => s.active,
    );
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const started = Date.now();
    for await (const batch of stream.conn.batches(controller.signal)) {
      assert.ok(
        batch.every((item) => item.kind === 'keepalive'),
        'nothing was written',
      );
    }
    assert.ok(Date.now() - started < 5_000, 'the abort ends the wait promptly');
    const closing = Date.now();
    await stream.conn.close(); // CopyDone: the server ends START_REPLICATION and releases the slot
    t.diagnostic(`close() took ${Date.now() - closing} ms`);
    await poll(
      'the slot to be released',
      () => slotState(f),
      (s) => !s.active,
    );
    // A second close is harmless.
    await stream.conn.close();
  });

  it('fails batches() with a RetryableError when the server ends the walsender', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    await using stream = await openStream(f);
    await poll(
      'the slot to be active',
      () => slotState(f),
      (s) => s.active,
    );
    await dbs.sql1('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1', [
      f.slot,
    ]);
    await assert.rejects(
      async () => {
        for await (const _ of stream.conn.batches(AbortSignal.timeout(15_000))) {
          // drain until the failure surfaces
        }
      },
      (error: unknown) => error instanceof RetryableError && error.cause instanceof Error,
    );
  });

  it('keeps WAL order through flow control on a transaction larger than the queue', async (t) => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const ROWS = 30_000; // more than the queue's high-water mark, so the socket is paused and resumed
    await dbs.sql1(`INSERT INTO items SELECT g, 'row ' || g, NULL FROM generate_series(1, ${ROWS}) g`);
    await dbs.sql1(`INSERT INTO items VALUES (0, 'after', NULL)`);
    await using stream = await openStream(f);
    await new Promise((r) => setTimeout(r, 1_000)); // let the queue fill up before reading
    const ids: string[] = [];
    let largestBatch = 0;
    let commitsSeen = 0;
    for await (const batch of stream.conn.batches(AbortSignal.timeout(30_000))) {
      largestBatch = Math.max(largestBatch, batch.length);
      for (const item of batch) {
        if (item.kind !== 'data') continue;
        const m = item.message;
        if (m.tag === 'insert' && m.newTuple[0]?.kind === 'text') ids.push(m.newTuple[0].text);
        if (m.tag === 'commit') ids.push('commit');
        if (m.tag === 'commit') commitsSeen++;
      }
      if (commitsSeen === 2) break;
    }
    t.diagnostic(`largest batch: ${largestBatch} items`);
    const expected = Array.from({ length: ROWS }, (_, i) => String(i + 1));
    assert.deepEqual(ids, [...expected, 'commit', '0', 'commit']);
  });

  it('close() ends a running batches() loop without error', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const stream = await openStream(f);
    let batchesRead = 0;
    const reading = (async () => {
      for await (const _ of stream.conn.batches(AbortSignal.timeout(15_000))) batchesRead++;
    })();
    await poll(
      'the slot to be active',
      () => slotState(f),
      (s) => s.active,
    );
    const started = Date.now();
    await Promise.all([stream.conn.close(), stream.conn.close()]);
    await reading;
    assert.ok(Date.now() - started < 5_000, `the loop ended with close() (${batchesRead} batches read)`);
    await poll(
      'the slot to be released',
      () => slotState(f),
      (s) => !s.active,
    );
  });

  it('close() with unread items and a paused socket ends promptly and keeps the confirmed position', async (t) => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    await dbs.sql1(`INSERT INTO items VALUES (0, 'first', NULL)`);
    await dbs.sql1(`INSERT INTO items SELECT g, 'row ' || g, NULL FROM generate_series(1, 60000) g`);
    const stream = await openStream(f);
    const first = await readUntil(stream.conn, commits(1));
    const commit = as(first.messages.at(-1), 'commit');
    stream.conn.confirm(commit.endLsn);
    await new Promise((r) => setTimeout(r, 1_000)); // the big transaction fills the queue; the socket pauses
    const started = Date.now();
    await stream.conn.close();
    t.diagnostic(`close() took ${Date.now() - started} ms`);
    assert.ok(Date.now() - started < 10_000);
    const state = await poll(
      'the slot to be released',
      () => slotState(f),
      (s) => !s.active,
    );
    assert.equal(formatLsn(state.confirmedFlushLsn), formatLsn(commit.endLsn));
  });

  it('survives losing the connection before start(): commands and the stream fail, nothing crashes', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    const conn = await ReplicationConnection.connect(dbs.db1, `pgbisync-test-${dbs.name}`);
    try {
      await dbs.sql1('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
        `pgbisync-test-${dbs.name}`,
      ]);
      await new Promise((r) => setTimeout(r, 300)); // the FATAL reaches the idle client as an 'error' event
      await assert.rejects(conn.command('IDENTIFY_SYSTEM'));
      conn.confirm(1n); // before start(): nothing may be written to the socket
      conn.start({ slot: f.slot, publications: [PUBLICATION], startLsn: 0n });
      await assert.rejects(
        async () => {
          for await (const _ of conn.batches(AbortSignal.timeout(5_000))) {
            // drain until the failure surfaces
          }
        },
        (error: unknown) => error instanceof RetryableError,
      );
    } finally {
      await conn.close();
    }
  });

  it('answers keepalives, so an idle stream outlives a short wal_sender_timeout', async () => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    // wal_sender_timeout is user-settable per connection: 1 s makes the server ask for a reply every 0.5 s
    // and end the connection if none comes within 1 s.
    const url = new URL(dbs.db1);
    url.searchParams.set('options', '-c wal_sender_timeout=1000');
    await using stream = await openStream(f, {}, url.toString());
    const idle: ReplicationItem[] = [];
    for await (const batch of stream.conn.batches(AbortSignal.timeout(4_000))) idle.push(...batch);
    assert.ok(idle.length >= 2, `the server pinged while idle (${idle.length} items)`);
    assert.ok(idle.every((item) => item.kind === 'keepalive'));
    const settings = await dbs.sql1(
      `SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = $1`,
      [`pgbisync-test-${dbs.name}`],
    );
    assert.equal(settings.rows[0].n, 1, 'the walsender is still there after 4 s idle');
    await dbs.sql1(`INSERT INTO items VALUES (1, 'after idle', NULL)`);
    const { messages, items } = await readUntil(stream.conn, commits(1));
    assert.deepEqual(as(messages.at(-2), 'insert').newTuple, [text('1'), text('after idle'), NULL]);
    assert.ok(items.length >= messages.length);
  });

  it('sends standby status updates on its own, without being asked', async (t) => {
    await using dbs = await createTestDatabases('repl');
    const f = await fixture(dbs);
    // wal_sender_timeout=0: the server never asks for a reply, so any reply is the periodic update.
    const url = new URL(dbs.db1);
    url.searchParams.set('options', '-c wal_sender_timeout=0');
    await using stream = await openStream(f, {}, url.toString());
    const started = Date.now();
    const replyTime = () =>
      dbs
        .sql1(
          'SELECT reply_time IS NOT NULL AS replied FROM pg_stat_replication WHERE application_name = $1',
          [`pgbisync-test-${dbs.name}`],
        )
        .then((r) => r.rows[0]?.replied === true);
    await poll('a standby status update', replyTime, (replied) => replied);
    t.diagnostic(`first status update after ${Date.now() - started} ms`);
    assert.equal(stream.conn.flushLsn, 0n);
  });
});
