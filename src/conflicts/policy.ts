/**
 * The conflict policy: which of two versions of a row every node keeps. This is its one home: the names
 * the config accepts, the SQL guard the applier's statements embed (`incomingWinsSql`), its TypeScript
 * twin (`incomingWins`) from which verify --repair's order (`beats`) is derived, the resolution of the
 * config's per-table overrides, and the config's cross-field rule. ./policy.pg.test.ts runs one table of
 * cases through both forms on a real PostgreSQL.
 *
 * A version is (commit time, writing node). The commit time of a row version is
 * pg_xact_commit_timestamp(xmin) — for rows applied by pgbisync that is the SOURCE commit time, because
 * the applier sets it with pg_replication_origin_xact_setup — and the writing node comes from the
 * transaction's replication origin (`pgbisync_<node>@<target>`, read by pgbisync.origin_node; no origin = this node).
 *
 * An unknown commit time (a row written while track_commit_timestamp was off, or whose commit timestamp
 * PostgreSQL truncated) is the Unix epoch, on every node and in every form: pgbisync.version_time gives
 * 'epoch', the TypeScript form's null compares as 0, and the snapshot sends such a row stamped 0
 * (../source/snapshot.ts). One value everywhere matters: when the snapshot sent the epoch but the target
 * compared its own unknown row as '-infinity', each node took the other's row and the nodes ended
 * swapped. With the epoch on both sides the node name breaks the tie, the same way on every node.
 * Comparing (time, node)
 * as a row value gives a total order that every node evaluates the same way, so all nodes keep the same
 * winner (convergence).
 *
 * A version written by the incoming change's own source is not a conflict under any policy: the incoming
 * change is that source's later write (an applier receives each source's changes of a key in commit
 * order), so it replaces the version whatever the clocks say. Commit times of one node are not always
 * increasing: a wall clock stepped back (NTP on a VM) would otherwise drop the node's later writes on
 * every other node, silently and for good. PostgreSQL's own subscriptions and pglogical likewise only
 * resolve a conflict when the local version's origin differs.
 *
 * - last-writer-wins: the later commit wins; equal times are broken by the greater node name.
 * - source-wins: the incoming change always wins.
 * - node-priority: the priority node's writes always win; between others, last-writer-wins.
 *
 * Equal times are broken by node name, compared as SQL text in the database's default collation and as
 * UTF-16 code units in TypeScript. For the names the config allows (a-z, 0-9, _) these agree under the C
 * collations (byte order); a linguistic collation may not (ICU en-US puts 'b1' after 'b_2').
 */
import { quoteLiteral } from '../pg/sql-names.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';

/** The policies, as the config names them (its enum is built from this list). */
export const CONFLICT_POLICY_NAMES = ['last-writer-wins', 'source-wins', 'node-priority'] as const;
export type ConflictPolicyName = (typeof CONFLICT_POLICY_NAMES)[number];

export type ConflictPolicy =
  | { readonly policy: 'last-writer-wins' }
  | { readonly policy: 'source-wins' }
  | { readonly policy: 'node-priority'; readonly priorityNode: string };

// ---- SQL form: the guard of the applier's statements (../sink/statement-builder.ts) ----

/**
 * SQL boolean: incoming ($ts, $src) beats the existing version (`timeExpr`, `nodeExpr`).
 * `ts` and `src` are SQL expressions for the incoming commit time and source node (parameters);
 * `timeExpr` is never NULL (pgbisync.version_time gives the Unix epoch for an unknown time).
 */
export function incomingWinsSql(
  policy: ConflictPolicy,
  ts: string,
  src: string,
  timeExpr: string,
  nodeExpr: string,
): string {
  const lww = `((${ts})::timestamptz, (${src})::text) > (${timeExpr}, ${nodeExpr})`;
  const sameSource = `${nodeExpr} = (${src})::text`;
  switch (policy.policy) {
    case 'last-writer-wins':
      return `(${sameSource} OR ${lww})`;
    case 'source-wins':
      return 'true';
    case 'node-priority': {
      const p = quoteLiteral(policy.priorityNode);
      return `((${src})::text = ${p} OR ${sameSource} OR (${nodeExpr} <> ${p} AND ${lww}))`;
    }
    default:
      return policy satisfies never;
  }
}

// ---- TypeScript form: the same predicate over versions read from the nodes ----

/** A row version as the TypeScript form sees it. */
export interface RowVersion {
  /** Commit time in microseconds since the Unix epoch; null when unknown, which compares as 0 (SQL 'epoch'). */
  readonly commitUs: bigint | null;
  readonly node: string;
}

/** The SQL form's row comparison `(time, node) > (time, node)`, an unknown time the Unix epoch. */
export function later(a: RowVersion, b: RowVersion): boolean {
  const at = a.commitUs ?? 0n;
  const bt = b.commitUs ?? 0n;
  if (at !== bt) return at > bt;
  return a.node > b.node;
}

/**
 * Does `incoming`, a change from the node `incoming.node`, beat `existing`? {@link incomingWinsSql} in
 * TypeScript, case for case.
 */
export function incomingWins(policy: ConflictPolicy, incoming: RowVersion, existing: RowVersion): boolean {
  const sameSource = existing.node === incoming.node;
  switch (policy.policy) {
    case 'last-writer-wins':
      return sameSource || later(incoming, existing);
    case 'source-wins':
      return true;
    case 'node-priority': {
      const p = policy.priorityNode;
      return incoming.node === p || sameSource || (existing.node !== p && later(incoming, existing));
    }
    default:
      return policy satisfies never;
  }
}

/**
 * Of two versions of a row, held by two nodes, does `a` win? verify --repair's order: it has no incoming
 * change, only two versions to make equal. `a` wins when it passes the guard against `b` and `b` does
 * not pass it against `a`; where the guard lets either through (both from one node, or source-wins) the
 * later (time, node) wins. So exactly one of two different versions wins, none of two equal ones, and the
 * winner's repair write always passes the applier's guard on the loser's node.
 */
export function beats(policy: ConflictPolicy, a: RowVersion, b: RowVersion): boolean {
  return incomingWins(policy, a, b) && (!incomingWins(policy, b, a) || later(a, b));
}

// ---- Config: resolution and the cross-field rule ----

/** A policy as the config states it: the `conflicts` section or one of its `tables` overrides. */
export interface PolicySetting {
  readonly policy: ConflictPolicyName;
  readonly priorityNode?: string | undefined;
}

/** The config's `conflicts` section: the default policy and per-table overrides ('schema.table'). */
export interface PolicySettings extends PolicySetting {
  readonly tables: Readonly<Record<string, PolicySetting>>;
}

/** A broken cross-field rule: the field path in the config and what is wrong with it. */
export interface PolicyProblem {
  readonly path: string;
  readonly message: string;
}

type Resolved = { readonly policy: ConflictPolicy } | { readonly problem: PolicyProblem };

/**
 * The policy a setting at `base` states, or the cross-field rule it breaks: node-priority needs
 * priorityNode, and a priorityNode (under any policy) must name one of `nodes` (not checked without them).
 */
function resolve(setting: PolicySetting, base: string, nodes: ReadonlySet<string> | undefined): Resolved {
  const path = `${base}.priorityNode`;
  const node = setting.priorityNode;
  if (node !== undefined && nodes !== undefined && !nodes.has(node)) {
    return { problem: { path, message: `priorityNode '${node}' is not one of the nodes` } };
  }
  switch (setting.policy) {
    case 'last-writer-wins':
    case 'source-wins':
      return { policy: { policy: setting.policy } };
    case 'node-priority':
      if (node === undefined) return { problem: { path, message: 'node-priority needs priorityNode' } };
      return { policy: { policy: setting.policy, priorityNode: node } };
    default:
      return setting.policy satisfies never;
  }
}

const tablePath = (table: string) => `conflicts.tables.${table}`;

/** Checks the `conflicts` section against the configured node names: the first broken rule, if any. */
export function checkPolicySettings(
  settings: PolicySettings,
  nodes: ReadonlySet<string>,
): PolicyProblem | undefined {
  const all: [string, PolicySetting][] = [['conflicts', settings]];
  for (const [table, setting] of Object.entries(settings.tables)) all.push([tablePath(table), setting]);
  for (const [base, setting] of all) {
    const r = resolve(setting, base, nodes);
    if ('problem' in r) return r.problem;
  }
  return undefined;
}

/**
 * The policy of each table: its override, else the default. Resolved up front; a setting that breaks the
 * cross-field rule (a config that skipped the loader's check) throws, naming its field.
 */
export function policyResolver(settings: PolicySettings): (table: string) => ConflictPolicy {
  const policyAt = (setting: PolicySetting, base: string): ConflictPolicy => {
    const r = resolve(setting, base, undefined);
    if ('policy' in r) return r.policy;
    throw new FatalError(`${r.problem.path}: ${r.problem.message}`, { code: ErrorCode.CONFIG_INVALID });
  };
  const fallback = policyAt(settings, 'conflicts');
  const overrides = new Map(
    Object.entries(settings.tables).map(([table, setting]) => [table, policyAt(setting, tablePath(table))]),
  );
  return (table) => overrides.get(table) ?? fallback;
}
