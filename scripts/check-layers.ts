/**
 * Fails when the source tree breaks its layering (the LAYERS list below, bottom first):
 * - an import from a folder to one of a higher layer, or between two folders of one layer;
 * - a circle of imports between files (type-only imports count: they tie the files just the same);
 * - a source file over MAX_LINES lines;
 * - a pg.Client constructed anywhere but src/pg/client.ts.
 * Run: `node scripts/check-layers.ts` (part of `npm run lint`). Tests (*.test.ts) are not checked: a test
 * may import any layer.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** Bottom first. Folders on one line share a layer and must not import each other. */
const LAYERS: readonly (readonly string[])[] = [
  ['runtime'], // errors, error policy, supervisor, sleep: imports nothing of the project
  ['pg'], // PostgreSQL protocol, catalog, LSN, SQL names
  ['conflicts'], // the conflict policy: one home for its SQL and TypeScript forms
  ['config'], // the config schema and its loader
  ['observability'], // logger, metric names
  ['events'], // the Debezium envelope and codec, the schema store
  ['offsets'], // where are we: the capture's ack tracker, the applier's progress
  ['kafka'], // record types and ports, producer, consumer, admin, topic names, wire headers
  ['source', 'sink'], // capture and apply: never import each other
  ['operate'], // doctor, setup, status, verify, tail: what a config means on the live nodes
  ['daemon'], // the composition root: builds and supervises components, the HTTP server
  ['dev'], // the local stack (PostgreSQL, Kafka, Connect) and the demo
  ['cli'], // commands: parse, load config, call into the layers below
  ['testing'], // test fixtures
];
const MAX_LINES = 420;
/** The one place that constructs pg clients (each gets an 'error' listener). */
const PG_CLIENT_HOME = 'pg/client.ts';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
const layerOf = new Map<string, number>();
LAYERS.forEach((folders, i) => {
  for (const f of folders) layerOf.set(f, i);
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s*'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|new URL\(\s*'(\.[^']+\.ts)'/g;

const problems: string[] = [];
const edges = new Map<string, string[]>();
const files = sourceFiles(root);
for (const file of files) {
  const rel = relative(root, file);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').length;
  if (lines > MAX_LINES) problems.push(`${rel}: ${lines} lines (at most ${MAX_LINES}): split it by job`);
  if (rel !== PG_CLIENT_HOME && text.includes('new pg.Client('))
    problems.push(
      `${rel}: opens a pg.Client itself: use newPgClient from src/${PG_CLIENT_HOME} (an idle client without an 'error' listener ends the process when its server restarts)`,
    );
  const folder = rel.split('/')[0]!;
  const from = layerOf.get(folder);
  if (from === undefined) {
    problems.push(`${rel}: folder src/${folder}/ has no layer: add it to LAYERS in scripts/check-layers.ts`);
    continue;
  }
  const targets: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    const target = relative(root, resolve(dirname(file), spec));
    targets.push(target);
    const toFolder = target.split('/')[0]!;
    if (toFolder === folder) continue;
    const to = layerOf.get(toFolder);
    if (to === undefined) continue; // reported for its own files
    if (to > from)
      problems.push(`${rel} imports ${target}: src/${toFolder}/ is a higher layer than src/${folder}/`);
    else if (to === from)
      problems.push(`${rel} imports ${target}: src/${folder}/ and src/${toFolder}/ share a layer`);
  }
  edges.set(rel, targets);
}

// Circles: strongly connected components of more than one file (Tarjan).
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
function connect(v: string): void {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!edges.has(w)) continue;
    if (!idx.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
  }
  if (low.get(v) === idx.get(v)) {
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) problems.push(`circle of imports: ${component.sort().join(' <-> ')}`);
  }
}
for (const v of edges.keys()) if (!idx.has(v)) connect(v);

if (problems.length > 0) {
  for (const p of problems) console.error(`layers: ${p}`);
  console.error(`layers: ${problems.length} problem(s); the layers are listed in scripts/check-layers.ts`);
  process.exit(1);
}
console.log(`layers: ${files.length} source files, ${LAYERS.length} layers, no upward import, no circle`);
