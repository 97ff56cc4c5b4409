/**
 * Topic names and settings, in one place so setup, run, status and teardown agree.
 * - transactional mode: one topic per source node, `<topicPrefix>.<node>` (Debezium's logical server
 *   name), one partition, so every table's events stay in commit order;
 * - per-table mode: Debezium's `<topicPrefix>.<node>.<schema>.<table>`;
 * - dead letters: `<topicPrefix>.<node>.dlq` unless apply.deadLetterTopic names one;
 * - a node captured by a Debezium connector (`nodes[].debezium`): the connector's
 *   `<debezium.topicPrefix>.<schema>.<table>`, and its transaction metadata topic when it has one.
 */
import type { Config } from '../config/schema.ts';
import type { TopicSpec } from './records.ts';

export function serverName(config: Config, node: string): string {
  return `${config.kafka.topicPrefix}.${node}`;
}

export function topicFor(config: Config, node: string): (schema: string, table: string) => string {
  const debezium = config.nodes.find((n) => n.name === node)?.debezium;
  if (debezium !== undefined) return (schema, table) => `${debezium.topicPrefix}.${schema}.${table}`;
  const base = serverName(config, node);
  return config.mode === 'transactional' ? () => base : (schema, table) => `${base}.${schema}.${table}`;
}

/** The topics holding a node's change events (with a Debezium node's transaction topic). */
export function eventTopics(config: Config, node: string, tables: readonly string[]): string[] {
  const forTable = topicFor(config, node);
  const names = tables.map((t) => {
    const dot = t.indexOf('.');
    return forTable(t.slice(0, dot), t.slice(dot + 1));
  });
  const transactions = transactionTopic(config, node);
  return [...new Set(transactions === undefined ? names : [transactions, ...names])];
}

/** A Debezium node's transaction metadata topic (BEGIN/END records), if its connector provides one. */
export function transactionTopic(config: Config, node: string): string | undefined {
  const debezium = config.nodes.find((n) => n.name === node)?.debezium;
  if (debezium === undefined || debezium.transactionTopic === false) return undefined;
  return debezium.transactionTopic ?? `${debezium.topicPrefix}.transaction`;
}

export function deadLetterTopic(config: Config, sourceNode: string): string {
  return config.apply.deadLetterTopic ?? `${serverName(config, sourceNode)}.dlq`;
}

/** Explicit settings: never rely on broker defaults for ordering or retention. */
export function topicSpecs(config: Config, node: string, tables: readonly string[]): TopicSpec[] {
  const events = eventTopics(config, node, tables).map((name) => ({
    name,
    partitions: 1,
    replicationFactor: config.kafka.replicationFactor,
    configs: {
      'cleanup.policy': 'delete',
      'retention.ms': String(7 * 24 * 3600 * 1000),
      'min.insync.replicas': String(Math.min(2, config.kafka.replicationFactor)),
      'message.timestamp.type': 'CreateTime',
      // Stated, not left to the broker: an event above it blocks its capture (PGB3003), naming it.
      'max.message.bytes': String(config.kafka.maxMessageBytes),
    },
  }));
  const dlq = {
    name: deadLetterTopic(config, node),
    partitions: 1,
    replicationFactor: config.kafka.replicationFactor,
    configs: { 'cleanup.policy': 'delete', 'retention.ms': '-1' },
  };
  return [...events, dlq];
}
