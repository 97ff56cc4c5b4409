/**
 * The fault schedule: drawn from the seed before the run (so a seed names its faults), each kind several
 * times at random moments, free to overlap with the others.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { FaultProxy } from '../src/testing/fault-proxy.ts';
import type { Daemon } from './daemon.ts';
import { clockAhead, type Servers } from './failover.ts';
import type { Random } from './random.ts';
import { withSession } from './workload.ts';

const exec = promisify(execFile);
const CLI = resolve(import.meta.dirname, '..', 'bin', 'pgbisync.js');

export const FAULT_KINDS = [
  'kill', // SIGKILL of the daemon (with --instances 2: of one of them), restarted 0.5-3 s later
  'freeze', // SIGSTOP of the daemon (or of one of them) for 10-40 s, then SIGCONT
  'kafka', // SIGKILL of the Kafka broker, restarted 1-5 s later
  'pg-crash', // immediate stop of one node's PostgreSQL (crash recovery at restart), restarted 1-5 s later
  'net-drop', // every connection from the daemon to one node reset
  'net-stall', // the daemon's connections to one node stop passing bytes for 5-30 s, without closing
  'net-delay', // 20-200 ms added to every chunk between the daemon and one node for 5-20 s
  'slow-target', // a table locked on one node for 5-15 s: applies into it wait
  // Between the daemon and the Kafka broker (its proxied listener: scripts/torture.sh):
  'kafka-drop', // every connection to the broker reset
  'kafka-stall', // bytes to and from the broker stop for 5-30 s, the connections stay open
  'kafka-delay', // 20-200 ms added to every chunk to and from the broker for 5-15 s
  // Every daemon killed, one node's slot dropped, the daemons restarted (that capture is blocked: a
  // new slot would skip the gap's changes); 5-15 s later the operator's fix, `pgbisync resync <node>`.
  'slot-loss',
  // db1's server crashes for good and its streaming standby is promoted (./failover.ts); once per run,
  // skipped (with a line) when the stack has no standby.
  'failover',
  // One node's server restarts with its clock 0.2-3 s ahead (./clock-offset.c preloaded), for the rest
  // of the run; once per run, skipped (with a line) where scripts/torture.sh could not build the library.
  'clock-skew',
  // Every database of one node's server vacuumed with FREEZE (template0 opened for it), twice: commit
  // timestamps behind the oldest xmin the server still holds are truncated, so a row's version would
  // read as of unknown time to a lagging direction but for the slot that keeps them
  // (src/operate/stamp-keeper.ts).
  'vacuum-freeze',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ScheduledFault {
  readonly atMs: number;
  readonly kind: FaultKind;
  /** Index of the node it hits (pg-crash, net-*, slow-target); kill and freeze: of the instance, modulo. */
  readonly node: number;
  /**
   * How long it lasts (freeze, stall, delay, lock) or how long until the restart (kill, kafka, pg-crash);
   * clock-skew: how far ahead the clock runs.
   */
  readonly forMs: number;
  readonly delayMs: number;
}

/** Average time between two faults of one kind. */
const PERIOD_MS: Record<FaultKind, number> = {
  kill: 45_000,
  freeze: 120_000,
  kafka: 90_000,
  'pg-crash': 90_000,
  'net-drop': 60_000,
  'net-stall': 90_000,
  'net-delay': 60_000,
  'slow-target': 60_000,
  'kafka-drop': 60_000,
  'kafka-stall': 90_000,
  'kafka-delay': 60_000,
  'slot-loss': 120_000,
  failover: 3_600_000,
  'clock-skew': 3_600_000,
  'vacuum-freeze': 45_000,
};

export function schedule(
  rnd: Random,
  kinds: readonly FaultKind[],
  durationMs: number,
  nodes: number,
): ScheduledFault[] {
  const faults: ScheduledFault[] = [];
  const longest = Math.max(10_000, Math.min(40_000, durationMs / 3));
  for (const kind of kinds) {
    const r = rnd.fork(kind);
    const count = Math.max(1, Math.round(durationMs / PERIOD_MS[kind]));
    for (let i = 0; i < count; i++) {
      const forMs =
        kind === 'freeze'
          ? r.int(10_000, longest)
          : kind === 'net-stall' || kind === 'kafka-stall'
            ? r.int(5_000, Math.min(30_000, longest))
            : kind === 'net-delay' || kind === 'kafka-delay' || kind === 'slow-target' || kind === 'slot-loss'
              ? r.int(5_000, 15_000)
              : kind === 'clock-skew'
                ? r.int(200, 3_000)
                : kind === 'kill'
                  ? r.int(500, 3_000)
                  : r.int(1_000, 5_000);
      // A failover in the middle third: the slots are made and synced to the standby, and the run goes
      // on long enough after it.
      const [from, to] = kind === 'failover' ? [0.3, 0.65] : [0.05, 0.8];
      faults.push({
        atMs: r.int(Math.round(durationMs * from), Math.round(durationMs * to)),
        kind,
        node: r.int(0, nodes - 1),
        forMs,
        delayMs: r.int(20, 200),
      });
    }
  }
  return faults.sort((a, b) => a.atMs - b.atMs);
}

export interface FaultTargets {
  /** The `pgbisync run` instances sharing the config (one, or two with --instances 2). */
  readonly daemons: readonly Daemon[];
  readonly servers: Servers;
  /** The server of each node (several nodes may share one). */
  readonly serverOf: (node: number) => number;
  /** Each node's proxies (the primary's, and the standby's on a node that can fail over). */
  readonly proxies: readonly (readonly FaultProxy[])[];
  /** Between the daemon and the broker; undefined: the stack has no proxied listener (kafka-* faults skipped). */
  readonly kafkaProxy: FaultProxy | undefined;
  /** The node's database on the server that takes its writes now. */
  readonly nodeUrl: (node: number) => string;
  /** The nodes' names in the config (slot-loss: the slot and the resync name them). */
  readonly nodeNames: readonly string[];
  /** The run's config (slot-loss runs `pgbisync resync` with it). */
  readonly configPath: string;
  /** The clock-offset library (./clock-offset.c) for clock-skew; undefined: not built here. */
  readonly clockLibrary: string | undefined;
  /** Called once db1's standby took over (the run points the workload and the checker at it). */
  readonly failedOver: () => void;
  readonly log: (line: string) => void;
}

/**
 * Runs the schedule; resolves once every fault has ended and every part it stopped is back, with what
 * failed to be injected.
 */
export async function inject(
  faults: readonly ScheduledFault[],
  t: FaultTargets,
  startedAt: number,
  signal: AbortSignal,
  /** The faults under way (`kind@at s`), for the run to say which one a wait for their end waits on. */
  underWay: Set<string> = new Set(),
): Promise<string[]> {
  // Restarts of the stack's parts run one at a time (`up` starts whatever is down).
  let restarts = Promise.resolve();
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // `up` also waits for the broker to answer: a restart that overlaps a Kafka kill fails and is tried again.
  const restart = (what: string) => {
    restarts = restarts.then(async () => {
      t.log(`fault: restarting ${what}`);
      for (let attempt = 1; attempt <= 5; attempt++) {
        try {
          await t.servers.up();
          return;
        } catch (error) {
          t.log(`fault: restarting ${what} failed (attempt ${attempt}): ${String(error)}`);
          await wait(2000);
        }
      }
    });
    return restarts;
  };
  /**
   * Runs `fn` once the restarts queued before it are done, and holds later ones until it is: a stop or
   * crash of a server must not overlap a restart (`up` would start the server while its stop waits for
   * the postmaster.pid that the new one writes: seed 5 at 600 s, a pg-crash during a clock-skew restart).
   */
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const done = restarts.then(fn);
    restarts = done.then(
      () => undefined,
      () => undefined,
    );
    return done;
  };
  const injectOne = async (f: ScheduledFault, node: string): Promise<void> => {
    // The instance a kill or freeze hits (drawn as the node, so one instance keeps a seed's schedule).
    const daemon = t.daemons[f.node % t.daemons.length]!;
    switch (f.kind) {
      case 'kill':
        await daemon.kill();
        await wait(f.forMs);
        daemon.start();
        return;
      case 'freeze':
        daemon.freeze();
        await wait(f.forMs);
        daemon.thaw();
        return;
      case 'kafka': {
        const pid = t.servers.stack.broker.pid();
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
        await wait(f.forMs);
        await restart('the Kafka broker');
        return;
      }
      case 'pg-crash': {
        await exclusive(() => t.servers.server(t.serverOf(f.node)).crash());
        await wait(f.forMs);
        // Through `up`, one restart at a time: a broker restart meanwhile may have started it already
        // (`up` starts whatever is down), and a second start would fail on its lock file.
        await restart(`the PostgreSQL server of ${node}`);
        return;
      }
      case 'net-drop':
        for (const p of t.proxies[f.node]!) p.drop();
        return;
      case 'net-stall':
      case 'net-delay':
        for (const p of t.proxies[f.node]!)
          p.set(f.kind === 'net-stall' ? { kind: 'stall' } : { kind: 'delay', ms: f.delayMs });
        await wait(f.forMs);
        for (const p of t.proxies[f.node]!) p.set({ kind: 'pass' });
        return;
      case 'kafka-drop':
      case 'kafka-stall':
      case 'kafka-delay': {
        const proxy = t.kafkaProxy;
        if (proxy === undefined) {
          t.log(
            `fault: ${f.kind} skipped: the stack has no proxied Kafka listener (dev up --kafka-proxied-port)`,
          );
          return;
        }
        if (f.kind === 'kafka-drop') {
          proxy.drop();
          return;
        }
        proxy.set(f.kind === 'kafka-stall' ? { kind: 'stall' } : { kind: 'delay', ms: f.delayMs });
        await wait(f.forMs);
        proxy.set({ kind: 'pass' });
        return;
      }
      case 'slot-loss': {
        const name = t.nodeNames[f.node]!;
        await Promise.all(t.daemons.map((d) => d.kill()));
        const dropped = await dropSlot(t.nodeUrl(f.node), `pgbisync_${name}`).catch((error: unknown) => {
          t.log(`fault: slot-loss: dropping the slot of ${name} failed: ${String(error)}`);
          return undefined;
        });
        for (const d of t.daemons) d.start();
        if (dropped !== true) {
          if (dropped === false)
            t.log(`fault: slot-loss: ${name} had no slot to drop (its capture had not made one yet)`);
          return;
        }
        t.log(`fault: slot-loss: the slot of ${name} dropped`);
        await wait(f.forMs);
        await resyncNode(t, name);
        return;
      }
      case 'failover': {
        // Restarts queued meanwhile (a pg-crash of db1's server) must not start db1 again half-way.
        const skipped = await t.servers.failOver(t.log, 90_000, signal, exclusive);
        if (skipped !== undefined) t.log(`fault: failover skipped: ${skipped}`);
        else t.failedOver();
        return;
      }
      case 'clock-skew': {
        if (t.clockLibrary === undefined) {
          t.log('fault: clock-skew skipped: no clock-offset library (scripts/torture.sh builds it with cc)');
          return;
        }
        const library = t.clockLibrary;
        await exclusive(async () => {
          const server = t.servers.server(t.serverOf(f.node));
          server.startEnv = { LD_PRELOAD: library, PGBISYNC_CLOCK_OFFSET_MS: String(f.forMs) };
          await server.stop();
        });
        await restart(`the PostgreSQL server of ${node} with its clock ${f.forMs} ms ahead`);
        const ahead = await clockAhead(t.nodeUrl(f.node)).catch(() => undefined);
        t.log(`fault: clock-skew: the server of ${node} reads ${ahead ?? '?'} ms ahead of this host`);
        return;
      }
      case 'vacuum-freeze':
        await freezeServer(t.nodeUrl(f.node)).catch((error: unknown) =>
          t.log(`fault: vacuum-freeze failed: ${String(error)}`),
        );
        return;
      case 'slow-target':
        await lockTable(t.nodeUrl(f.node), f.forMs).catch((error: unknown) =>
          t.log(`fault: slow-target lock failed: ${String(error)}`),
        );
        return;
      default:
        return f.kind satisfies never;
    }
  };
  /** What went wrong injecting a fault (a finding: the run goes on to its checks). */
  const failures: string[] = [];
  const running = faults.map(async (f) => {
    await wait(Math.max(0, startedAt + f.atMs - Date.now()));
    if (signal.aborted) return;
    const node = `node ${f.node + 1}`;
    t.log(
      `fault: ${f.kind}${f.kind.startsWith('net') || f.kind === 'pg-crash' || f.kind === 'slow-target' || f.kind === 'slot-loss' || f.kind === 'clock-skew' || f.kind === 'vacuum-freeze' ? ` on ${node}` : ''} for ${f.forMs} ms`,
    );
    const name = `${f.kind}@${(f.atMs / 1000).toFixed(0)}s${f.kind === 'kill' || f.kind === 'freeze' || f.kind.startsWith('kafka') || f.kind === 'failover' ? '' : ` on ${node}`}`;
    underWay.add(name);
    try {
      await injectOne(f, node);
    } catch (error) {
      t.log(`fault: ${f.kind} failed: ${String(error)}`);
      failures.push(`${f.kind} at ${(f.atMs / 1000).toFixed(0)} s failed: ${String(error)}`);
    } finally {
      underWay.delete(name);
    }
  });
  await Promise.all(running);
  underWay.add('the queued restarts');
  await restarts;
  underWay.delete('the queued restarts');
  return failures;
}

/** How long the run waits, once writes stopped, for the faults under way to end before it checks anyway. */
const FAULTS_END_TIMEOUT_MS = 300_000;

/**
 * Waits for `injecting` (the run's {@link inject}), saying every 30 s which faults are still under way;
 * one that never ends (a harness bug: seed 5 at 600 s waited for good) is a finding and the run goes
 * on to its checks, the faults not started yet called off (one under way cannot be: it may still act).
 */
export async function faultsEnded(
  injecting: Promise<string[]>,
  underWay: ReadonlySet<string>,
  log: (line: string) => void,
  /** Called on giving up: the faults still to start must not (the checks run meanwhile). */
  stop: () => void,
): Promise<string[]> {
  const started = Date.now();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const tick = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), 30_000);
    });
    const failures = await Promise.race([injecting, tick]);
    clearTimeout(timer);
    if (failures !== undefined) return failures;
    const names =
      underWay.size === 0 ? 'none started (waiting for their start time)' : [...underWay].join(', ');
    if (Date.now() - started >= FAULTS_END_TIMEOUT_MS) {
      stop();
      log(`faults still under way after ${FAULTS_END_TIMEOUT_MS / 1000} s: ${names}; checking anyway`);
      return [`faults that never ended: ${names}`];
    }
    log(`waiting for the faults under way: ${names}`);
  }
}

/** Two rounds of VACUUM (FREEZE) in every database of the server at `url`, an xid between them. */
async function freezeServer(url: string): Promise<void> {
  // The node's URL may name several hosts (a node that can fail over): only its database is replaced.
  const inDatabase = (db: string) => url.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
  const databases = await withSession(url, async (c) => {
    await c.query("UPDATE pg_database SET datallowconn = true WHERE datname = 'template0'");
    return (await c.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map((r) => r.datname);
  });
  for (let round = 0; round < 2; round++) {
    for (const db of databases) await withSession(inDatabase(db), (c) => c.query('VACUUM (FREEZE)'));
    await withSession(url, (c) => c.query('SELECT txid_current()'));
  }
}

async function lockTable(url: string, ms: number): Promise<void> {
  await withSession(url, async (c) => {
    await c.query('BEGIN');
    await c.query('LOCK TABLE t_comp, child IN EXCLUSIVE MODE');
    await c.query('SELECT pg_sleep($1)', [ms / 1000]);
    await c.query('COMMIT');
  });
}

/** Drops `slot` once no session holds it (the killed daemon's walsender may linger a moment). */
async function dropSlot(url: string, slot: string): Promise<boolean> {
  return withSession(url, async (c) => {
    for (let i = 0; i < 50; i++) {
      await c.query(
        'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
        [slot],
      );
      try {
        const r = await c.query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        return (r.rowCount ?? 0) > 0;
      } catch (error) {
        // 55006: still active; tried again.
        if ((error as { code?: string }).code !== '55006') throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    return false;
  });
}

/** The operator's fix for the lost slot, asked until it is recorded (faults may fail it). */
async function resyncNode(t: FaultTargets, name: string): Promise<void> {
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      await exec(process.execPath, [CLI, 'resync', name, '-c', t.configPath, '--no-wait']);
      t.log(`fault: slot-loss: pgbisync resync ${name} asked`);
      return;
    } catch (error) {
      const said = String((error as { stderr?: unknown }).stderr ?? error)
        .trim()
        .split('\n')
        .pop();
      t.log(`fault: slot-loss: pgbisync resync ${name} failed (attempt ${attempt}), again in 3 s: ${said}`);
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  t.log(`fault: slot-loss: pgbisync resync ${name} failed 10 times`);
}
