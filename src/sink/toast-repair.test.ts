/** The scheduling of repair rounds (./toast-repair.ts RepairRounds), without a database. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextRound, RepairRounds } from './toast-repair.ts';

test('repair rounds run one at a time; a failed one is retried until one runs; none after stop', async () => {
  const outcomes = [false, false, true];
  let running = 0;
  let maxRunning = 0;
  let calls = 0;
  const done = Promise.withResolvers<void>();
  const rounds = new RepairRounds(async () => {
    calls++;
    running++;
    maxRunning = Math.max(maxRunning, running);
    await new Promise((r) => setTimeout(r, 5));
    running--;
    const ok = outcomes.shift() ?? true;
    if (ok) done.resolve();
    return ok;
  }, 10);
  rounds.request();
  rounds.request(); // queued behind the first, never alongside it
  await done.promise;
  await new Promise((r) => setTimeout(r, 100));
  // Failed, failed (retried by the timer, the second request also queued), then ran.
  assert.equal(maxRunning, 1);
  assert.ok(calls >= 3 && calls <= 4, `calls: ${calls}`);
  const before = calls;
  await rounds.stop();
  rounds.request();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, before, 'no round after stop');
});

test('a failing round stops being retried once the rounds are stopped', async () => {
  let calls = 0;
  const rounds = new RepairRounds(async () => {
    calls++;
    return false;
  }, 10);
  rounds.request();
  await new Promise((r) => setTimeout(r, 60));
  assert.ok(calls >= 2, `retried: ${calls}`);
  await rounds.stop();
  const before = calls;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls, before);
});

test('the next round: soon for records about to be applied, backing off for held ones only, none when done', () => {
  const counts = (waiting: number, held: number) => ({ repaired: 0, superseded: 0, waiting, held });
  assert.equal(nextRound(counts(2, 1)), 'soon');
  assert.equal(nextRound(counts(1, 0)), 'soon');
  assert.equal(nextRound(counts(3, 3)), false);
  assert.equal(nextRound(counts(0, 0)), true);
});
