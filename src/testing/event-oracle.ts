/**
 * The Debezium oracle's comparison: two streams of change records of one table (the real Debezium
 * PostgreSQL connector's and pgbisync's capture's, from the same transactions) compared key, value
 * schema and payload, field by field. Every difference gets a key that names what differs in words a
 * reader of docs/type-mapping.md knows: a column's type and the aspect (`interval value`,
 * `primary key schema.optional`), or the envelope's field (`source.origin`). The table of deliberate
 * differences in docs/type-mapping.md lists the accepted keys per run; {@link unlistedDifferences}
 * returns the rest.
 */
import { readFileSync } from 'node:fs';
import type { InRecord } from '../kafka/records.ts';

/** A parsed record: JsonConverter's `{schema, payload}` halves, or null (tombstone, no key). */
export interface OracleRecord {
  readonly key: Envelope | null;
  readonly value: Envelope | null;
}
interface Envelope {
  readonly schema: unknown;
  readonly payload: unknown;
}

export interface Difference {
  /** What differs, as docs/type-mapping.md names it. */
  readonly key: string;
  /** Where, in the record (for the report). */
  readonly path: string;
  readonly debezium: string;
  readonly pgbisync: string;
}

/** How a column is named in a difference key: its type (`format_type`), `primary key` for key columns. */
export type ColumnLabels = ReadonlyMap<string, string>;

export function parseRecord(record: Pick<InRecord, 'key' | 'value'>): OracleRecord {
  const parse = (b: Buffer | null): Envelope | null =>
    b === null ? null : (JSON.parse(b.toString('utf8'), keepBigIntegers) as Envelope);
  return { key: parse(record.key), value: parse(record.value) };
}

/** Integers beyond 2^53 kept as their digits, so two exact values compare equal only when they are. */
function keepBigIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined) {
    if (/^-?\d+$/.test(context.source)) return `#int ${context.source}`;
  }
  return value;
}

/**
 * Envelope values that are not the event's content: processing times (when the record was made) and
 * the producer's version string. They differ between any two captures, Debezium's own included.
 */
const PER_RUN = new Set(['ts_ms', 'ts_us', 'ts_ns', 'source.version']);

/**
 * Compares the two streams. Debezium's key change (delete, tombstone, create) is matched against
 * pgbisync's single update whose `before` holds the old key; that difference is reported as `key
 * change`. Records are paired in order; a record one side has and the other lacks is reported by op.
 */
export function compareStreams(
  debezium: readonly OracleRecord[],
  pgbisync: readonly OracleRecord[],
  labels: ColumnLabels,
): Difference[] {
  const out: Difference[] = [];
  let d = 0;
  let p = 0;
  while (d < debezium.length || p < pgbisync.length) {
    const dr = debezium[d];
    const pr = pgbisync[p];
    if (dr === undefined || pr === undefined) {
      const extra = (dr ?? pr)!;
      const who = dr === undefined ? 'pgbisync' : 'debezium';
      out.push({
        key: `op ${opOf(extra)} record`,
        path: `record ${dr === undefined ? p : d}`,
        debezium: who === 'debezium' ? 'sent' : 'absent',
        pgbisync: who === 'pgbisync' ? 'sent' : 'absent',
      });
      if (dr === undefined) p++;
      else d++;
      continue;
    }
    if (opOf(pr) === 'u' && opOf(dr) === 'd' && isKeyChange(pr)) {
      // Debezium: d (old key), tombstone, c (new key). pgbisync: one u.
      const tombstone = debezium[d + 1];
      const create = debezium[d + 2];
      out.push({ key: 'key change', path: `record ${p}`, debezium: 'd + tombstone + c', pgbisync: 'u' });
      if (create !== undefined && opOf(create) === 'c') {
        compareRecord(create, pr, labels, `record ${p}`, out, ['before', 'op']);
        d += tombstone?.value === null ? 3 : 2;
      } else {
        d++;
      }
      p++;
      continue;
    }
    compareRecord(dr, pr, labels, `record ${p}`, out, []);
    d++;
    p++;
  }
  return out;
}

function opOf(r: OracleRecord): string {
  if (r.value === null) return 'tombstone';
  return String((r.value.payload as { op?: unknown } | null)?.op ?? '?');
}

function isKeyChange(r: OracleRecord): boolean {
  const payload = r.value?.payload as { before?: unknown } | undefined;
  return payload?.before !== null && payload?.before !== undefined;
}

function compareRecord(
  dr: OracleRecord,
  pr: OracleRecord,
  labels: ColumnLabels,
  where: string,
  out: Difference[],
  skipPayload: readonly string[],
): void {
  if (!skipPayload.includes('op') && opOf(dr) !== opOf(pr)) {
    out.push({ key: 'op', path: `${where}.op`, debezium: opOf(dr), pgbisync: opOf(pr) });
    return;
  }
  compareSchema(dr.key?.schema, pr.key?.schema, `${where}.key.schema`, labels, out, 'key');
  compareValue(dr.key?.payload, pr.key?.payload, `${where}.key.payload`, labels, out, 'key');
  if (dr.value === null || pr.value === null) return;
  compareSchema(dr.value.schema, pr.value.schema, `${where}.value.schema`, labels, out, 'envelope');
  const dp = dr.value.payload as Record<string, unknown>;
  const pp = pr.value.payload as Record<string, unknown>;
  for (const field of new Set([...Object.keys(dp), ...Object.keys(pp)])) {
    if (skipPayload.includes(field) || PER_RUN.has(field)) continue;
    const path = `${where}.value.payload.${field}`;
    if (field === 'before' || field === 'after') {
      compareValue(dp[field], pp[field], path, labels, out, 'row');
    } else if (field === 'source') {
      compareValue(dp[field], pp[field], path, labels, out, 'source');
    } else if (!same(dp[field], pp[field])) {
      out.push({ key: field, path, debezium: show(dp[field]), pgbisync: show(pp[field]) });
    }
  }
}

type Part = 'key' | 'row' | 'source' | 'envelope';

/** Payload values: a row (or key) field by column, the source block by field. */
function compareValue(
  dv: unknown,
  pv: unknown,
  path: string,
  labels: ColumnLabels,
  out: Difference[],
  part: Part,
): void {
  if (isObject(dv) && isObject(pv)) {
    for (const name of new Set([...Object.keys(dv), ...Object.keys(pv)])) {
      const a = dv[name];
      const b = pv[name];
      if (part === 'source' && PER_RUN.has(`source.${name}`)) continue;
      if (same(a, b)) continue;
      const label = labels.get(name) ?? `column ${name}`;
      const key =
        part === 'source'
          ? `source.${name}`
          : a === undefined || b === undefined
            ? `${label} column`
            : `${label} value`;
      out.push({ key, path: `${path}.${name}`, debezium: show(a), pgbisync: show(b) });
    }
  } else if (!same(dv, pv)) {
    out.push({ key: `${part} payload`, path, debezium: show(dv), pgbisync: show(pv) });
  }
}

/**
 * Schemas: struct fields by name. The envelope's before/after hold the row's Value struct (compared as
 * columns), `source` and the rest compared as envelope fields.
 */
function compareSchema(
  ds: unknown,
  ps: unknown,
  path: string,
  labels: ColumnLabels,
  out: Difference[],
  part: Part,
): void {
  if (!isObject(ds) || !isObject(ps)) {
    if (!same(ds, ps)) out.push({ key: `${part} schema`, path, debezium: show(ds), pgbisync: show(ps) });
    return;
  }
  for (const prop of new Set([...Object.keys(ds), ...Object.keys(ps)])) {
    if (prop === 'fields') continue;
    if (!same(ds[prop], ps[prop])) {
      const key = part === 'envelope' ? `envelope schema.${prop}` : `${part} schema.${prop}`;
      out.push({ key, path: `${path}.${prop}`, debezium: show(ds[prop]), pgbisync: show(ps[prop]) });
    }
  }
  const df = fieldsOf(ds);
  const pf = fieldsOf(ps);
  const dNames = [...df.keys()];
  const pNames = [...pf.keys()];
  const common = dNames.filter((n) => pf.has(n));
  if (JSON.stringify(common) !== JSON.stringify(pNames.filter((n) => df.has(n)))) {
    out.push({ key: `${part} field order`, path, debezium: dNames.join(','), pgbisync: pNames.join(',') });
  }
  for (const name of new Set([...dNames, ...pNames])) {
    const a = df.get(name);
    const b = pf.get(name);
    const fieldPath = `${path}.fields.${name}`;
    const columnPart = part === 'key' || (part === 'row' && name !== undefined);
    if (part === 'envelope' && (name === 'before' || name === 'after')) {
      compareSchema(a, b, fieldPath, labels, out, 'row');
      continue;
    }
    const label = columnPart
      ? (labels.get(name) ?? `column ${name}`)
      : part === 'source'
        ? `source.${name}`
        : `envelope.${name}`;
    if (a === undefined || b === undefined) {
      out.push({
        key: columnPart ? `${label} column` : label,
        path: fieldPath,
        debezium: show(a),
        pgbisync: show(b),
      });
      continue;
    }
    for (const prop of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (same(a[prop], b[prop])) continue;
      if (prop === 'fields' && part === 'envelope' && name === 'source') {
        compareSchema(a, b, fieldPath, labels, out, 'source');
        continue;
      }
      const key = columnPart ? `${label} schema` : `${label} schema.${prop}`;
      out.push({ key, path: `${fieldPath}.${prop}`, debezium: show(a[prop]), pgbisync: show(b[prop]) });
    }
  }
}

function fieldsOf(schema: Record<string, unknown>): Map<string, Record<string, unknown>> {
  const fields = Array.isArray(schema.fields) ? (schema.fields as Record<string, unknown>[]) : [];
  return new Map(fields.map((f) => [String(f.field), f]));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/** JSON with object keys sorted (key order is compared where it matters: the schema's field order). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

function show(v: unknown): string {
  const text = canonical(v);
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/**
 * The deliberate differences docs/type-mapping.md lists: the rows of the table under its heading
 * "Deliberate differences, proven against the connector": each key in backticks in a row's first
 * cell, with the runs its second cell names (`all`, or run names separated by commas).
 */
export function listedDifferences(docPath: string): Map<string, ReadonlySet<string>> {
  const text = readFileSync(docPath, 'utf8');
  const start = text.indexOf('## Deliberate differences, proven against the connector');
  if (start < 0)
    throw new Error(`${docPath}: no "Deliberate differences, proven against the connector" section`);
  const section = text.slice(start).split('\n## ')[0]!;
  const listed = new Map<string, ReadonlySet<string>>();
  for (const line of section.split('\n')) {
    const m = /^\|([^|]*`[^|]*)\|([^|]+)\|/.exec(line);
    if (m === null) continue;
    const runs = new Set(m[2]!.split(',').map((s) => s.trim()));
    for (const key of m[1]!.matchAll(/`([^`]+)`/g)) listed.set(key[1]!, runs);
  }
  return listed;
}

/** Differences of `run` not listed for it, one per key, and listed keys of `run` never seen. */
export function unlistedDifferences(
  run: string,
  found: readonly Difference[],
  listed: ReadonlyMap<string, ReadonlySet<string>>,
): { unlisted: Difference[]; unseen: string[] } {
  const applies = (key: string) => {
    const runs = listed.get(key);
    return runs !== undefined && (runs.has('all') || runs.has(run));
  };
  const byKey = new Map<string, Difference>();
  for (const diff of found) if (!applies(diff.key) && !byKey.has(diff.key)) byKey.set(diff.key, diff);
  const seen = new Set(found.map((f) => f.key));
  const unseen = [...listed.keys()].filter((k) => applies(k) && !seen.has(k));
  return { unlisted: [...byKey.values()], unseen };
}
