/**
 * Summarizes a V8 CPU profile (from BENCH_CPU_PROF=1): self time by function and by file, and
 * inclusive time of the heaviest functions.
 *
 *   node bench/profile-summary.ts bench/results/prof/CPU.<...>.cpuprofile [top=25]
 *
 * PROFILE_BY=samples counts every sample as one sampling interval (the median gap) instead of its gap
 * to the previous one: on a busy machine a thread descheduled inside a call (a socket write that wakes
 * the broker) has its next sample's gap stretched by the time it did not run, which by time charges to
 * that call. By samples approximates CPU time.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly children?: number[];
}

interface Profile {
  readonly nodes: ProfileNode[];
  readonly samples: number[];
  readonly timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (file === undefined) throw new Error('usage: node bench/profile-summary.ts <file.cpuprofile> [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const bySamples = process.env.PROFILE_BY === 'samples';
const interval =
  [...profile.timeDeltas].sort((a, b) => a - b)[Math.floor(profile.timeDeltas.length / 2)] ?? 0;
const selfUs = new Map<number, number>();
let totalUs = 0;
profile.samples.forEach((id, i) => {
  const dt = bySamples ? interval : (profile.timeDeltas[i] ?? 0);
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  totalUs += dt;
});

const short = (url: string) => url.replace(/^.*\/node_modules\//, 'nm:').replace(/^.*\/work\/main\//, '');
const label = (n: ProfileNode) =>
  `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

const selfByFn = new Map<string, number>();
const selfByFile = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  selfByFn.set(label(n), (selfByFn.get(label(n)) ?? 0) + us);
  const f = short(n.callFrame.url) || n.callFrame.functionName;
  selfByFile.set(f, (selfByFile.get(f) ?? 0) + us);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusive.set(l, (inclusive.get(l) ?? 0) + us);
  }
}

const print = (title: string, m: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${(us / 1e6).toFixed(2).padStart(6)} s  ${k}`,
    );
  }
};
console.log(`total ${(totalUs / 1e6).toFixed(2)} s sampled`);
print('self time by file', selfByFile);
print('self time by function', selfByFn);
print('inclusive time by function', inclusive);
