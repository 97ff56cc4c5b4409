import assert from 'node:assert/strict';
import { test } from 'node:test';
import { refuseUnsafe } from './ddl.ts';

const TABLES = ['public.items', 'shop.orders'];
const refused = (sql: string, force = false) => {
  try {
    refuseUnsafe(sql, TABLES, force);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
};

test('ddl accepts additive changes and names the synced tables they touch', () => {
  assert.deepEqual(refuseUnsafe('ALTER TABLE items ADD COLUMN note text', TABLES, false), ['public.items']);
  assert.deepEqual(refuseUnsafe('alter table shop.orders add column n int default 0', TABLES, false), [
    'shop.orders',
  ]);
  assert.deepEqual(refuseUnsafe('CREATE INDEX items_v ON public.items (v)', TABLES, false), ['public.items']);
  assert.deepEqual(refuseUnsafe('ALTER TABLE items ALTER COLUMN v DROP NOT NULL', TABLES, false), [
    'public.items',
  ]);
  assert.deepEqual(refuseUnsafe('ALTER TABLE items ALTER COLUMN v SET DEFAULT 1', TABLES, false), [
    'public.items',
  ]);
  assert.deepEqual(refuseUnsafe('CREATE TABLE public.newer (id int PRIMARY KEY)', TABLES, false), []);
  // Not a synced table: items_archive is not items.
  assert.deepEqual(refuseUnsafe('ALTER TABLE items_archive DROP COLUMN v', TABLES, false), []);
});

test('ddl refuses what would lose or block changes, with the reason', () => {
  assert.match(refused('ALTER TABLE items ADD COLUMN a int; DROP TABLE x') ?? '', /several statements/);
  assert.match(refused('TRUNCATE items') ?? '', /data, not a schema change/);
  assert.match(refused('DELETE FROM items') ?? '', /data, not a schema change/);
  assert.match(refused('DROP TABLE public.items') ?? '', /public\.items is synced/);
  assert.match(refused('ALTER TABLE items RENAME COLUMN v TO w') ?? '', /renaming a synced table or column/);
  assert.match(refused('ALTER TABLE items DROP COLUMN v') ?? '', /changes the shape of public\.items/);
  assert.match(refused('ALTER TABLE items DROP v') ?? '', /changes the shape/);
  assert.match(
    refused('ALTER TABLE shop.orders ALTER COLUMN n TYPE bigint') ?? '',
    /changes the shape of shop\.orders/,
  );
  assert.match(refused('ALTER TABLE items ADD PRIMARY KEY (id, v)') ?? '', /changes the shape/);
  // --force takes the operator's word that nothing is in flight.
  assert.equal(refused('ALTER TABLE items DROP COLUMN v', true), undefined);
});
