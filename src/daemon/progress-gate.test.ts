import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressGate } from './progress-gate.ts';

test('a copy logs its first report, one per interval, and its last; each table on its own', () => {
  let now = 0;
  const gate = new ProgressGate(5_000, () => now);
  const logged: string[] = [];
  const report = (key: string, ended = false) => {
    if (gate.admit(key, ended)) logged.push(`${now} ${key}${ended ? ' end' : ''}`);
  };
  for (now = 0; now < 12_000; now += 10) report('a');
  report('b');
  now = 12_005;
  report('a', true);
  report('b', true);
  now = 12_010;
  report('a'); // copied again (a resync): a first report again
  assert.deepEqual(logged, ['0 a', '5000 a', '10000 a', '12000 b', '12005 a end', '12005 b end', '12010 a']);
});

test('a capture started again logs its copy from the first report', () => {
  let now = 0;
  const gate = new ProgressGate(5_000, () => now);
  assert.equal(gate.admit('n1\0t', false), true);
  now = 1_000;
  assert.equal(gate.admit('n1\0t', false), false);
  assert.equal(gate.admit('n2\0t', false), true);
  gate.forget('n1\0');
  assert.equal(gate.admit('n1\0t', false), true); // the new attempt's first report
  assert.equal(gate.admit('n2\0t', false), false); // another node's copy runs on
});
