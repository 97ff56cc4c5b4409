/**
 * The SQL that selects what a node's copy sends (./snapshot.ts, ./snapshot-batches.ts): the row versions
 * and tombstones this node wrote, each with its own commit time.
 */
import { quoteLiteral } from '../pg/sql-names.ts';

/**
 * Keeps the row versions of `alias` that this node wrote: those its appliers wrote carry another
 * node's replication origin (`others`, their roident) and reach every node through that node's own
 * topic. Sending them as this node's would restamp them with this node's name on the other nodes, and a
 * later write of this node with a clock behind could then replace them there (a source's own versions
 * are replaced whatever the clocks say, ../conflicts/policy.ts) but not where the true writer's stamp
 * is kept: the nodes would diverge. A version of unknown origin (frozen, or from before
 * track_commit_timestamp) is this node's. Joins `v`, the version's commit time and origin.
 */
export const OWN_VERSIONS = (alias: string, others: string) =>
  `CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(${alias}.xmin) v
   WHERE coalesce(v.roident, 0) <> ALL (${quoteLiteral(others)}::oid[])`;

/** The version's commit time (`v`, see OWN_VERSIONS) in microseconds as text; the Unix epoch when unknown. */
export const COMMIT_US = 'coalesce((extract(epoch FROM v.timestamp) * 1000000)::bigint, 0)::text';
