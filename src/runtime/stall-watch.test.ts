import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep } from './sleep.ts';
import { StallWatch } from './stall-watch.ts';

/** Keeps this thread from running for `ms`, as SIGSTOP would. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

test('a loop kept from running longer than the bound is seen as stalled until its timer runs again', async () => {
  const watch = new StallWatch(300, 50);
  try {
    await sleep(200);
    assert.equal(watch.stalledMs(), undefined, 'a loop that runs is not stalled');
    block(600);
    const gap = watch.stalledMs();
    assert.ok(gap !== undefined && gap >= 550, `stalled ${gap} ms`);
    await sleep(120);
    assert.equal(watch.stalledMs(), undefined, 'the timer ran again');
    block(200);
    assert.equal(watch.stalledMs(), undefined, 'a stall shorter than the bound');
  } finally {
    watch.stop();
  }
});
