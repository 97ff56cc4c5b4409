/**
 * What the dev stack's JVM services (the Kafka broker, Kafka Connect) share: their jars fetched from
 * Maven Central once into the cache with `mvn dependency:copy-dependencies`, and a detached `java`
 * process with its log and pid file in the service's folder, so `dev down` and `dev status` find it
 * from another process.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { isProcessAlive, requireTool, run, stopProcess } from './process-tools.ts';

const JAVA_HINT = 'install a JDK 17+: apt-get install -y openjdk-17-jre-headless';

export function requireJava(): string {
  return requireTool('java', JAVA_HINT);
}

export interface MavenFetch {
  /** What is fetched, for messages: "Apache Kafka 4.1.1 jars". */
  readonly what: string;
  readonly pom: string;
  /** -D properties and other arguments for mvn. */
  readonly args: readonly string[];
  readonly dir: string;
  /** A file that exists once the folder is complete (written last). */
  readonly marker: string;
  /** A jar file name the folder must hold afterwards. */
  readonly expect: (files: readonly string[]) => boolean;
  readonly expectName: string;
}

/** Copies the pom's runtime dependencies into `dir`, once (the marker says it was done). */
export async function fetchMavenDependencies(log: (line: string) => void, o: MavenFetch): Promise<void> {
  if (existsSync(o.marker)) return;
  requireJava();
  const mvn = requireTool('mvn', 'install Apache Maven: apt-get install -y maven');
  log(`fetching ${o.what} from Maven Central into ${o.dir} (once)`);
  mkdirSync(o.dir, { recursive: true });
  try {
    await run(
      mvn,
      [
        '-q',
        '-B',
        '-f',
        o.pom,
        ...o.args,
        'dependency:copy-dependencies',
        `-DoutputDirectory=${o.dir}`,
        '-DincludeScope=runtime',
      ],
      { timeoutMs: 900_000 },
    );
  } catch (error) {
    throw new FatalError(`could not fetch ${o.what} with Maven`, {
      code: ErrorCode.ARTIFACT_FETCH_FAILED,
      hint: `check that Maven Central is reachable and serves what ${o.pom} names`,
      cause: error,
    });
  }
  if (!o.expect(readdirSync(o.dir))) {
    throw new FatalError(`Maven did not deliver ${o.expectName} into ${o.dir}`, {
      code: ErrorCode.ARTIFACT_FETCH_FAILED,
    });
  }
  writeFileSync(o.marker, o.expectName);
}

/** A detached java process whose pid lives in `<dir>/<name>.pid` and output in `<dir>/<name>.log`. */
export class JavaProcess {
  readonly dir: string;
  readonly #name: string;
  /** For messages: "the Kafka broker". */
  readonly #what: string;

  constructor(dir: string, name: string, what: string) {
    this.dir = dir;
    this.#name = name;
    this.#what = what;
  }

  get logFile(): string {
    return join(this.dir, `${this.#name}.log`);
  }

  get #pidFile(): string {
    return join(this.dir, `${this.#name}.pid`);
  }

  /** Pid of the running process, or undefined. */
  pid(): number | undefined {
    if (!existsSync(this.#pidFile)) return undefined;
    const pid = Number(readFileSync(this.#pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && isProcessAlive(pid) ? pid : undefined;
  }

  /** Starts `java <args>` detached, its output appended to the log; returns its pid. */
  spawn(args: readonly string[]): number {
    const java = requireJava();
    mkdirSync(this.dir, { recursive: true });
    const log = openSync(this.logFile, 'a');
    const child = spawn(java, args, { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    if (child.pid === undefined) {
      throw new FatalError(`could not spawn java for ${this.#what}`, { code: ErrorCode.SERVER_START_FAILED });
    }
    writeFileSync(this.#pidFile, String(child.pid));
    child.unref();
    return child.pid;
  }

  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid !== undefined) await stopProcess(pid, 20_000);
  }
}

/** JVM flags both services start with: bounded heap, quick start-up, no display. */
export function jvmFlags(heapMb: number, initialMb: number): string[] {
  return [
    `-Xmx${heapMb}m`,
    `-Xms${Math.min(heapMb, initialMb)}m`,
    '-XX:+UseG1GC',
    '-XX:TieredStopAtLevel=1',
    '-Djava.awt.headless=true',
  ];
}
