/**
 * The stack's PostgreSQL servers as the run sees them, and the `failover` fault. With a standby of db1
 * (`dev up --standby`, PostgreSQL 17+; scripts/torture.sh starts one), the nodes on db1's server have a
 * failover slot and a URL listing the primary and the standby (each through a fault proxy) with
 * target_session_attrs=read-write, and db1 waits for the standby at each commit
 * (synchronous_standby_names): a commit the workload saw is on the standby too, as in a deployment that
 * promises no loss on failover. The fault, once the standby holds a synced copy of each of the server's
 * pgbisync slots (what a failover before that loses is a lost slot, covered by `slot-loss`): db1's
 * server stops as in a crash and the standby is promoted. From then on the standby is server 0: crashes
 * and restarts hit it, and db1's server stays down for the rest of the run (started, it would be a second
 * primary). The next run finds the standby promoted and makes a new one from db1 ({@link Servers.prepare}).
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { PostgresServer } from '../src/dev/postgres-server.ts';
import type { DevStack } from '../src/dev/stack.ts';
import { withSession } from './workload.ts';

/** The standby's name in db1's replication (its primary_conninfo's application_name, src/dev/standby.ts). */
const STANDBY_NAME = 'standby';

export class Servers {
  readonly stack: DevStack;
  #promotedAt: number | undefined;

  constructor(stack: DevStack) {
    this.stack = stack;
  }

  /** The stack has a standby of db1: the nodes on server 0 can fail over. */
  get canFailOver(): boolean {
    return this.stack.standby !== undefined;
  }

  /** When the standby was promoted (ms since the epoch), or undefined. */
  get promotedAt(): number | undefined {
    return this.#promotedAt;
  }

  /** The server that takes writes for server index `i`. */
  server(i: number): PostgresServer {
    return i === 0 && this.#promotedAt !== undefined ? this.stack.standby! : this.stack.servers[i]!;
  }

  /** Starts whatever is down, except a failed-over db1. */
  async up(): Promise<void> {
    await this.stack.up(() => undefined, this.#promotedAt === undefined ? {} : { leaveDown: ['db1'] });
  }

  /**
   * Before a run: a standby a previous run promoted is made again from db1 (the old primary's leftover
   * run databases and their slots dropped: their names come back), and db1 waits for it at each commit;
   * a server whose clock an earlier run's clock-skew fault set ahead starts again without the offset.
   */
  async prepare(log: (line: string) => void): Promise<void> {
    const standby = this.stack.standby;
    if (
      standby !== undefined &&
      existsSync(join(standby.dataDir, 'PG_VERSION')) &&
      !existsSync(join(standby.dataDir, 'standby.signal'))
    ) {
      log('the standby was promoted by an earlier run: making a new one from db1');
      await standby.stop();
      standby.startEnv = {}; // a clock-skew fault's offset, carried over at the failover
      rmSync(standby.dataDir, { recursive: true, force: true });
      // db1 alone first (`dev up` may have started it): its leftovers go before a new standby replays
      // their drops. A standby whose slot sync worker holds a synced slot of a database whose drop it
      // replays ends (PostgreSQL 18: "replication slot ... is active for PID"), and db1, waiting for it
      // at each commit (synchronous_standby_names, left set by the earlier run), would wait for good.
      await this.stack.up(() => undefined, { leaveDown: ['standby'] });
      await withSession(adminUrl(this.stack.servers[0]!), async (c) => {
        await c.query('ALTER SYSTEM RESET synchronous_standby_names');
        await c.query('SELECT pg_reload_conf()');
        const dbs = await c.query<{ datname: string }>(
          "SELECT datname FROM pg_database WHERE datname LIKE 'torture\\_%'",
        );
        for (const { datname } of dbs.rows) {
          await c.query(
            'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1',
            [datname],
          );
          await c.query(`DROP DATABASE ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
        }
      });
    }
    await this.stack.up(() => undefined);
    // A clock-skew fault of an earlier run left a server's clock ahead: started again without it.
    for (const server of this.stack.servers) {
      if ((await clockAhead(adminUrl(server))) < 250) continue;
      log(
        `the clock of ${server.spec.name} runs ahead (a clock-skew fault of an earlier run): restarting it`,
      );
      await server.stop();
      await server.start();
    }
    if (standby === undefined) return;
    await withSession(adminUrl(this.stack.servers[0]!), async (c) => {
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = '${STANDBY_NAME}'`);
      await c.query('SELECT pg_reload_conf()');
    });
    // The standby's configuration is db1's as it was when the standby was made: the dev stack's
    // synchronous_commit = off. Promoted, it takes the workload's commits, which must survive a crash
    // of its server as db1's do (main.ts sets synchronous_commit = on for the nodes' servers). Seen
    // (seed 41): a backend of the promoted standby died of a segmentation fault, the server's crash
    // recovery lost commits the workload had seen succeed, and the checker reported them as lost by the
    // sync.
    await withSession(adminUrl(standby), async (c) => {
      await c.query('ALTER SYSTEM SET synchronous_commit = on');
      await c.query('SELECT pg_reload_conf()');
    });
  }

  /**
   * Drops a run's database on server `i` and the slots pgbisync left in it (a slot keeps its database
   * from being dropped). On db1's server with a standby, the drop waits (up to 35 s: the slot sync worker
   * naps up to 30 s while idle) until the standby's slot sync worker has dropped its copies of those
   * slots: a standby that replays the drop of a database while the worker holds one of its slots ends
   * (see prepare).
   */
  async dropDatabase(i: number, db: string, log: (line: string) => void): Promise<void> {
    const server = this.server(i);
    await withSession(adminUrl(server), async (c) => {
      await c.query(
        'SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL',
        [db],
      );
      await c.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1',
        [db],
      );
    });
    const standby = this.stack.standby;
    if (i === 0 && this.#promotedAt === undefined && standby !== undefined && (await standby.isReady())) {
      const synced = async () =>
        await withSession(
          adminUrl(standby),
          async (c) =>
            (await c.query('SELECT 1 FROM pg_replication_slots WHERE database = $1 AND synced', [db]))
              .rowCount ?? 0,
        ).catch(() => 0);
      const deadline = Date.now() + 35_000;
      while ((await synced()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      if ((await synced()) > 0)
        log(`the standby still holds synced slots of ${db} after 35 s: dropping it anyway`);
    }
    await withSession(adminUrl(server), (c) =>
      c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(db)} WITH (FORCE)`),
    );
  }

  /**
   * The fault: waits (up to `waitMs`) until the standby holds a synced, persistent copy of every
   * failover slot on db1's server, then crashes db1's server and promotes the standby. Returns why it
   * did not happen, or undefined.
   */
  async failOver(
    log: (line: string) => void,
    waitMs: number,
    signal: AbortSignal,
    exclusive: (fn: () => Promise<void>) => Promise<void>,
  ): Promise<string | undefined> {
    const standby = this.stack.standby;
    if (standby === undefined) return 'the stack has no standby of db1 (dev up --standby, PostgreSQL 17+)';
    if (this.#promotedAt !== undefined) return 'db1 failed over already';
    const primary = this.stack.servers[0]!;
    const deadline = Date.now() + waitMs;
    let missing = 'not asked yet';
    let said = '';
    while (!signal.aborted && Date.now() < deadline) {
      missing = await unsyncedSlots(primary, standby).catch((error: unknown) => `? (${String(error)})`);
      if (missing === '') break;
      if (missing !== said) {
        said = missing;
        log(`fault: failover waits: the standby has no synced copy of ${missing}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    if (missing !== '') return `the standby has no synced copy of ${missing}`;
    log('fault: failover: the standby holds every slot; db1 crashes, the standby is promoted');
    // In the restarts' queue: no restart may start db1 while it stops, nor between its crash and the
    // promotion.
    await exclusive(async () => {
      // A clock-skew fault set db1's clock ahead for the rest of the run: the node keeps it once the
      // standby takes over. Else the node's clock would step back at the failover, and its later writes
      // carry older commit times than its earlier ones: the checker's model (the greatest commit time
      // wins) no longer says what the node itself did (seed 57: a row written on db1, then deleted on
      // the promoted standby, expected present). pgbisync's case of a source whose clock stepped back is
      // src/sink/transaction-writer.pg.test.ts's.
      if (primary.startEnv.PGBISYNC_CLOCK_OFFSET_MS !== standby.startEnv.PGBISYNC_CLOCK_OFFSET_MS) {
        log(
          `fault: failover: the standby restarts with db1's clock (${primary.startEnv.PGBISYNC_CLOCK_OFFSET_MS} ms ahead)`,
        );
        standby.startEnv = primary.startEnv;
        await standby.stop();
        await standby.start();
        await waitForSyncStandby(primary);
      }
      await primary.crash();
      this.#promotedAt = Date.now();
      await standby.promote();
      // Its configuration is a copy of db1's: it would wait for a synchronous standby it does not have.
      await withSession(adminUrl(standby), async (c) => {
        await c.query('ALTER SYSTEM RESET synchronous_standby_names');
        await c.query('SELECT pg_reload_conf()');
      });
    });
    log(`fault: failover: the standby (port ${standby.spec.port}) is the primary`);
    return undefined;
  }
}

/** Waits (up to 60 s) until the standby streams from `primary` again as its synchronous standby. */
async function waitForSyncStandby(primary: PostgresServer): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const streaming = await withSession(
      adminUrl(primary),
      async (c) =>
        (
          await c.query(
            "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming' AND sync_state = 'sync'",
            [STANDBY_NAME],
          )
        ).rowCount === 1,
    ).catch(() => false);
    if (streaming) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The failover slots of db1's server that the standby lacks as synced and persistent ('' when none). */
async function unsyncedSlots(primary: PostgresServer, standby: PostgresServer): Promise<string> {
  const onPrimary = await withSession(adminUrl(primary), async (c) =>
    (
      await c.query<{ slot_name: string }>(
        "SELECT slot_name FROM pg_replication_slots WHERE failover AND slot_type = 'logical'",
      )
    ).rows.map((r) => r.slot_name),
  );
  if (onPrimary.length === 0) return 'any slot (db1 has no failover slot yet)';
  const synced = await withSession(adminUrl(standby), async (c) =>
    (
      await c.query<{ slot_name: string }>(
        'SELECT slot_name FROM pg_replication_slots WHERE synced AND NOT temporary AND confirmed_flush_lsn IS NOT NULL',
      )
    ).rows.map((r) => r.slot_name),
  );
  return onPrimary.filter((s) => !synced.includes(s)).join(', ');
}

/** How far the server's wall clock reads ahead of this host's (ms, rounded; the query's time included). */
export async function clockAhead(url: string): Promise<number> {
  return withSession(url, async (c) => {
    const r = await c.query<{ ms: string }>(
      'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms',
    );
    return Number(r.rows[0]!.ms) - Date.now();
  });
}

/** The server's maintenance database. */
export function adminUrl(server: PostgresServer): string {
  const u = new URL(server.url);
  u.pathname = '/postgres';
  return u.toString();
}
