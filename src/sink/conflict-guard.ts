/**
 * Conflict policies as SQL: "does the incoming change beat the version already here?"
 *
 * A version is (commit time, writing node). The commit time of a row version is
 * pg_xact_commit_timestamp(xmin) — for rows applied by pgbisync that is the SOURCE commit time, because
 * the applier sets it with pg_replication_origin_xact_setup — and the writing node comes from the
 * transaction's replication origin (`pgbisync_<node>`; no origin = this node). Unknown/frozen times count
 * as oldest. Comparing (time, node) as a row value gives a total order that every node evaluates the
 * same way, so all nodes keep the same winner (convergence).
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
 */
import { quoteLiteral } from '../pg/sql-names.ts';

export type ConflictPolicy =
  | { readonly policy: 'last-writer-wins' }
  | { readonly policy: 'source-wins' }
  | { readonly policy: 'node-priority'; readonly priorityNode: string };

/**
 * SQL boolean: incoming ($ts, $src) beats the existing version (`timeExpr`, `nodeExpr`).
 * `ts` and `src` are SQL expressions for the incoming commit time and source node (parameters).
 */
export function incomingWins(
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
