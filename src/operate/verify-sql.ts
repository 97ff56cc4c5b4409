/**
 * verify's SQL: the session settings that make row text comparable across nodes, the per-table chunk and
 * hash queries, and the schema comparison that decides whether rows can be compared at all.
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent } from '../pg/sql-names.ts';
import type { CatalogTable } from '../pg/table-catalog.ts';

/** Session settings that make `ROW(...)::text` the same on every node for the same values. */
export async function prepareComparableSession(db: pg.Client): Promise<void> {
  await db.query(
    `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
     SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0`,
  );
}

/** SQL over one table, with key bounds as text parameters cast to the key column types. */
export class TableSql {
  readonly catalog: CatalogTable;
  readonly qualified: string;
  readonly #keys: string[];
  readonly #keyTypes: string[];
  readonly #rowText: string;

  constructor(catalog: CatalogTable) {
    this.catalog = catalog;
    this.qualified = qualifiedName(catalog.schema, catalog.table);
    this.#keys = catalog.primaryKey.map((k) => `t.${quoteIdent(k)}`);
    const types = new Map(catalog.columns.map((c) => [c.name, c.type]));
    this.#keyTypes = catalog.primaryKey.map((k) => types.get(k) ?? 'text');
    this.#rowText = `ROW(${catalog.columns.map((c) => `t.${quoteIdent(c.name)}`).join(', ')})::text`;
  }

  get keyColumns(): readonly string[] {
    return this.catalog.primaryKey;
  }

  /** `WHERE (pk) > (lower) AND (pk) <= (upper)`; either bound may be absent. */
  #range(lower: readonly string[] | undefined, upper: readonly string[] | undefined, values: unknown[]) {
    const tuple = `(${this.#keys.join(', ')})`;
    const bound = (key: readonly string[]) => {
      const params = key.map((v, i) => {
        values.push(v);
        return `$${values.length}::${this.#keyTypes[i]}`;
      });
      return `(${params.join(', ')})`;
    };
    const parts: string[] = [];
    if (lower !== undefined) parts.push(`${tuple} > ${bound(lower)}`);
    if (upper !== undefined) parts.push(`${tuple} <= ${bound(upper)}`);
    return parts.length === 0 ? '' : `WHERE ${parts.join(' AND ')}`;
  }

  /** The next `limit` rows after `lower` on the reference: count, hash and last key in one scan. */
  referenceChunk(lower: readonly string[] | undefined, limit: number): [string, unknown[]] {
    const values: unknown[] = [];
    const where = this.#range(lower, undefined, values);
    const aliases = this.#keys.map((_, i) => `k${i}`);
    const text = `WITH s AS MATERIALIZED (
        SELECT ${this.#keys.map((k, i) => `${k} AS k${i}`).join(', ')}, ${this.#rowText} AS "~r"
          FROM ${this.qualified} t ${where} ORDER BY ${this.#keys.join(', ')} LIMIT ${limit})
      SELECT (SELECT count(*) FROM s)::int AS n,
             (SELECT md5(string_agg(s."~r", E'\\n' ORDER BY ${aliases.join(', ')})) FROM s) AS h,
             (SELECT ARRAY[${aliases.map((a) => `${a}::text`).join(', ')}] FROM s
               ORDER BY ${aliases.map((a) => `${a} DESC`).join(', ')} LIMIT 1) AS last`;
    return [text, values];
  }

  /** Count and hash of the rows in (lower, upper]: the same text as referenceChunk hashes. */
  rangeHash(lower: readonly string[] | undefined, upper: readonly string[] | undefined): [string, unknown[]] {
    const values: unknown[] = [];
    const where = this.#range(lower, upper, values);
    const text = `SELECT count(*)::int AS n, md5(string_agg(${this.#rowText}, E'\\n' ORDER BY ${this.#keys.join(', ')})) AS h
      FROM ${this.qualified} t ${where}`;
    return [text, values];
  }

  /** (key, md5(row)) of the rows in (lower, upper], in key order, at most `limit` when given. */
  rowHashes(
    lower: readonly string[] | undefined,
    upper: readonly string[] | undefined,
    limit?: number,
  ): [string, unknown[]] {
    const values: unknown[] = [];
    const where = this.#range(lower, upper, values);
    const text = `SELECT ARRAY[${this.#keys.map((k) => `${k}::text`).join(', ')}] AS k, md5(${this.#rowText}) AS h
      FROM ${this.qualified} t ${where} ORDER BY ${this.#keys.join(', ')}${limit === undefined ? '' : ` LIMIT ${limit}`}`;
    return [text, values];
  }
  /** md5(row) of the rows with these keys, by index into `keys` (absent keys return no row). */
  hashesByKey(keys: readonly (readonly string[])[]): [string, unknown[]] {
    const pk = this.catalog.primaryKey;
    const values = pk.map((_, j) => keys.map((k) => k[j] ?? null));
    const text = `SELECT (o.i - 1)::int AS i, md5(${this.#rowText}) AS h
      FROM unnest(${pk.map((_, j) => `$${j + 1}::text[]`).join(', ')}) WITH ORDINALITY AS o(${pk.map((_, j) => `k${j}`).join(', ')}, i)
      JOIN ${this.qualified} t ON ${pk.map((k, j) => `t.${quoteIdent(k)} = o.k${j}::${this.#keyTypes[j]}`).join(' AND ')}`;
    return [text, values];
  }
}

/** Null when both nodes have the same columns (name and type) and primary key; else what differs. */
export function schemaDifference(
  a: CatalogTable,
  b: CatalogTable | undefined,
  aNode: string,
  bNode: string,
): string | null {
  const name = `${a.schema}.${a.table}`;
  if (b === undefined) return `${name} does not exist on ${bNode}`;
  const bTypes = new Map(b.columns.map((c) => [c.name, c.type]));
  for (const c of a.columns) {
    const t = bTypes.get(c.name);
    if (t === undefined) return `column ${c.name} exists on ${aNode} but not on ${bNode}`;
    if (t !== c.type) return `column ${c.name} is ${c.type} on ${aNode} but ${t} on ${bNode}`;
  }
  const extra = b.columns.find((c) => !a.columns.some((d) => d.name === c.name));
  if (extra !== undefined) return `column ${extra.name} exists on ${bNode} but not on ${aNode}`;
  if (a.primaryKey.join(',') !== b.primaryKey.join(',')) {
    return `primary key is (${a.primaryKey.join(', ')}) on ${aNode} but (${b.primaryKey.join(', ')}) on ${bNode}`;
  }
  return null;
}
