import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { snapshotRecords } from '../operate/sync-plan.ts';
import { FatalError } from '../runtime/errors.ts';
import { parseConfig } from './load.ts';
import { redactConfig } from './redact.ts';

const GOOD = `
kafka: { brokers: [localhost:9092], topicPrefix: pgbisync }
nodes:
  - { name: db1, url: "postgres://app:\${PGPASSWORD_DB1}@host1:5432/app" }
  - { name: db2, url: postgres://app@host2:5433/app }
tables: [public.accounts, public.orders]
conflicts: { policy: last-writer-wins }
`;

const env = { PGPASSWORD_DB1: 's3cret' };

describe('config', () => {
  test('a valid config gets its defaults and env substitution', () => {
    const c = parseConfig(GOOD, 'c.yaml', env);
    assert.equal(c.nodes[0]!.url, 'postgres://app:s3cret@host1:5432/app');
    assert.equal(c.mode, 'transactional');
    assert.equal(c.capture.snapshot, 'initial');
    assert.equal(c.apply.maxBatchTransactions, 500);
    assert.equal(c.http.port, 9187);
    assert.deepEqual(c.tables, ['public.accounts', 'public.orders']);
  });

  test('capture.snapshotRecords: row batches unless topics are per-table, or as set', () => {
    assert.equal(snapshotRecords(parseConfig(GOOD, 'c.yaml', env)), 'batched');
    assert.equal(snapshotRecords(parseConfig(`${GOOD}mode: per-table\n`, 'c.yaml', env)), 'events');
    const set = `${GOOD}capture: { snapshotRecords: events }\n`;
    assert.equal(snapshotRecords(parseConfig(set, 'c.yaml', env)), 'events');
  });

  test("capture.types: pgbisync's exact defaults, the connector's option names", () => {
    assert.deepEqual(parseConfig(GOOD, 'c.yaml', env).capture.types, {
      'interval.handling.mode': 'string',
      'time.precision.mode': 'adaptive',
      'decimal.handling.mode': 'precise',
      'binary.handling.mode': 'bytes',
      'hstore.handling.mode': 'map',
      varbit: 'string',
      timetz: 'offset',
    });
    const connector = parseConfig(
      `${GOOD}capture:\n  types: { interval.handling.mode: numeric, hstore.handling.mode: json, varbit: bits, timetz: utc }\n`,
      'c.yaml',
      env,
    ).capture.types;
    assert.deepEqual(
      [
        connector['interval.handling.mode'],
        connector['hstore.handling.mode'],
        connector.varbit,
        connector.timetz,
      ],
      ['numeric', 'json', 'bits', 'utc'],
    );
  });

  test('a node url with several hosts, as libpq takes them', () => {
    const c = parseConfig(
      GOOD.replace('@host1:5432/app', '@h1:5432,h2:5433/app?target_session_attrs=read-write'),
      'c.yaml',
      env,
    );
    assert.equal(
      c.nodes[0]!.url,
      'postgres://app:s3cret@h1:5432,h2:5433/app?target_session_attrs=read-write',
    );
    const text = JSON.stringify(redactConfig(c));
    assert.ok(!text.includes('s3cret'), text);
    assert.ok(text.includes('postgres://app:***@h1:5432,h2:5433/app?target_session_attrs=read-write'), text);
  });

  test('the redacted view hides passwords', () => {
    const text = JSON.stringify(redactConfig(parseConfig(GOOD, 'c.yaml', env)));
    assert.ok(!text.includes('s3cret'), text);
    assert.ok(text.includes('***'));
  });

  const bad: [string, string, RegExp][] = [
    [
      'unknown field',
      GOOD.replace('conflicts:', 'colour: red\nconflicts:'),
      /^c\.yaml: \(root\): unknown field 'colour'/,
    ],
    [
      'unknown nested field',
      GOOD.replace('topicPrefix: pgbisync', 'topicPrefix: pgbisync, acks: 1'),
      /^c\.yaml: kafka: unknown field 'acks'/,
    ],
    [
      'bad URL',
      GOOD.replace('postgres://app@host2:5433/app', 'mysql://x'),
      /^c\.yaml: nodes\[1\]\.url: must be a postgres:\/\/ URL/,
    ],
    [
      'a host list with an empty host',
      GOOD.replace('postgres://app@host2:5433/app', '"postgres://app@host2:5433,,host3/app"'),
      /^c\.yaml: nodes\[1\]\.url: host 2 of the host list is not host\[:port\]/,
    ],
    [
      'an unknown target_session_attrs',
      GOOD.replace(
        'postgres://app@host2:5433/app',
        '"postgres://app@host2:5433,host3/app?target_session_attrs=readwrite"',
      ),
      /^c\.yaml: nodes\[1\]\.url: target_session_attrs must be one of any, read-write/,
    ],
    [
      'bad broker',
      GOOD.replace('localhost:9092', 'localhost'),
      /^c\.yaml: kafka\.brokers\[0\]: must be host:port/,
    ],
    ['one node', GOOD.replace(/ {2}- \{ name: db2.*\n/, ''), /^c\.yaml: nodes: at least two nodes/],
    [
      'duplicate node',
      GOOD.replace('name: db2', 'name: db1'),
      /^c\.yaml: nodes\[1\]\.name: duplicate node name 'db1'/,
    ],
    ['bad table name', GOOD.replace('public.orders', 'orders'), /^c\.yaml: tables/],
    [
      'missing env var',
      GOOD.replace('PGPASSWORD_DB1', 'NOPE_VAR'),
      /^c\.yaml: environment variable NOPE_VAR/,
    ],
    [
      'node-priority without node',
      GOOD.replace('policy: last-writer-wins', 'policy: node-priority'),
      /conflicts\.priorityNode: node-priority needs priorityNode/,
    ],
    ['not YAML', 'kafka: [', /^c\.yaml: not valid YAML/],
    [
      'row batches on per-table topics',
      `${GOOD}mode: per-table\ncapture: { snapshotRecords: batched }\n`,
      /^c\.yaml: capture\.snapshotRecords: batched needs mode: transactional .*use events, or leave it unset/,
    ],
    [
      'unknown type-handling mode',
      `${GOOD}capture: { types: { decimal.handling.mode: exact } }\n`,
      /^c\.yaml: capture\.types\.decimal\.handling\.mode: /,
    ],
  ];
  for (const [name, text, message] of bad) {
    test(`rejects: ${name}`, () => {
      assert.throws(
        () => parseConfig(text, 'c.yaml', env),
        (error: unknown) => {
          assert.ok(error instanceof FatalError, String(error));
          assert.match(error.message, message);
          assert.ok(!error.message.includes('\n'), 'one line');
          return true;
        },
      );
    });
  }
});
