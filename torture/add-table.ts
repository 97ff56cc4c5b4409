/**
 * Workload kind `addtable`: a table written on every node from the start is added to the synced tables
 * while the sync runs, the way docs/operations.md tells an operator to: the config gains it, `pgbisync
 * setup` runs, and every `pgbisync run` is sent SIGHUP (it reloads, sets up and copies the table while
 * the nodes take writes). Faults go on meanwhile; a daemon killed and restarted reads the new config at
 * its start. The checker then holds the table to the same rules as the others (convergence, the
 * last-writer-wins model over every write, those made before it was synced included).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Daemon } from './daemon.ts';

const exec = promisify(execFile);
const CLI = resolve(import.meta.dirname, '..', 'bin', 'pgbisync.js');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long every daemon has to confirm the reload (a frozen one confirms once thawed). */
const CONFIRM_TIMEOUT_MS = 120_000;

export interface AddTableOptions {
  readonly configPath: string;
  /** The config as written, without the table. */
  readonly config: { readonly tables: readonly string[] } & Record<string, unknown>;
  readonly table: string;
  readonly daemons: readonly Daemon[];
  readonly atMs: number;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

/** Resolves with undefined once every daemon runs with the table synced, or with what went wrong. */
export async function addTableLater(o: AddTableOptions): Promise<string | undefined> {
  await wait(o.atMs);
  if (o.signal.aborted) return 'addtable: the run ended before the table was added';
  writeFileSync(
    o.configPath,
    `# written by npm run torture, ${o.table} added\n${JSON.stringify({ ...o.config, tables: [...o.config.tables, o.table] }, null, 2)}\n`,
  );
  o.log(`addtable: ${o.table} added to the config; pgbisync setup, then SIGHUP to every pgbisync run`);
  // setup may meet a crashed node: tried again, as an operator would.
  for (let attempt = 1; ; attempt++) {
    try {
      await exec(process.execPath, [CLI, 'setup', '-c', o.configPath]);
      break;
    } catch (error) {
      if (attempt >= 10) return `addtable: pgbisync setup failed 10 times: ${String(error)}`;
      // The nodes' URLs go through the fault proxies, and setup creates topics: faults fail it.
      const said = String((error as { stderr?: unknown }).stderr ?? error)
        .trim()
        .split('\n')
        .pop();
      o.log(`addtable: setup failed (attempt ${attempt}), again in 3 s: ${said}`);
      await wait(3000);
    }
  }
  const before = o.daemons.map((d) => ({ ...d.reloads(), starts: d.starts }));
  for (const d of o.daemons) d.hup();
  const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
  for (;;) {
    const pending = o.daemons.filter((d, i) => {
      const b = before[i]!;
      const now = d.reloads();
      if (now.refused > b.refused) {
        // A refused reload (a node down during its setup): asked again.
        o.log(`addtable: a reload was refused; SIGHUP again`);
        before[i] = { ...b, refused: now.refused };
        d.hup();
      }
      // Confirmed by a reload that succeeded, or by a start after the config changed.
      return now.done <= b.done && d.starts <= b.starts;
    });
    if (pending.length === 0) {
      o.log(`addtable: every pgbisync run reloaded with ${o.table}`);
      return undefined;
    }
    if (Date.now() > deadline)
      return `addtable: ${pending.length} pgbisync run did not confirm the reload within ${CONFIRM_TIMEOUT_MS / 1000} s`;
    await wait(500);
  }
}
