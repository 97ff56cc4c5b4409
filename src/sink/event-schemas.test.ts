import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InRecord } from '../kafka/records.ts';
import { SCHEMA_HEADER } from '../kafka/wire-headers.ts';
import { BlockedError, MalformedInputError } from '../runtime/errors.ts';
import { decodeChange } from './event-changes.ts';
import { EventSchemas } from './event-schemas.ts';

const record = (headers: [string, string][]): InRecord => ({
  topic: 'pgbisync.db1',
  partition: 0,
  offset: 7n,
  key: Buffer.from('{"id":1}'),
  value: Buffer.from(
    '{"before":null,"after":{"id":1},"source":{"schema":"public","table":"t","ts_us":1,"lsn":1,"txId":1,"snapshot":"false"},"op":"c","ts_ms":1}',
  ),
  headers: new Map(headers),
  timestampMs: 0,
});

test('a schema no node holds blocks the stream at its record, named; decoding it is refused', async () => {
  const schemas = new EventSchemas({ sourceNode: 'db1' });
  const named = record([[SCHEMA_HEADER, 'abc123']]);
  await schemas.load([record([])]); // nothing named: nothing to read
  await assert.rejects(schemas.load([named]), (error: unknown) => {
    assert.ok(error instanceof BlockedError);
    assert.equal(error.code, 'PGB4001');
    assert.match(
      error.message,
      /record pgbisync\.db1\[0\]@7 names the schema abc123 \(header pgbisync\.schema\), which db1's pgbisync\.event_schemas does not hold/,
    );
    return true;
  });
  assert.throws(
    () => decodeChange(named, schemas),
    (error: unknown) => error instanceof MalformedInputError && /abc123/.test(error.message),
  );
});

test('a schemaless record naming no schema is refused as before: the schema is missing', () => {
  assert.throws(
    () => decodeChange(record([]), new EventSchemas({ sourceNode: 'db1' })),
    /value\.schema: missing/,
  );
});
