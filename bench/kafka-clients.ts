/**
 * Kafka client benchmark on a real broker: @platformatic/kafka (raw and through pgbisync's wrappers in
 * src/kafka/producer.ts and consumer.ts) against kafkajs, same workload, each case in its own child process so that peak
 * RSS belongs to one client.
 *
 *   node bench/kafka-clients.ts --brokers 127.0.0.1:25092 [--records 200000] [--value-bytes 200]
 *                               [--batches 2000,100] [--outstanding 8] [--repeat 3]
 *
 * Workload, as the capture side sends it: 1-partition topic, idempotent producer, acks=all, no
 * compression (kafkajs has only gzip built in), keys ~10 bytes, values `--value-bytes` of random bytes,
 * every 10th record carries a header (capture marks the last record of each transaction).
 * - produce "serial": one send call per batch, each awaited before the next (strict ordering by hand);
 * - produce "wrapper": KafkaProducer.send per batch with up to `--outstanding` calls not yet acknowledged,
 *   the way capture pipelines its calls (the wrapper keeps them in order);
 * - produce "pipelined": raw Producer.send with up to `--outstanding` calls in flight (not order-safe when
 *   a request fails and is retried: an upper bound, not an option);
 * - consume: read every record of a pre-filled topic from offset 0 with a fresh group; the time runs from
 *   creating the consumer to the last record (group join included; "startup ms" is the time to the
 *   first record). For producers "startup ms" is the first (warm-up) send, excluded from records/s.
 * "raw defaults" is the library's consumer as configured out of the box (50 MB fetches, no per-partition
 * limit); the wrapper sets 1 MiB per partition and 10 MiB per fetch.
 * Each case runs `--repeat` times (rounds interleave the cases); the table shows the median run, the
 * range of records/s and the highest peak RSS (the child's maxRSS; "baseline" is a child that loads no
 * client). MB/s counts key + value bytes. Every topic gets a random suffix and is deleted at the end.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { OutRecord } from '../src/kafka/records.ts';
import { LAST_HEADER, LAST_VALUE } from '../src/kafka/wire-headers.ts';

// Clients are imported inside each case, so a child's RSS holds only the client it measures.
const platformatic = () => import('@platformatic/kafka');
const producerWrapper = () => import('../src/kafka/producer.ts');
const consumerWrapper = () => import('../src/kafka/consumer.ts');
const adminWrapper = () => import('../src/kafka/admin.ts');
const kafkajs = async () => (await import('kafkajs')).default;

interface Workload {
  readonly brokers: string[];
  readonly records: number;
  readonly valueBytes: number;
}

interface CaseResult {
  readonly records: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly startupMs: number;
  readonly maxRssMb: number;
}

type CaseRunner = (w: Workload, topic: string, batch: number, outstanding: number) => Promise<CaseResult>;

const VALUE_POOL_SIZE = 1024;
/** A case that hangs (a send that never settles) is killed rather than blocking the run. */
const CASE_TIMEOUT_MS = 300_000;

/** Deterministic records: key `k<i>`, a value from a pool of random buffers, a header on every 10th. */
function makeRecords(w: Workload, topic: string): OutRecord[] {
  const pool = Array.from({ length: VALUE_POOL_SIZE }, () => randomBytes(w.valueBytes));
  return Array.from({ length: w.records }, (_, i) => ({
    topic,
    key: Buffer.from(`k${i}`),
    value: pool[i % VALUE_POOL_SIZE]!,
    ...(i % 10 === 9 ? { headers: { [LAST_HEADER]: LAST_VALUE } } : {}),
  }));
}

function payloadBytes(records: readonly OutRecord[]): number {
  let bytes = 0;
  for (const r of records) bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
  return bytes;
}

function batchesOf<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function perSecond(r: CaseResult): number {
  return r.seconds === 0 ? 0 : r.records / r.seconds;
}

function rate(r: CaseResult): string {
  return r.seconds === 0 ? '-' : Math.round(perSecond(r)).toLocaleString('en-US');
}

function maxRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

function result(records: number, bytes: number, startNs: bigint, startupMs: number): CaseResult {
  const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
  return { records, bytes, seconds, startupMs, maxRssMb: maxRssMb() };
}

/** kafkajs takes an object of Buffers. */
function plainHeaders(r: OutRecord): Record<string, Buffer> | undefined {
  if (r.headers === undefined) return undefined;
  return Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, Buffer.from(v)]));
}

/**
 * @platformatic/kafka without serializers needs Buffer header keys: an object's keys are strings, and a
 * string key makes send() hang forever (no error, no timeout), so pass a Map of Buffers.
 */
function bufferHeaders(r: OutRecord): Map<Buffer, Buffer> | undefined {
  if (r.headers === undefined) return undefined;
  return new Map(Object.entries(r.headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)]));
}

function toPlatformatic(r: OutRecord) {
  const headers = bufferHeaders(r);
  return {
    topic: r.topic,
    ...(r.key === null ? {} : { key: r.key }),
    ...(r.value === null ? {} : { value: r.value }),
    ...(headers === undefined ? {} : { headers }),
  };
}

const cases: Record<string, CaseRunner> = {
  async baseline() {
    return { records: 0, bytes: 0, seconds: 0, startupMs: 0, maxRssMb: maxRssMb() };
  },

  async 'produce platformatic serial'(w, topic, batch) {
    const records = makeRecords(w, topic);
    const { Producer } = await platformatic();
    const producer = new Producer({
      clientId: 'bench-plt',
      bootstrapBrokers: w.brokers,
      idempotent: true,
      acks: -1,
    });
    const t0 = process.hrtime.bigint();
    await producer.send({ messages: [{ topic, value: Buffer.from('warmup') }] });
    const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const start = process.hrtime.bigint();
    for (const b of batchesOf(records, batch)) {
      await producer.send({ messages: b.map((r) => toPlatformatic(r)) });
    }
    const out = result(records.length, payloadBytes(records), start, startupMs);
    await producer.close();
    return out;
  },

  /** Not order-safe on failure (a retried request can land after a later one); an upper bound only. */
  async 'produce platformatic pipelined'(w, topic, batch, outstanding) {
    const records = makeRecords(w, topic);
    const { Producer } = await platformatic();
    const producer = new Producer({
      clientId: 'bench-plt',
      bootstrapBrokers: w.brokers,
      idempotent: true,
      acks: -1,
    });
    const t0 = process.hrtime.bigint();
    await producer.send({ messages: [{ topic, value: Buffer.from('warmup') }] });
    const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const start = process.hrtime.bigint();
    const inFlight: Promise<unknown>[] = [];
    for (const b of batchesOf(records, batch)) {
      inFlight.push(producer.send({ messages: b.map((r) => toPlatformatic(r)) }));
      if (inFlight.length >= outstanding) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const out = result(records.length, payloadBytes(records), start, startupMs);
    await producer.close();
    return out;
  },

  async 'produce platformatic wrapper'(w, topic, batch, outstanding) {
    return produceWithWrapper(w, topic, batch, outstanding, 'none');
  },

  async 'produce platformatic wrapper lz4'(w, topic, batch, outstanding) {
    return produceWithWrapper(w, topic, batch, outstanding, 'lz4');
  },

  async 'produce kafkajs serial'(w, topic, batch) {
    const records = makeRecords(w, topic);
    const { Kafka, logLevel } = await kafkajs();
    const kafka = new Kafka({ clientId: 'bench-kjs', brokers: w.brokers, logLevel: logLevel.NOTHING });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    const t0 = process.hrtime.bigint();
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ value: Buffer.from('warmup') }] });
    const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const start = process.hrtime.bigint();
    for (const b of batchesOf(records, batch)) {
      await producer.send({
        topic,
        acks: -1,
        messages: b.map((r) => {
          const headers = plainHeaders(r);
          return { key: r.key, value: r.value, ...(headers === undefined ? {} : { headers }) };
        }),
      });
    }
    const out = result(records.length, payloadBytes(records), start, startupMs);
    await producer.disconnect();
    return out;
  },

  async 'consume platformatic wrapper'(w, topic) {
    const { KafkaConsumer } = await consumerWrapper();
    const t0 = process.hrtime.bigint();
    const consumer = new KafkaConsumer({
      brokers: w.brokers,
      clientId: 'bench-plt-wrapper',
      groupId: `bench-${randomBytes(4).toString('hex')}`,
      topics: [topic],
      startOffsets: [{ topic, partition: 0, offset: 0n }],
      maxWaitMs: 500,
    });
    const ac = new AbortController();
    let start = 0n;
    let records = 0;
    let bytes = 0;
    for await (const batch of consumer.batches(ac.signal)) {
      if (start === 0n) start = process.hrtime.bigint();
      for (const r of batch) bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
      records += batch.length;
      if (records >= w.records) break;
    }
    const out = result(records, bytes, t0, Number(start - t0) / 1e6);
    await consumer.close();
    return out;
  },

  async 'consume platformatic raw defaults'(w, topic) {
    return consumeRaw(w, topic, {});
  },

  async 'consume platformatic raw 1MiB'(w, topic) {
    return consumeRaw(w, topic, { maxBytes: 10 << 20, maxBytesPerPartition: 1 << 20 });
  },

  async 'consume kafkajs eachBatch'(w, topic) {
    const { Kafka, logLevel } = await kafkajs();
    const t0 = process.hrtime.bigint();
    const kafka = new Kafka({ clientId: 'bench-kjs', brokers: w.brokers, logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({
      groupId: `bench-${randomBytes(4).toString('hex')}`,
      maxWaitTimeInMs: 500,
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let start = 0n;
    let records = 0;
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (start === 0n) start = process.hrtime.bigint();
            for (const m of batch.messages) bytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
            records += batch.messages.length;
            if (records >= w.records) resolve();
          },
        })
        .catch(reject);
    });
    const out = result(records, bytes, t0, Number(start - t0) / 1e6);
    await consumer.disconnect();
    return out;
  },
};

/** The library's stream with 'data' events and no copy; `fetch` overrides its fetch sizes. */
async function consumeRaw(
  w: Workload,
  topic: string,
  fetch: { maxBytes?: number; maxBytesPerPartition?: number },
): Promise<CaseResult> {
  const { Consumer } = await platformatic();
  const t0 = process.hrtime.bigint();
  const consumer = new Consumer({
    clientId: 'bench-plt-raw',
    bootstrapBrokers: w.brokers,
    groupId: `bench-${randomBytes(4).toString('hex')}`,
    ...fetch,
  });
  const stream = await consumer.consume({
    topics: [topic],
    mode: 'earliest',
    autocommit: false,
    maxWaitTime: 500,
  });
  let start = 0n;
  let records = 0;
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('data', (m) => {
      if (start === 0n) start = process.hrtime.bigint();
      bytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
      if (++records === w.records) resolve();
    });
  });
  const out = result(records, bytes, t0, Number(start - t0) / 1e6);
  await stream.close();
  await consumer.close(true);
  return out;
}

async function produceWithWrapper(
  w: Workload,
  topic: string,
  batch: number,
  outstanding: number,
  compression: 'none' | 'lz4',
): Promise<CaseResult> {
  const records = makeRecords(w, topic);
  const { KafkaProducer } = await producerWrapper();
  const producer = new KafkaProducer({ brokers: w.brokers, clientId: 'bench-plt-wrapper', compression });
  const t0 = process.hrtime.bigint();
  await producer.send([{ topic, key: null, value: Buffer.from('warmup') }]);
  const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const start = process.hrtime.bigint();
  const inFlight: Promise<void>[] = [];
  for (const b of batchesOf(records, batch)) {
    inFlight.push(producer.send(b));
    if (inFlight.length >= outstanding) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const out = result(records.length, payloadBytes(records), start, startupMs);
  await producer.close();
  return out;
}

// ---- child: run one case, print its result as one JSON line ----

async function runChild(argv: ReturnType<typeof parse>): Promise<void> {
  const name = argv.case!;
  const runner = cases[name];
  if (runner === undefined) throw new Error(`unknown case ${name}`);
  const w = workload(argv);
  const out = await runner(w, argv.topic!, Number(argv.batch), Number(argv.outstanding));
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---- parent: topics, children, table ----

function parse() {
  return parseArgs({
    options: {
      brokers: { type: 'string', default: '127.0.0.1:9092' },
      records: { type: 'string', default: '200000' },
      'value-bytes': { type: 'string', default: '200' },
      batches: { type: 'string', default: '2000,100' },
      outstanding: { type: 'string', default: '8' },
      repeat: { type: 'string', default: '3' },
      case: { type: 'string' },
      topic: { type: 'string' },
      batch: { type: 'string', default: '2000' },
    },
  }).values;
}

function workload(argv: ReturnType<typeof parse>): Workload {
  return {
    brokers: argv.brokers.split(','),
    records: Number(argv.records),
    valueBytes: Number(argv['value-bytes']),
  };
}

function child(args: string[]): Promise<CaseResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [import.meta.filename, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: CASE_TIMEOUT_MS,
    });
    let stdout = '';
    p.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`case ${args.join(' ')} exited with ${code ?? p.signalCode}`));
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as CaseResult);
    });
  });
}

async function runParent(argv: ReturnType<typeof parse>): Promise<void> {
  const w = workload(argv);
  const suffix = randomBytes(4).toString('hex');
  const { KafkaAdmin } = await adminWrapper();
  const { KafkaProducer } = await producerWrapper();
  const admin = new KafkaAdmin({ brokers: w.brokers, clientId: 'bench-admin' });
  const topics: string[] = [];
  let topicCount = 0;
  const newTopic = async (label: string): Promise<string> => {
    // Never reuse a name: a topic being deleted and recreated under the same name is not usable at once.
    const name = `bench-${label}-${suffix}-${topicCount++}`;
    await admin.createTopics([
      { name, partitions: 1, replicationFactor: 1, configs: { 'cleanup.policy': 'delete' } },
    ]);
    topics.push(name);
    return name;
  };
  const common = ['--brokers', argv.brokers, '--records', argv.records, '--value-bytes', argv['value-bytes']];
  const samples = new Map<string, { name: string; batch: string; runs: CaseResult[] }>();
  const record = (name: string, batch: string, r: CaseResult) => {
    const key = `${name}|${batch}`;
    const entry = samples.get(key) ?? { name, batch, runs: [] };
    entry.runs.push(r);
    samples.set(key, entry);
    console.error(`  ${name} (batch ${batch}): ${rate(r)} records/s, peak RSS ${r.maxRssMb.toFixed(0)} MB`);
  };
  const cleanup = async () => {
    await admin.deleteTopics(topics).catch((error: unknown) => console.error('delete topics failed', error));
    await admin.close();
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  const repeat = Number(argv.repeat);
  try {
    console.error(
      `kafka client bench: ${w.records} records, values ${w.valueBytes} bytes, brokers ${argv.brokers}, ` +
        `${repeat} rounds`,
    );
    record('baseline', '-', await child([...common, '--case', 'baseline']));
    // One pre-filled topic read by every consumer (fresh group each time).
    const consumeTopic = await newTopic('consume');
    const filler = new KafkaProducer({ brokers: w.brokers, clientId: 'bench-fill' });
    for (const b of batchesOf(makeRecords(w, consumeTopic), 2000)) await filler.send(b);
    await filler.close();
    // Rounds interleave the cases, so a noisy moment on the machine does not hit one client only.
    for (let round = 0; round < repeat; round++) {
      for (const batch of argv.batches.split(',')) {
        for (const name of Object.keys(cases).filter((c) => c.startsWith('produce'))) {
          const topic = await newTopic('produce');
          const r = await child([...common, '--case', name, '--topic', topic, '--batch', batch]);
          r.records === w.records || console.error(`  ${name}: wrong record count ${r.records}`);
          record(name, batch, r);
          await admin.deleteTopics([topics.pop()!]);
        }
      }
      for (const name of Object.keys(cases).filter((c) => c.startsWith('consume'))) {
        record(name, '-', await child([...common, '--case', name, '--topic', consumeTopic]));
      }
    }
  } finally {
    await cleanup();
  }
  const header = ['case', 'batch', 'records/s (median)', 'min-max', 'MB/s', 'startup ms', 'peak RSS MB'];
  const lines = [...samples.values()].map(({ name, batch, runs }) => {
    const sorted = [...runs].sort((a, b) => perSecond(a) - perSecond(b));
    const r = sorted[Math.floor((sorted.length - 1) / 2)]!;
    return [
      name,
      batch,
      rate(r),
      r.seconds === 0 ? '-' : `${rate(sorted[0]!)}-${rate(sorted.at(-1)!)}`,
      r.seconds === 0 ? '-' : (r.bytes / r.seconds / 1e6).toFixed(1),
      r.startupMs.toFixed(0),
      Math.max(...runs.map((x) => x.maxRssMb)).toFixed(0),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(fmt(header));
  console.log(`|${widths.map((wd) => '-'.repeat(wd + 2)).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
}

const argv = parse();
if (argv.case === undefined) await runParent(argv);
else await runChild(argv);
