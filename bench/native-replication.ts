/**
 * The reference: PostgreSQL's built-in logical replication db1 -> db2 (CREATE PUBLICATION on db1,
 * CREATE SUBSCRIPTION on db2 connecting to db1, no initial copy). CPU counted: the walsender on db1
 * and the apply worker on db2.
 */
import type pg from 'pg';
import { connect, sleep } from './db.ts';
import { ProcessGroup } from './proc-stats.ts';
import type { CpuBreakdown, ReplicationFigures, ReplicationUnderTest } from './replication.ts';

const PUBLICATION = 'bench_pub';
const SUBSCRIPTION = 'bench_sub';

export interface NativeOptions {
  /** Bench database URLs of the publisher (db1) and subscriber (db2). */
  readonly sourceUrl: string;
  readonly targetUrl: string;
  readonly tables: readonly string[];
}

export class NativeReplication implements ReplicationUnderTest {
  readonly label = 'native logical replication';
  readonly #o: NativeOptions;
  readonly #processes = new ProcessGroup();
  #source: pg.Client | undefined;
  #target: pg.Client | undefined;

  constructor(options: NativeOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    this.#source = await connect(this.#o.sourceUrl);
    this.#target = await connect(this.#o.targetUrl);
    await this.#source.query(`CREATE PUBLICATION ${PUBLICATION} FOR TABLE ${this.#o.tables.join(', ')}`);
    const src = new URL(this.#o.sourceUrl);
    const conninfo = `host=${src.hostname} port=${src.port} dbname=${src.pathname.slice(1)} user=${decodeURIComponent(src.username)}`;
    await this.#target.query(
      `CREATE SUBSCRIPTION ${SUBSCRIPTION} CONNECTION '${conninfo}' PUBLICATION ${PUBLICATION} WITH (copy_data = false)`,
    );
    // The walsender and the apply worker start asynchronously.
    for (let i = 0; i < 300 && (await this.#pids()).length < 2; i++) await sleep(100);
    this.#processes.add(await this.#pids());
  }

  async #pids(): Promise<number[]> {
    const sender = await this.#source!.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_replication WHERE application_name = $1',
      [SUBSCRIPTION],
    );
    const worker = await this.#target!.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL',
      [SUBSCRIPTION],
    );
    return [...sender.rows, ...worker.rows].map((r) => r.pid);
  }

  async poll(): Promise<void> {
    this.#processes.poll();
  }

  cpu(): CpuBreakdown {
    return { postgres: this.#processes.cpuSeconds() };
  }

  async stop(): Promise<ReplicationFigures> {
    this.#processes.poll();
    const figures = { cpu: this.cpu(), peakRssMb: this.#processes.maxPrivateRssMb };
    await this.#target?.query(`DROP SUBSCRIPTION IF EXISTS ${SUBSCRIPTION}`); // drops the slot on db1 too
    await this.#source?.query(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
    await this.#source?.end();
    await this.#target?.end();
    return figures;
  }
}
