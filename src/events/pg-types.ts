/**
 * PostgreSQL type identities as the codec needs them: built-in OIDs (stable across servers, see
 * `src/include/catalog/pg_type.dat`), typmod decoding, and a registry for non-built-in types (enums,
 * domains, their arrays) whose OIDs differ per database.
 *
 * pgoutput announces a non-built-in column type with a Type message (schema + name only). That is not
 * enough to know whether it is an enum, a domain or a composite, so {@link TypeRegistry.define} takes
 * the catalog facts; {@link CUSTOM_TYPE_QUERY} reads them in one round trip.
 */

/** OIDs of the built-in types the codec maps specially. */
export const PgOid = {
  BOOL: 16,
  BYTEA: 17,
  CHAR: 18,
  NAME: 19,
  INT8: 20,
  INT2: 21,
  INT4: 23,
  TEXT: 25,
  OID: 26,
  JSON: 114,
  XML: 142,
  POINT: 600,
  CIDR: 650,
  FLOAT4: 700,
  FLOAT8: 701,
  MACADDR8: 774,
  MONEY: 790,
  MACADDR: 829,
  INET: 869,
  BPCHAR: 1042,
  VARCHAR: 1043,
  DATE: 1082,
  TIME: 1083,
  TIMESTAMP: 1114,
  TIMESTAMPTZ: 1184,
  INTERVAL: 1186,
  TIMETZ: 1266,
  BIT: 1560,
  VARBIT: 1562,
  NUMERIC: 1700,
  UUID: 2950,
  TSVECTOR: 3614,
  JSONB: 3802,
} as const;

/** Array type OID -> element type OID, for the built-in array types. */
export const ARRAY_ELEMENT_OID: ReadonlyMap<number, number> = new Map([
  [1000, PgOid.BOOL],
  [1001, PgOid.BYTEA],
  [1002, PgOid.CHAR],
  [1003, PgOid.NAME],
  [1005, PgOid.INT2],
  [1007, PgOid.INT4],
  [1009, PgOid.TEXT],
  [1014, PgOid.BPCHAR],
  [1015, PgOid.VARCHAR],
  [1016, PgOid.INT8],
  [1017, PgOid.POINT],
  [1021, PgOid.FLOAT4],
  [1022, PgOid.FLOAT8],
  [1028, PgOid.OID],
  [1040, PgOid.MACADDR],
  [1041, PgOid.INET],
  [651, PgOid.CIDR],
  [775, PgOid.MACADDR8],
  [791, PgOid.MONEY],
  [1115, PgOid.TIMESTAMP],
  [1182, PgOid.DATE],
  [1183, PgOid.TIME],
  [1185, PgOid.TIMESTAMPTZ],
  [1187, PgOid.INTERVAL],
  [1231, PgOid.NUMERIC],
  [1270, PgOid.TIMETZ],
  [1561, PgOid.BIT],
  [1563, PgOid.VARBIT],
  [2951, PgOid.UUID],
  [199, PgOid.JSON],
  [3807, PgOid.JSONB],
  [3643, PgOid.TSVECTOR],
  [143, PgOid.XML],
]);

/** The type of one column as pgoutput describes it (see RelationColumn). */
export interface ColumnType {
  readonly typeOid: number;
  /** atttypmod; -1 when none. */
  readonly typeMod: number;
}

/** A non-built-in type, as the catalog describes it. */
export type CustomType =
  | {
      readonly kind: 'enum';
      readonly oid: number;
      readonly name: string;
      readonly labels?: readonly string[];
    }
  | { readonly kind: 'domain'; readonly oid: number; readonly name: string; readonly base: ColumnType }
  | { readonly kind: 'array'; readonly oid: number; readonly name: string; readonly elementOid: number }
  | { readonly kind: 'other'; readonly oid: number; readonly name: string };

/**
 * Classifies every non-built-in type used by a table's columns, arrays resolved to their element.
 * `$1` is the table's regclass. Columns: oid, name (schema-qualified), typtype ('e' enum, 'd' domain,
 * 'b' base...), elem (array element OID or 0), basetype, basetypmod, labels (enum labels in sort order,
 * a JSON array).
 */
export const CUSTOM_TYPE_QUERY = `
SELECT t.oid::int8 AS oid, format('%I.%I', n.nspname, t.typname) AS name, t.typtype::text AS typtype,
       t.typelem::int8 AS elem, t.typbasetype::int8 AS basetype, t.typtypmod AS basetypmod,
       CASE WHEN t.typtype = 'e' THEN
         (SELECT array_to_json(array_agg(e.enumlabel ORDER BY e.enumsortorder))::text
            FROM pg_enum e WHERE e.enumtypid = t.oid)
       END AS labels
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid >= 16384 AND t.oid IN (
  SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
  UNION
  SELECT et.typelem FROM pg_attribute a JOIN pg_type et ON et.oid = a.atttypid
  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND et.typelem <> 0)`;

/**
 * Non-built-in types known to the codec. Not thread-shared state: one per capture (OIDs are per
 * database). Types never defined map to the documented string fallback.
 */
export class TypeRegistry {
  readonly #types = new Map<number, CustomType>();

  /** Records (or replaces) a type's catalog facts. Relations compiled afterwards use it. */
  define(type: CustomType): void {
    this.#types.set(type.oid, type);
  }

  get(oid: number): CustomType | undefined {
    return this.#types.get(oid);
  }
}

const VARHDRSZ = 4;

/** numeric typmod -> precision and scale (PG 15 allows a negative scale), or undefined for none. */
export function numericTypmod(typeMod: number): { precision: number; scale: number } | undefined {
  if (typeMod < VARHDRSZ) return undefined;
  const tm = typeMod - VARHDRSZ;
  return { precision: (tm >> 16) & 0xffff, scale: ((tm & 0x7ff) ^ 1024) - 1024 };
}

/** Fractional-second precision of time/timestamp types (typmod), or undefined when unconstrained. */
export function temporalPrecision(typeMod: number): number | undefined {
  return typeMod >= 0 ? typeMod : undefined;
}

/** A row of {@link CUSTOM_TYPE_QUERY}, as text or numbers (whatever the client's type parsers make of it). */
export type CustomTypeRow = Readonly<Record<string, string | number | null>>;

/** Classifies a row of {@link CUSTOM_TYPE_QUERY}. */
export function customTypeOf(row: CustomTypeRow): CustomType {
  const oid = Number(row.oid);
  const name = String(row.name);
  if (row.typtype === 'e') {
    const labels = row.labels === null ? undefined : (JSON.parse(String(row.labels)) as string[]);
    return labels === undefined ? { kind: 'enum', oid, name } : { kind: 'enum', oid, name, labels };
  }
  if (row.typtype === 'd') {
    return {
      kind: 'domain',
      oid,
      name,
      base: { typeOid: Number(row.basetype), typeMod: Number(row.basetypmod) },
    };
  }
  if (Number(row.elem) !== 0) return { kind: 'array', oid, name, elementOid: Number(row.elem) };
  return { kind: 'other', oid, name };
}

/** The minimal client {@link readTypeRegistry} needs. */
export interface CatalogQuery {
  query(text: string, values: unknown[]): Promise<{ rows: CustomTypeRow[] }>;
}

/**
 * The catalog facts of every non-built-in type the tables' columns use (one round trip per table),
 * for the encoder: enums (with their labels), domains, their arrays, and extension types such as hstore.
 * `tables` are names as `regclass` reads them ('public.t').
 */
export async function readTypeRegistry(db: CatalogQuery, tables: readonly string[]): Promise<TypeRegistry> {
  const registry = new TypeRegistry();
  for (const table of tables) {
    const { rows } = await db.query(CUSTOM_TYPE_QUERY, [table]);
    for (const row of rows) registry.define(customTypeOf(row));
  }
  return registry;
}
