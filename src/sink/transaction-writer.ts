/**
 * Writes source transactions into the target node: each as exactly one target transaction, under the
 * source's replication origin with the source commit LSN and time (loop prevention + commit timestamps
 * for conflict resolution), with the applier's progress updated inside the same transaction
 * (exactly-once effect; ../offsets/apply-progress.ts). Many transactions go out in one pipelined round
 * trip. This module queues and settles them; each transaction's statements are planned by
 * ./apply-plan.ts from the tables of ./target-catalog.ts, and the session is set up by ./apply-session.ts
 * (with session_replication_role = replica: the target's ordinary triggers and rules do not fire on
 * applied rows).
 */
import type pg from 'pg';
import { CLOCK_WAIT_SQL, ClockGuard, DEFAULT_MAX_CLOCK_SKEW_MS } from '../conflicts/clock-skew.ts';
import type { ConflictPolicy } from '../conflicts/policy.ts';
import {
  type AppliedPosition,
  ApplyProgress,
  PROGRESS_STATEMENT,
  positionsWrite,
  type TopicPosition,
  withProgress,
} from '../offsets/apply-progress.ts';
import { newPgClient } from '../pg/client.ts';
import { withLeafPartitions } from '../pg/table-catalog.ts';
import { classifyApplyError } from '../runtime/pg-errors.ts';
import type { ApplyTransaction } from './apply-model.ts';
import { groupRuns, isoFromMicros, type PlannedStatement, planRun, splitByCommitTime } from './apply-plan.ts';
import { ApplyProcedures, type CallableStatement, callsAvailable } from './apply-procedures.ts';
import { setUpApplySession } from './apply-session.ts';
import { TargetCatalog } from './target-catalog.ts';

export interface AppliedCounts {
  /** Transactions written. */
  readonly applied: number;
  /** Transactions skipped as already applied (only the stored position moved). */
  readonly skipped: number;
  /** Conflicts recorded in pgbisync.conflicts by these transactions. */
  readonly conflicts: number;
}

export interface TransactionWriterOptions {
  readonly url: string;
  readonly targetNode: string;
  readonly sourceNode: string;
  readonly policyFor: (table: string) => ConflictPolicy;
  /** How a source TRUNCATE is applied: guarded (default; ./statement-builder.ts truncate) or skipped. */
  readonly truncate?: 'guarded' | 'skip';
  /**
   * A commit time up to this far ahead of the target's clock is waited for before it commits; further
   * ahead blocks (../conflicts/clock-skew.ts). Default DEFAULT_MAX_CLOCK_SKEW_MS.
   */
  readonly maxClockSkewMs?: number;
}

export class TransactionWriter {
  readonly #o: TransactionWriterOptions;
  readonly #client: pg.Client;
  readonly #catalog: TargetCatalog;
  readonly #progress: ApplyProgress;
  readonly #clock: ClockGuard;
  /** Statement text -> name of its prepared statement on this connection (parsed once, then reused). */
  readonly #prepared = new Map<string, string>();
  /** A run's statement text -> the same statement with the progress CTEs in front. */
  readonly #combined = new Map<string, string>();
  /** Settles when the last submit() finished queueing. */
  #queueing: Promise<void> = Promise.resolve();
  /** A piece of a source transaction opened a target transaction that its last piece has not ended yet. */
  #pieceOpen = false;
  /** Why a transaction could not be queued: nothing after it may be (see submit). */
  #unusable: { readonly error: unknown } | undefined;
  /** Whether everything submitted so far committed (false once one failed), settled once known. */
  #settled: Promise<boolean> = Promise.resolve(true);
  /** Runs of one-statement transactions as one CALL each (./apply-procedures.ts), where the session may. */
  #calls: ApplyProcedures | undefined;

  constructor(options: TransactionWriterOptions) {
    this.#o = options;
    this.#client = newPgClient({
      connectionString: options.url,
      application_name: `pgbisync-apply-${options.sourceNode}`,
      // biome-ignore lint/suspicious/noExplicitAny: pg's typings lack the pipeline flag
      ...({ pipeline: true } as any),
    });
    this.#catalog = new TargetCatalog(options);
    const maxSkewMs = options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
    this.#progress = new ApplyProgress(options.sourceNode, maxSkewMs);
    this.#clock = new ClockGuard(options.sourceNode, options.targetNode, maxSkewMs);
  }

  /** Connects, binds the session to the source's replication origin and returns the stored progress. */
  async open(): Promise<AppliedPosition | undefined> {
    await this.#client.connect();
    await setUpApplySession(this.#client, this.#o);
    await this.#clock.measure(this.#client);
    if (await callsAvailable(this.#client)) this.#calls = new ApplyProcedures();
    return await this.#progress.read(this.#client);
  }

  /**
   * The stored positions of a source spread over several topics (see ApplyTransaction.topicPositions);
   * empty when there are none (or the table predates them: `pgbisync setup` adds it).
   */
  async topicPositions(): Promise<TopicPosition[]> {
    return await this.#progress.readTopicPositions(this.#client);
  }

  /** `tables` with the target's leaf partitions of the partitioned ones (their events name those). */
  async withPartitions(tables: readonly string[]): Promise<string[]> {
    return await withLeafPartitions(this.#client, tables);
  }

  /**
   * Runs `work` on this writer's session between its transactions: once every transaction queued so
   * far settled (a failure's ROLLBACK sent: none can interleave with `work`'s own transactions), before
   * any submitted later. Not while a piece of a source transaction is open (its target transaction is,
   * too) nor after a failure: then `work` does not run (undefined).
   */
  async between<T>(work: (session: pg.Client, catalog: TargetCatalog) => Promise<T>): Promise<T | undefined> {
    const previous = this.#queueing;
    const turn = Promise.withResolvers<void>();
    this.#queueing = turn.promise;
    await previous;
    try {
      if (this.#pieceOpen || this.#unusable !== undefined || !(await this.#settled)) return undefined;
      return await work(this.#client, this.#catalog);
    } finally {
      turn.resolve();
    }
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => undefined);
  }

  /**
   * Applies `txns` in order, each as one target transaction, pipelined. Transactions already applied
   * (commit LSN not after the last applied one; re-published by a restarted capture) only move the
   * stored Kafka position. Rejects on the first failure; transactions before it stay committed, none
   * after it does (each one's progress write requires its predecessor's), and the writer must then be
   * closed and reopened.
   */
  async apply(txns: readonly ApplyTransaction[]): Promise<AppliedCounts> {
    return (await this.submit(txns)).committed;
  }

  /**
   * Like {@link apply}, in two steps: resolves once the transactions are queued on the connection, with
   * `committed`, which settles as apply's result does. A caller may submit the next transactions before
   * the previous ones committed (the server then never waits for the client between them); they are
   * queued strictly after them, and a failure of an earlier one fails every later one.
   *
   * Rejects when a transaction cannot be queued (its table or a column is missing on the target): the
   * ones queued before it are left to commit, nothing after it is queued, and the rejection is the first
   * failure in commit order (an earlier queued transaction's, if one failed). The writer then takes no
   * more transactions: a later one would commit ahead of the one left out.
   */
  async submit(txns: readonly ApplyTransaction[]): Promise<{ committed: Promise<AppliedCounts> }> {
    // Queueing awaits (a table's catalog on first use): one caller at a time, in call order.
    const previous = this.#queueing;
    const turn = Promise.withResolvers<void>();
    this.#queueing = turn.promise;
    await previous;
    let applied = 0;
    let skipped = 0;
    /** Whether a transaction of `txns` commits (pieces that are not the last commit nothing). */
    let commits = false;
    const pending: Promise<unknown>[] = [];
    /** Results of the statements that end by recording conflicts (their row count is the number). */
    const conflictResults: Promise<unknown>[] = [];
    let unqueued: { readonly error: unknown } | undefined;
    // Corked, statements leave in a few large writes instead of one socket write each (pg corks only
    // around each statement's own messages); every FLUSH_EVERY_STATEMENTS the cork is lifted so the
    // server starts on the first transactions while the rest are still being built.
    const socket = (this.#client as unknown as PgInternals).connection?.stream;
    socket?.cork?.();
    let flushedAt = 0;
    /** One-statement transactions not sent yet: they go out together (see #sendRun). */
    let run: PlannedStatement[] = [];
    const send = (statements: readonly PlannedStatement[]) => {
      if (run.length > 0) pending.push(...this.#sendRun(run, conflictResults));
      run = [];
      pending.push(...this.#send(statements, conflictResults));
    };
    try {
      if (this.#unusable !== undefined) throw this.#unusable.error;
      for (const txn of txns) {
        if (txn.piece === 'first' || txn.piece === 'middle') {
          send(await this.#queuePiece(txn));
          continue;
        }
        if (txn.piece === undefined && this.#pieceOpen) {
          // The pieces written so far were of a transaction the grouper abandoned (published again from
          // its start): what they wrote goes, and this transaction is applied on its own.
          send([ROLLBACK]);
          this.#pieceOpen = false;
        }
        const duplicate = this.#progress.alreadyApplied(txn);
        if (duplicate) skipped++;
        else applied++;
        commits = true;
        // Only the last part of a split snapshot chunk moves the position (see ApplyProgress.holdWrite).
        const parts = splitByCommitTime(txn);
        for (const [i, part] of parts.entries()) {
          const statements = await this.#queue(part, duplicate, i === parts.length - 1);
          const only = parts.length === 1 && statements.length === 1 ? statements[0]! : undefined;
          if (only?.conflicts === true && this.#calls?.qualifies(only as CallableStatement) === true) {
            run.push(only);
            if (run.length >= MAX_CALL_TRANSACTIONS) send([]);
          } else {
            send(statements);
          }
        }
        // A duplicate too: its identity may move the watermark (a newer timeline of the source).
        this.#progress.queued(txn);
        if (pending.length - flushedAt >= FLUSH_EVERY_STATEMENTS) {
          flushedAt = pending.length;
          socket?.uncork?.();
          socket?.cork?.();
        }
      }
    } catch (error) {
      unqueued = { error };
      this.#unusable ??= unqueued;
    } finally {
      send([]); // what is queued goes out, before a failure too
      socket?.uncork?.();
      turn.resolve();
    }
    if (unqueued !== undefined) {
      // What was queued runs on: settled first, so that the caller closes the connection behind it and
      // learns of an earlier failure first (the one to fix first).
      const earlier = (await Promise.allSettled(pending)).find((r) => r.status === 'rejected');
      if (earlier !== undefined) throw await this.#rolledBack(earlier.reason);
      throw unqueued.error;
    }
    const committed = this.#settle(pending, conflictResults, { applied, skipped }, commits);
    committed.catch(() => undefined); // the caller's to handle; never an unhandled rejection meanwhile
    const before = this.#settled;
    this.#settled = committed.then(
      () => before,
      () => false,
    );
    return { committed };
  }

  async #settle(
    pending: readonly Promise<unknown>[],
    conflictResults: readonly Promise<unknown>[],
    counts: Omit<AppliedCounts, 'conflicts'>,
    commits: boolean,
  ): Promise<AppliedCounts> {
    const results = await Promise.allSettled(pending);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw await this.#rolledBack(failed.reason);
    if (commits) this.#progress.committed();
    let conflicts = 0;
    for (const result of await Promise.all(conflictResults)) {
      conflicts += (result as { rowCount?: number | null }).rowCount ?? 0;
    }
    return { ...counts, conflicts };
  }

  /**
   * The error of a failed queued statement, once the connection is out of the failed transaction block.
   * SQL the target rejects (a value it cannot take, a constraint...) will fail again until an operator
   * fixes the target: that stream blocks, with the cause (the applier names the column).
   */
  async #rolledBack(reason: unknown): Promise<unknown> {
    await this.#client.query('ROLLBACK').catch(() => undefined);
    return classifyApplyError(reason, `applying ${this.#o.sourceNode} -> ${this.#o.targetNode}`);
  }

  /**
   * The statements of one transaction, to be sent in order (the caller sends them before it builds the
   * next transaction's). A transaction whose changes make one statement (a single run, the common case)
   * is that one statement with the origin setup and the progress write as leading CTEs: a single
   * statement outside BEGIN is its own transaction. Otherwise: BEGIN, progress, one statement per run,
   * COMMIT.
   */
  async #queue(txn: ApplyTransaction, duplicate: boolean, last: boolean): Promise<PlannedStatement[]> {
    const tsIso = isoFromMicros(txn.commitTimeUs);
    const statements = duplicate ? [] : await this.#plan(txn, tsIso);
    // Committed only once the target's clock passed the commit time (../conflicts/clock-skew.ts): queued
    // first, it runs before the transaction's statements (or, for a last piece, before its commit).
    const clockWait: PlannedStatement[] =
      !duplicate && this.#clock.needsWait(txn.commitTimeUs, tsIso)
        ? [{ text: CLOCK_WAIT_SQL, values: [tsIso] }]
        : [];
    if (txn.piece === 'last') {
      // Its first pieces are applied in the open target transaction. A duplicate (re-published by a
      // restarted capture: known only now, from the commit LSN on its last record) is rolled back whole.
      // (Queries go out in the order they are made.)
      this.#pieceOpen = false;
      const progressValues = [tsIso, txn.sourceNode, ...this.#progress.nextWrite(txn)];
      if (duplicate) return [ROLLBACK, { text: PROGRESS_STATEMENT, values: progressValues }];
      return [...clockWait, ...statements, { text: PROGRESS_STATEMENT, values: progressValues }, COMMIT];
    }
    const positions = txn.topicPositions ?? [];
    if (positions.length > 0) statements.push(positionsWrite(txn.sourceNode, positions));
    const progress = last ? this.#progress.nextWrite(txn) : this.#progress.holdWrite(txn);
    const only = statements.length === 1 ? statements[0]! : undefined;
    if (only?.values !== undefined && only.text.startsWith('WITH ')) {
      const text = this.#withProgress(only.text, only.values.length);
      return [...clockWait, { ...only, text, values: [...only.values, ...progress] }];
    }
    const progressWrite = { text: PROGRESS_STATEMENT, values: [tsIso, txn.sourceNode, ...progress] };
    if (statements.length === 0) return [...clockWait, progressWrite];
    // BEGIN first, or the progress write (and the origin's commit LSN and time) would commit on its
    // own, ahead of the transaction it belongs to.
    return [...clockWait, BEGIN, progressWrite, ...statements, COMMIT];
  }

  /**
   * Queues a piece of a source transaction that more pieces follow (ApplyTransaction.piece): the first
   * opens the target transaction, none commits it or writes a position (the last piece does both, in
   * #queue). Nothing of it is visible on the target, nor counted as applied, before that commit.
   */
  async #queuePiece(txn: ApplyTransaction): Promise<PlannedStatement[]> {
    const statements = await this.#plan(txn, isoFromMicros(txn.commitTimeUs));
    const queued: PlannedStatement[] = [];
    if (txn.piece === 'first' && this.#pieceOpen) {
      // A first piece again: the open transaction's pieces were abandoned (see submit).
      queued.push(ROLLBACK);
      this.#pieceOpen = false;
    }
    if (!this.#pieceOpen) {
      queued.push(BEGIN);
      this.#pieceOpen = true;
    }
    queued.push(...statements);
    return queued;
  }

  /** The statements applying `txn`'s changes, one per run of same-kind changes of one table. */
  async #plan(txn: ApplyTransaction, tsIso: string): Promise<PlannedStatement[]> {
    const statements: PlannedStatement[] = [];
    for (const run of groupRuns(txn.changes)) {
      if (run.kind === 'truncate' && this.#o.truncate === 'skip') continue;
      const table = await this.#catalog.statements(run.table);
      statements.push(planRun(run, table, [tsIso, txn.sourceNode, this.#o.targetNode, run.table]));
    }
    return statements;
  }

  /** Sends `statements` in order (no await on results); the conflict-recording ones' results are kept. */
  #send(statements: readonly PlannedStatement[], conflictResults: Promise<unknown>[]): Promise<unknown>[] {
    return statements.map((st) => {
      const result = this.#query(st.text, st.values);
      if (st.conflicts) conflictResults.push(result);
      return result;
    });
  }

  /**
   * Sends a run of one-statement transactions (each qualified by ApplyProcedures): two or more as one
   * CALL of a procedure that commits each in turn (./apply-procedures.ts), its conflicts counted there.
   */
  #sendRun(run: readonly PlannedStatement[], conflictResults: Promise<unknown>[]): Promise<unknown>[] {
    const calls = run.length > 1 ? this.#calls?.queriesFor(run as readonly CallableStatement[]) : undefined;
    if (calls === undefined) return this.#send(run, conflictResults);
    const sent = calls.map((q) => this.#query(q.text, q.values));
    const counted = sent.at(-1)!.then((r) => ({ rowCount: ApplyProcedures.conflicts(r as pg.QueryResult) }));
    counted.catch(() => undefined); // read only once every statement succeeded (#settle)
    conflictResults.push(counted);
    return sent;
  }

  /**
   * Queues one statement: with parameters as a prepared statement, the others (BEGIN, TRUNCATE) as they
   * are. Its result is read later, by #settle or by submit's failure path; a rejection in between (the
   * server answers while submit still awaits a table's catalog, or submit gives up) must not count as
   * unhandled, which would end the whole process. So the promise is handled from the start.
   */
  #query(text: string, values: unknown[] | undefined): Promise<unknown> {
    const result =
      values === undefined
        ? this.#client.query(text)
        : this.#client.query({ name: this.#name(text), text, values });
    result.catch(() => undefined);
    return result;
  }

  /**
   * `text` (a WITH statement taking `params` parameters) with the progress CTEs in front. Cached per
   * statement, so the same string object comes back (its hash is computed once, not per transaction).
   */
  #withProgress(text: string, params: number): string {
    let combined = this.#combined.get(text);
    if (combined === undefined) {
      combined = withProgress(text, params);
      this.#combined.set(text, combined);
    }
    return combined;
  }

  /** The prepared statement name of `text` (pg parses a named statement once per connection). */
  #name(text: string): string {
    let name = this.#prepared.get(text);
    if (name === undefined) {
      name = `pgbisync_${this.#prepared.size + 1}`;
      this.#prepared.set(text, name);
    }
    return name;
  }
}

/** Statements queued between two socket writes (see apply). */
const FLUSH_EVERY_STATEMENTS = 64;
/** Most transactions in one CALL (the procedure's arrays hold one element per transaction). */
const MAX_CALL_TRANSACTIONS = 500;
const BEGIN: PlannedStatement = { text: 'BEGIN', values: undefined };
const COMMIT: PlannedStatement = { text: 'COMMIT', values: undefined };
const ROLLBACK: PlannedStatement = { text: 'ROLLBACK', values: undefined };

/** pg's connection internals used to cork the socket (absent members are simply not used). */
interface PgInternals {
  readonly connection?: { readonly stream?: { cork?(): void; uncork?(): void } };
}
