/**
 * Many one-statement source transactions in one round trip, each still its own target transaction.
 *
 * A one-row source transaction is one statement (the change with the origin setup and the progress
 * write in front, ./transaction-writer.ts). Sent one by one, each pays the backend for what surrounds
 * it: the Bind's copy and the activity report of the statement's text (~5 KB: two byte-wise scans on
 * some builds) and the flush of ReadyForQuery after its Sync. Here a run of such transactions goes out
 * as one `CALL` of a temporary PL/pgSQL procedure that executes each transaction's statement with its
 * parameters and COMMITs after it: per transaction the same statement, plan, origin commit LSN and
 * time, progress write and commit as before; a failure stops the procedure there with the transactions
 * before it committed, as a failure in the pipeline does (and what follows fails the progress check,
 * ../offsets/apply-progress.ts). Measured on the bench's PostgreSQL 18: 130 -> 87 us of backend CPU per
 * one-row transaction (docs/performance.md).
 *
 * The procedure takes one `text[]` per statement parameter and an `int[]` naming which of its
 * statements each transaction runs; it lives in the session's temporary schema (made when a run first
 * needs it; needs the TEMPORARY privilege on the database and PL/pgSQL, both defaults: without them
 * transactions go one by one, see {@link callsAvailable}). A statement qualifies when every parameter
 * reference is cast (it reads its parameters as text, as the one-by-one path sends them).
 */
import type { Queryable } from '../pg/table-catalog.ts';

/** One queued transaction's statement: text and parameter values. */
export interface CallableStatement {
  readonly text: string;
  readonly values: readonly unknown[];
}

/** A procedure that runs the given statements (by `index` in its `CASE`). */
export interface ApplyProcedure {
  readonly name: string;
  /** The statements it runs -> the selector value of each. */
  readonly index: ReadonlyMap<string, number>;
  /** Parameters per statement it passes (the most any of its statements takes). */
  readonly params: number;
  /** The `CALL` text: `$1` the selectors, `$2..` one text array per parameter. */
  readonly call: string;
  /** CREATE PROCEDURE, to send before its first call; undefined once sent. */
  create: string | undefined;
}

/** Most statements one procedure covers (a workload's distinct one-row statements: a few per table). */
const MAX_STATEMENTS = 16;
/** Procedures kept per session; past it, transactions whose statements none covers go one by one. */
const MAX_PROCEDURES = 32;
/** PostgreSQL's limit on a routine's arguments (FUNC_MAX_ARGS) minus the selectors and the count. */
const MAX_PARAMS = 98;
const TAG = '$pgbisync_call$';
/** Names in the procedure: prefixed so that no user column or alias is taken for them. */
const ROW = 'pgbisync_row';

/**
 * Whether the session may make the procedures: TEMPORARY on the database and PL/pgSQL installed
 * (both by default; a database without them applies transaction by transaction).
 */
export async function callsAvailable(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(
    `SELECT has_database_privilege(current_database(), 'TEMPORARY')
        AND EXISTS (SELECT 1 FROM pg_language WHERE lanname = 'plpgsql') AS ok`,
  );
  return r.rows[0]?.ok === true;
}

/**
 * `text` with every parameter reference `$n` replaced by `replace(n)`, or undefined when one is not
 * followed by a cast (`::`), the text holds the procedure's quoting tag, or it is not plain SQL text
 * this scanner reads (a dollar-quoted string, a comment). Quoted identifiers and literals are copied.
 */
export function rewriteParams(text: string, replace: (n: number) => string): string | undefined {
  if (text.includes(TAG) || text.includes('--') || text.includes('/*')) return undefined;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      // A literal or quoted identifier: to its closing quote (a doubled quote stays inside).
      let j = i + 1;
      while (j < text.length && !(text[j] === c && text[j + 1] !== c)) j += text[j] === c ? 2 : 1;
      if (j >= text.length) return undefined;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '$') {
      let j = i + 1;
      while (j < text.length && text[j]! >= '0' && text[j]! <= '9') j++;
      if (j === i + 1 || !(text.startsWith('::', j) || castInParentheses(text, i, j))) return undefined;
      out += replace(Number(text.slice(i + 1, j)));
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** `($n)::type` (a parenthesized parameter cast, not a function's argument `f($n)::type`). */
function castInParentheses(text: string, start: number, end: number): boolean {
  return text.startsWith(')::', end) && text[start - 1] === '(' && !/[\w"]/.test(text[start - 2] ?? '');
}

/**
 * `WITH ctes query` as `WITH ctes, pgbisync_out AS (query) SELECT count(*) INTO <into> FROM
 * pgbisync_out` (PL/pgSQL runs a statement with data-modifying CTEs to completion this way; a FOR loop
 * would open it as a cursor, which PostgreSQL refuses): the count is its number of result rows.
 * Undefined unless the text is CTEs of the form `name AS (...)` followed by a SELECT.
 */
export function countingInto(text: string, into: string): string | undefined {
  if (!text.startsWith('WITH ')) return undefined;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < text.length && !(text[j] === c && text[j + 1] !== c)) j += text[j] === c ? 2 : 1;
      i = j;
    } else if (c === '(') {
      depth++;
    } else if (c === ')' && --depth === 0) {
      const rest = text.slice(i + 1).trimStart();
      if (rest.startsWith(',')) continue;
      if (!rest.startsWith('SELECT ')) return undefined;
      return `${text.slice(0, i + 1)}, pgbisync_out AS (${rest}) SELECT count(*) INTO ${into} FROM pgbisync_out`;
    }
  }
  return undefined;
}

/** Whether `values` can travel as text array elements exactly as pg sends each alone. */
export function scalarValues(values: readonly unknown[]): boolean {
  if (values.length > MAX_PARAMS) return false;
  for (const v of values) {
    const t = typeof v;
    if (
      v !== null &&
      v !== undefined &&
      t !== 'string' &&
      t !== 'number' &&
      t !== 'boolean' &&
      t !== 'bigint'
    ) {
      return false;
    }
  }
  return true;
}

/** The procedures of one session (one per set of statements, reused by any run within its set). */
export class ApplyProcedures {
  readonly #procedures: ApplyProcedure[] = [];
  /** Statement text -> its body inside a procedure; undefined when it does not qualify. */
  readonly #bodies = new Map<string, { readonly sql: string; readonly params: number } | undefined>();

  /** Whether `st` may run inside a procedure (see the module comment). */
  qualifies(st: CallableStatement): boolean {
    return scalarValues(st.values) && this.#body(st.text) !== undefined;
  }

  /**
   * A procedure running every statement of `run` (which all qualify), made if none covers them yet;
   * undefined past MAX_PROCEDURES or MAX_STATEMENTS distinct statements in the run.
   */
  procedureFor(run: readonly CallableStatement[]): ApplyProcedure | undefined {
    const texts = [...new Set(run.map((st) => st.text))];
    const covering = this.#procedures.findLast((p) => texts.every((t) => p.index.has(t)));
    if (covering !== undefined) return covering;
    if (this.#procedures.length >= MAX_PROCEDURES) return undefined;
    // Grown from the newest procedure where it fits: a workload's statements end up in one.
    const newest = this.#procedures.at(-1);
    const grown =
      newest === undefined ? texts : [...newest.index.keys(), ...texts.filter((t) => !newest.index.has(t))];
    const covered = grown.length <= MAX_STATEMENTS ? grown : texts;
    if (covered.length > MAX_STATEMENTS) return undefined;
    const procedure = this.#make(covered);
    this.#procedures.push(procedure);
    return procedure;
  }

  /**
   * What to send for `run` (two or more qualified statements): the procedure's CREATE the first time,
   * then its CALL; undefined when no procedure can take the run (it goes statement by statement).
   */
  queriesFor(
    run: readonly CallableStatement[],
  ): { text: string; values: unknown[] | undefined }[] | undefined {
    const procedure = this.procedureFor(run);
    if (procedure === undefined) return undefined;
    const create = procedure.create === undefined ? [] : [{ text: procedure.create, values: undefined }];
    procedure.create = undefined;
    return [...create, { text: procedure.call, values: ApplyProcedures.callValues(procedure, run) }];
  }

  /** The conflicts a CALL's transactions recorded, from its result. */
  static conflicts(result: { readonly rows: readonly { readonly pgbisync_conflicts?: unknown }[] }): number {
    return Number(result.rows[0]?.pgbisync_conflicts);
  }

  /** The parameters of a `CALL` of `procedure` for `run`: selectors, then one text array per parameter. */
  static callValues(procedure: ApplyProcedure, run: readonly CallableStatement[]): unknown[] {
    const selectors = run.map((st) => procedure.index.get(st.text)!);
    const columns: (string | null)[][] = Array.from(
      { length: procedure.params },
      () => new Array(run.length),
    );
    for (const [i, st] of run.entries()) {
      for (let p = 0; p < procedure.params; p++) {
        const v = st.values[p];
        columns[p]![i] = v === null || v === undefined ? null : String(v);
      }
    }
    return [selectors, ...columns];
  }

  #body(text: string): { readonly sql: string; readonly params: number } | undefined {
    if (this.#bodies.has(text)) return this.#bodies.get(text);
    let params = 0;
    const sql = rewriteParams(text, (n) => {
      params = Math.max(params, n);
      return `${ROW}.c${n}`;
    });
    const counting = sql === undefined ? undefined : countingInto(sql, 'pgbisync_n');
    const body = counting === undefined || params > MAX_PARAMS ? undefined : { sql: counting, params };
    this.#bodies.set(text, body);
    return body;
  }

  #make(texts: readonly string[]): ApplyProcedure {
    const name = `pg_temp.pgbisync_apply_${this.#procedures.length + 1}`;
    const params = Math.max(...texts.map((t) => this.#body(t)!.params));
    const branches = texts
      .map(
        (t, i) => `WHEN ${i + 1} THEN
        ${this.#body(t)!.sql};
        pgbisync_conflicts := pgbisync_conflicts + pgbisync_n;`,
      )
      .join('\n      ');
    const args = Array.from({ length: params }, (_, p) => `pgbisync_p${p + 1} text[]`).join(', ');
    const arrays = ['pgbisync_k', ...Array.from({ length: params }, (_, p) => `pgbisync_p${p + 1}`)].join(
      ', ',
    );
    const columns = ['k', ...Array.from({ length: params }, (_, p) => `c${p + 1}`)].join(', ');
    // use_column: a table's column named like a variable here means the column.
    const create = `CREATE PROCEDURE ${name}(INOUT pgbisync_conflicts bigint, pgbisync_k int[], ${args})
LANGUAGE plpgsql AS ${TAG}
#variable_conflict use_column
DECLARE
  ${ROW} record;
  pgbisync_n bigint;
BEGIN
  pgbisync_conflicts := 0;
  FOR ${ROW} IN SELECT * FROM unnest(${arrays}) AS pgbisync_u(${columns}) LOOP
    CASE ${ROW}.k
      ${branches}
    END CASE;
    COMMIT;
  END LOOP;
END ${TAG}`;
    const call = `CALL ${name}(0, ${['$1::int[]', ...Array.from({ length: params }, (_, p) => `$${p + 2}::text[]`)].join(', ')})`;
    return { name, index: new Map(texts.map((t, i) => [t, i + 1])), params, call, create };
  }
}
