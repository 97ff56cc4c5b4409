import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep } from './sleep.ts';
import { StallWatch } from './stall-watch.ts';

/** Keeps this thread from running for `ms`, as SIGSTOP would. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

test('a stall longer than the bound is seen, and stays seen after the timer ran again', async () => {
  const watch = new StallWatch(300, 50);
  try {
    await sleep(200);
    assert.equal(watch.stalledMs(), undefined, 'a loop that runs is not stalled');
    block(200);
    assert.equal(watch.stalledMs(), undefined, 'a stall shorter than the bound');
    block(600);
    const gap = watch.stalledMs();
    assert.ok(gap !== undefined && gap >= 550, `stalled ${gap} ms`);
    await sleep(120);
    assert.equal(watch.stalledMs(), gap, 'still seen once the timer ran again');
  } finally {
    watch.stop();
  }
});

test('a stall first seen by the timer, running late, is seen by the next check', async () => {
  const watch = new StallWatch(300, 50);
  try {
    await sleep(100);
    block(600);
    // The timers run before this continuation: the late tick notes the stall, then refreshes its time.
    await sleep(0);
    const gap = watch.stalledMs();
    assert.ok(gap !== undefined && gap >= 550, `stalled ${gap} ms`);
  } finally {
    watch.stop();
  }
});
