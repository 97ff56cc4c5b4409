import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalformedInputError } from '../runtime/errors.ts';
import { decodeChange } from './event-changes.ts';
import { EventSchemas } from './event-schemas.ts';
import type { InRecord } from './transaction-grouper.ts';

const record = (headers: [string, string][]): InRecord => ({
  topic: 'pgbisync.db1',
  partition: 0,
  offset: 7n,
  key: Buffer.from('{"id":1}'),
  value: Buffer.from(
    '{"before":null,"after":{"id":1},"source":{"schema":"public","table":"t","ts_us":1,"lsn":1,"txId":1,"snapshot":"false"},"op":"c","ts_ms":1}',
  ),
  headers: new Map(headers),
});

test('a schemaless record naming a schema the source does not hold is refused, named', () => {
  const schemas = new EventSchemas(undefined, 'db1');
  assert.equal(schemas.schemaOf(record([])), undefined);
  assert.throws(
    () => decodeChange(record([['pgbisync.schema', 'abc123']]), schemas),
    (error: unknown) => {
      assert.ok(error instanceof MalformedInputError);
      assert.match(
        error.message,
        /pgbisync\.db1\[0\]@7: its schema abc123 \(header pgbisync\.schema\) is not in db1's pgbisync\.event_schemas/,
      );
      return true;
    },
  );
});

test('a schemaless record naming no schema is refused as before: the schema is missing', () => {
  assert.throws(() => decodeChange(record([]), new EventSchemas(undefined, 'db1')), /value\.schema: missing/);
});
