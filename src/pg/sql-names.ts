/** Quoting of SQL identifiers and literals, for the few statements that cannot take parameters. */

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** `"schema"."table"` */
export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** Splits `schema.table` (as written in the config) into its parts. */
export function splitTableName(name: string): { schema: string; table: string } {
  const dot = name.indexOf('.');
  return { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}

/** Names pgbisync gives its objects on a node; one place so setup, run and teardown agree. */
export const objectNames = {
  slot: (node: string) => `pgbisync_${node}`,
  publication: (node: string) => `pgbisync_${node}`,
  /**
   * The physical slot that keeps the node's commit times (src/operate/stamp-keeper.ts). Node names start
   * with a letter, so `pgbisync__...` is never another node's capture slot.
   */
  stampSlot: (node: string) => `pgbisync__stamps_${node}`,
  /**
   * The replication origin of transactions applied on `targetNode` on behalf of `sourceNode`. Origins
   * belong to the server, not to a database, and a session holds one at a time: two nodes that are
   * databases of one server each need their own. `@` cannot occur in a node name, so the source node is
   * read back unambiguously (pgbisync.origin_node).
   */
  origin: (sourceNode: string, targetNode: string) => `pgbisync_${sourceNode}@${targetNode}`,
  /** The origin name of earlier versions (one per source node, shared by the databases of a server). */
  legacyOrigin: (sourceNode: string) => `pgbisync_${sourceNode}`,
  originPrefix: 'pgbisync_',
  schema: 'pgbisync',
};
