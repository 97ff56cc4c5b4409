/**
 * The torture test's tables. Each names two SQL expressions over its own columns that the workload's
 * RETURNING and the checker's SELECT share, so both see a row the same way:
 * - `key`: the primary key as JSON text;
 * - `image`: the whole row as JSON text (large values by their md5 and length, so TOASTed values compare
 *   without moving them).
 * Every session that evaluates them runs with the settings of SESSION_OPTIONS (text forms of timestamps
 * and numbers do not depend on the server's defaults).
 */
export interface TortureTable {
  readonly name: string;
  /** The table on node `node` (0-based): nodes may differ where the sync allows it (partitions). */
  readonly ddl: string | ((node: number) => string);
  readonly key: string;
  readonly image: string;
  /** Rows that the checker leaves out of the last-writer-wins model (still compared across nodes). */
  readonly modelled: boolean;
}

/** libpq `options` for every workload and checker session. */
export const SESSION_OPTIONS =
  '-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c IntervalStyle=iso_8601';

export const TABLES: readonly TortureTable[] = [
  {
    name: 't_int',
    ddl: 'CREATE TABLE t_int (id bigint PRIMARY KEY, v int NOT NULL, note text, payload text)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'v', v, 'note', note, 'payload', md5(payload), 'len', length(payload))::text`,
    modelled: true,
  },
  {
    name: 't_uuid',
    ddl: 'CREATE TABLE t_uuid (id uuid PRIMARY KEY, v int NOT NULL, note text)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'v', v, 'note', note)::text`,
    modelled: true,
  },
  {
    name: 't_comp',
    // Partitioned, differently on the first node than on the others: its changes travel by the
    // partitioned table and each node routes them to its own partitions.
    ddl: (node) =>
      `CREATE TABLE t_comp (a int, b text, v int NOT NULL, PRIMARY KEY (a, b)) PARTITION BY RANGE (a);
       ${
         node === 0
           ? `CREATE TABLE t_comp_low PARTITION OF t_comp FOR VALUES FROM (MINVALUE) TO (20);
              CREATE TABLE t_comp_high PARTITION OF t_comp FOR VALUES FROM (20) TO (MAXVALUE)`
           : `CREATE TABLE t_comp_a PARTITION OF t_comp FOR VALUES FROM (MINVALUE) TO (10);
              CREATE TABLE t_comp_b PARTITION OF t_comp FOR VALUES FROM (10) TO (30);
              CREATE TABLE t_comp_rest PARTITION OF t_comp DEFAULT`
       }`,
    key: 'jsonb_build_array(a, b)::text',
    image: `jsonb_build_object('a', a, 'b', b, 'v', v)::text`,
    modelled: true,
  },
  {
    name: 't_text',
    ddl: 'CREATE TABLE t_text (k text PRIMARY KEY, v int NOT NULL, doc jsonb)',
    key: 'jsonb_build_array(k)::text',
    image: `jsonb_build_object('k', k, 'v', v, 'doc', doc)::text`,
    modelled: true,
  },
  {
    name: 'parent',
    ddl: 'CREATE TABLE parent (id bigint PRIMARY KEY, name text NOT NULL)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'name', name)::text`,
    modelled: true,
  },
  {
    name: 'child',
    ddl: 'CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent (id), v int NOT NULL)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'parent_id', parent_id, 'v', v)::text`,
    modelled: true,
  },
  {
    name: 'ledger',
    ddl: 'CREATE TABLE ledger (id uuid PRIMARY KEY, node text NOT NULL, n bigint NOT NULL, amount int NOT NULL)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'node', node, 'n', n, 'amount', amount)::text`,
    modelled: true,
  },
  {
    name: 'stamped',
    // A user trigger that stamps every write with the wall clock of the node that runs it: it must fire
    // where the application wrote, never again where pgbisync applies the row.
    ddl: `CREATE TABLE stamped (id int PRIMARY KEY, v int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
      CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
      CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stamped FOR EACH ROW EXECUTE FUNCTION stamp()`,
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'v', v, 'updated_at', updated_at)::text`,
    modelled: true,
  },
  {
    // With the workload kind `addtable`: written on every node from the start, added to the synced
    // tables while the sync runs (`pgbisync run` reloads its config), deleted from only after that.
    name: 't_late',
    ddl: 'CREATE TABLE t_late (id int PRIMARY KEY, v int NOT NULL, note text)',
    key: 'jsonb_build_array(id)::text',
    image: `jsonb_build_object('id', id, 'v', v, 'note', note)::text`,
    modelled: true,
  },
  {
    name: 'fence',
    ddl: 'CREATE TABLE fence (node text PRIMARY KEY, token text NOT NULL)',
    key: 'jsonb_build_array(node)::text',
    image: `jsonb_build_object('node', node, 'token', token)::text`,
    modelled: false,
  },
];

export function table(name: string): TortureTable {
  const t = TABLES.find((x) => x.name === name);
  if (t === undefined) throw new Error(`torture: no table ${name}`);
  return t;
}

/** `RETURNING` clause giving the key and image of each written row. */
export function returning(name: string): string {
  const t = table(name);
  return `RETURNING ${t.key} AS k, ${t.image} AS r`;
}
