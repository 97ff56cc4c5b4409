/**
 * CPU time and memory of processes, read from /proc (Linux). CPU is user + system time; a process that
 * has exited contributes what was last read of it, so read before stopping one.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_SEC = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User + system CPU seconds of a process, or undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces) start at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
}

export interface MemorySample {
  /** Peak resident set size (VmHWM), MiB. */
  readonly peakRssMb: number;
  /** Current resident memory without shared memory (RssAnon + RssFile), MiB. */
  readonly privateRssMb: number;
}

export function memory(pid: number): MemorySample | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { peakRssMb: kb('VmHWM') / 1024, privateRssMb: (kb('RssAnon') + kb('RssFile')) / 1024 };
}

/**
 * Follows the CPU time of a changing set of processes (pids may be added as they appear): `total()` is
 * the CPU spent by all of them since each was first seen, and the memory peaks seen by `poll()`.
 */
export class ProcessGroup {
  readonly #first = new Map<number, number>();
  readonly #last = new Map<number, number>();
  #maxPrivateRssMb = 0;
  #maxPeakRssMb = 0;
  /** Each process's VmHWM as last read, in the order they were added. */
  readonly #peakByPid = new Map<number, number>();

  add(pids: Iterable<number>): void {
    for (const pid of pids) {
      if (this.#first.has(pid)) continue;
      const cpu = cpuSeconds(pid);
      if (cpu === undefined) continue;
      this.#first.set(pid, cpu);
      this.#last.set(pid, cpu);
    }
  }

  /** Reads every process once (CPU and memory); call periodically and before stopping them. */
  poll(): void {
    let privateMb = 0;
    let peakMb = 0;
    for (const pid of this.#first.keys()) {
      const cpu = cpuSeconds(pid);
      if (cpu !== undefined) this.#last.set(pid, cpu);
      const mem = memory(pid);
      if (mem !== undefined) {
        privateMb += mem.privateRssMb;
        peakMb = Math.max(peakMb, mem.peakRssMb);
        // A killed process not yet reaped reads 0 (a zombie has no memory lines): keep its last figure.
        this.#peakByPid.set(pid, Math.max(this.#peakByPid.get(pid) ?? 0, mem.peakRssMb));
      }
    }
    this.#maxPrivateRssMb = Math.max(this.#maxPrivateRssMb, privateMb);
    this.#maxPeakRssMb = Math.max(this.#maxPeakRssMb, peakMb);
  }

  /** CPU seconds since each process was added. */
  cpuSeconds(): number {
    let total = 0;
    for (const [pid, first] of this.#first) total += (this.#last.get(pid) ?? first) - first;
    return total;
  }

  /** Largest sum of private resident memory seen (MiB). */
  get maxPrivateRssMb(): number {
    return this.#maxPrivateRssMb;
  }

  /** Each process's VmHWM (MiB) as last read before it ended, in the order they were added. */
  get peaksRssMb(): number[] {
    return [...this.#peakByPid.values()];
  }

  /** Largest single-process VmHWM seen (MiB). */
  get maxPeakRssMb(): number {
    return this.#maxPeakRssMb;
  }
}
