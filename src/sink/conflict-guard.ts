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
  switch (policy.policy) {
    case 'last-writer-wins':
      return lww;
    case 'source-wins':
      return 'true';
    case 'node-priority': {
      const p = quoteLiteral(policy.priorityNode);
      return `((${src})::text = ${p} OR (${nodeExpr} <> ${p} AND ${lww}))`;
    }
    default:
      return policy satisfies never;
  }
}
