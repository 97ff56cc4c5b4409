/**
 * The one declarative config schema: types, defaults and docs come from here (README's config reference
 * mirrors it). Cross-field rules live in ./load.ts (normalize step); the conflict policy's names and rule
 * in ../conflicts/policy.ts.
 */
import { z } from 'zod';
import { DEFAULT_MAX_CLOCK_SKEW_MS } from '../conflicts/clock-skew.ts';
import { CONFLICT_POLICY_NAMES } from '../conflicts/policy.ts';
import { firstHostUrl, isMultiHost, parseNodeUrl } from '../pg/node-url.ts';

const NAME = /^[a-z][a-z0-9_]{0,39}$/;

export const kafkaSchema = z
  .strictObject({
    brokers: z.array(z.string().regex(/^[^:\s]+:\d+$/, 'must be host:port')).min(1),
    topicPrefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only')
      .default('pgbisync')
      .describe("Debezium's topic.prefix: node topics are <topicPrefix>.<node>"),
    clientId: z.string().default('pgbisync'),
    replicationFactor: z
      .number()
      .int()
      .min(1)
      .default(1)
      .describe('replication factor of topics pgbisync creates'),
    maxMessageBytes: z
      .number()
      .int()
      .min(65_536)
      .default(1_048_588)
      .describe(
        "max.message.bytes of the event topics pgbisync creates (Kafka's default): a larger event blocks its capture with PGB3003",
      ),
    compression: z.enum(['none', 'gzip', 'snappy', 'lz4', 'zstd']).default('lz4'),
    sasl: z
      .strictObject({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string(),
        password: z.string(),
      })
      .optional(),
    tls: z
      .union([
        z.boolean(),
        z.strictObject({
          ca: z.string().optional(),
          cert: z.string().optional(),
          key: z.string().optional(),
          rejectUnauthorized: z.boolean().optional(),
        }),
      ])
      .optional(),
  })
  .describe('Kafka cluster');

/**
 * A node whose changes a Debezium PostgreSQL connector captures (instead of pgbisync's capture): the
 * appliers from it read the connector's topics. See docs/interop.md.
 */
export const debeziumSourceSchema = z
  .strictObject({
    topicPrefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only')
      .describe("the connector's topic.prefix: its topics are <topicPrefix>.<schema>.<table>"),
    transactionTopic: z
      .union([
        z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only'),
        z.literal(false),
      ])
      .optional()
      .describe(
        'the topic of its transaction metadata (provide.transaction.metadata=true), default <topicPrefix>.transaction; false: the connector does not provide it',
      ),
  })
  .describe('changes of this node come from a Debezium PostgreSQL connector');

export const nodeSchema = z.strictObject({
  name: z.string().regex(NAME, 'lower-case letters, digits and _ (starting with a letter), at most 40'),
  url: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgres:// URL')
    .refine((v) => URL.canParse(firstHostUrl(v)), 'is not a valid URL')
    .superRefine((v, ctx) => {
      // Several hosts (h1:p1,h2:p2) and target_session_attrs, as libpq takes them (src/pg/node-url.ts).
      if (!isMultiHost(v) && !v.includes('target_session_attrs=')) return;
      try {
        parseNodeUrl(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
      }
    })
    .describe(
      'postgres://user:password@host:port/database?params; several hosts as libpq takes them (h1:p1,h2:p2, with target_session_attrs=read-write to follow the primary)',
    ),
  debezium: debeziumSourceSchema.optional(),
  failoverSlot: z
    .boolean()
    .default(false)
    .describe(
      "PostgreSQL 17+: create (or mark) the node's slot FAILOVER, so standbys with sync_replication_slots keep it and a promoted standby streams on from it",
    ),
});

const tableName = z.string().regex(/^[^.\s]+\.[^.\s]+$/, 'must be schema.table');

export const tablesSchema = z.union([
  z.array(tableName).min(1),
  z.strictObject({
    include: z.array(z.string()).min(1).describe('schema.table patterns; * matches any characters'),
    exclude: z.array(z.string()).default([]),
  }),
]);

export const conflictPolicySchema = z.enum(CONFLICT_POLICY_NAMES);

export const conflictsSchema = z
  .strictObject({
    policy: conflictPolicySchema.default('last-writer-wins'),
    /** With node-priority: the node whose writes always win. */
    priorityNode: z.string().optional(),
    /** Clocks further apart warn (status, doctor, run); an applier waits up to this for its target's clock. */
    maxClockSkewMs: z.number().int().min(0).default(DEFAULT_MAX_CLOCK_SKEW_MS),
    /** Tombstones stay this long past the oldest commit time applied in any direction (then pruned). */
    tombstoneRetentionMs: z.number().int().min(0).default(3_600_000),
    /**
     * Keep the commit times last-writer-wins compares while another node may still send an older change:
     * a physical slot per node holds vacuum's xmin (src/operate/stamp-keeper.ts). false drops the slots.
     */
    keepCommitTimes: z.boolean().default(true),
    /** Per-table override: { "public.accounts": { policy: source-wins } }. */
    tables: z
      .record(
        tableName,
        z.strictObject({ policy: conflictPolicySchema, priorityNode: z.string().optional() }),
      )
      .default({}),
  })
  .prefault({});

export const captureSchema = z
  .strictObject({
    snapshot: z
      .enum(['initial', 'never'])
      .default('initial')
      .describe('copy existing rows when the slot is created'),
    snapshotChunkRows: z
      .number()
      .int()
      .min(100)
      .default(1_000)
      .describe('rows per snapshot chunk (events) or, at most, per row batch'),
    snapshotRecords: z
      .enum(['batched', 'events'])
      .optional()
      .describe(
        "how copied rows travel: batched (many rows of one commit time per record, pgbisync's appliers only) or events (Debezium op 'r' events, for other consumers such as the JDBC sink); default batched, events with mode: per-table",
      ),
    maxBatchEvents: z.number().int().min(1).default(2_000),
    lingerMs: z.number().int().min(0).default(5),
    heartbeatIntervalMs: z
      .number()
      .int()
      .min(1000)
      .default(10_000)
      .describe('accepted, no effect: an idle slot advances on the server keepalives (docs/architecture.md)'),
    schemasEnabled: z
      .boolean()
      .default(true)
      .describe(
        'JsonConverter schemas.enable; false: schemaless records naming their schema (kept on the source) in a header',
      ),
    // The Debezium connector's type options under its own names, and two of pgbisync's
    // (src/events/type-handling.ts, docs/type-mapping.md#type-handling-options-capturetypes).
    types: z
      .strictObject({
        'interval.handling.mode': z.enum(['string', 'numeric']).default('string'),
        'time.precision.mode': z
          .enum(['adaptive', 'adaptive_time_microseconds', 'connect'])
          .default('adaptive'),
        'decimal.handling.mode': z.enum(['precise', 'string', 'double']).default('precise'),
        'binary.handling.mode': z.enum(['bytes', 'base64', 'base64-url-safe', 'hex']).default('bytes'),
        'hstore.handling.mode': z.enum(['map', 'json']).default('map'),
        varbit: z.enum(['string', 'bits']).default('string'),
        timetz: z.enum(['offset', 'utc']).default('offset'),
      })
      .prefault({})
      .describe("how values are typed in events: the connector's option names; defaults exact"),
  })
  .prefault({});

export const applySchema = z
  .strictObject({
    maxBatchTransactions: z.number().int().min(1).default(500),
    maxBatchRows: z.number().int().min(1).default(10_000),
    maxPieceBytes: z
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024)
      .describe(
        'a source transaction is applied in pieces of at most maxBatchRows rows and about this many characters of values',
      ),
    maxWaitMs: z.number().int().min(0).default(10),
    fetchMinBytes: z
      .number()
      .int()
      .min(1)
      .default(65_536)
      .describe('a fetch returns once this many (compressed) bytes arrived, or after maxWaitMs'),
    deadLetterTopic: z.string().optional().describe('default <topicPrefix>.<source>.dlq'),
    truncate: z
      .enum(['guarded', 'skip'])
      .default('guarded')
      .describe(
        'guarded: a TRUNCATE deletes the rows older than it (newer ones stay, deleted keys get tombstones); skip: not applied',
      ),
  })
  .prefault({});

export const configSchema = z.strictObject({
  kafka: kafkaSchema,
  nodes: z.array(nodeSchema).min(2, 'at least two nodes are needed to sync'),
  tables: tablesSchema,
  mode: z.enum(['transactional', 'per-table']).default('transactional'),
  conflicts: conflictsSchema,
  capture: captureSchema,
  apply: applySchema,
  threads: z
    .boolean()
    .default(false)
    .describe(
      'captures on a worker thread, appliers on the main thread: more throughput for ~80 MiB more RSS',
    ),
  instance: z
    .strictObject({
      name: z
        .string()
        .regex(/^[A-Za-z0-9_.:-]{1,32}$/, 'at most 32 letters, digits or _.:-')
        .optional()
        .describe('this instance in /status and on the nodes; env PGBISYNC_INSTANCE; default <host>-<pid>'),
      prefer: z
        .array(z.string())
        .default([])
        .describe(
          'nodes whose capture and appliers into them this instance takes first; env PGBISYNC_PREFER',
        ),
    })
    .prefault({}),
  http: z
    .strictObject({
      port: z.number().int().min(0).max(65535).default(9187),
      host: z.string().default('127.0.0.1'),
    })
    .prefault({}),
  schema: z
    .strictObject({
      addMissingColumns: z
        .boolean()
        .default(false)
        .describe(
          "an event's column the target table lacks is added there (nullable, the source's type) instead of blocking the direction (the JDBC sink's schema.evolution=basic)",
        ),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxRetainedWalBytes: z
        .number()
        .int()
        .min(0)
        .default(1024 ** 3)
        .describe('status is unhealthy above this'),
      maxLagSeconds: z.number().min(0).default(60),
    })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type NodeConfig = Config['nodes'][number];
