import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckTracker } from './ack-tracker.ts';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('AckTracker', () => {
  it('confirms in commit order even when acks arrive out of order', async () => {
    const confirmed: bigint[] = [];
    const tracker = new AckTracker(10n, (lsn) => confirmed.push(lsn));
    const a = deferred();
    const b = deferred();
    const c = deferred();
    tracker.track(100n, a.promise);
    tracker.track(200n, b.promise);
    tracker.track(300n, c.promise);
    c.resolve();
    b.resolve();
    await tick();
    assert.deepEqual(confirmed, [], 'nothing confirmed while the first transaction is unacknowledged');
    a.resolve();
    await tick();
    assert.deepEqual(confirmed, [300n], 'one jump to the last contiguous acknowledged position');
    assert.equal(tracker.confirmedLsn, 300n);
  });

  it('confirms a keepalive position only after earlier transactions are acknowledged', async () => {
    const confirmed: bigint[] = [];
    const tracker = new AckTracker(0n, (lsn) => confirmed.push(lsn));
    tracker.idle(50n);
    assert.deepEqual(confirmed, [50n]);
    const a = deferred();
    tracker.track(100n, a.promise);
    tracker.idle(500n);
    await tick();
    assert.deepEqual(confirmed, [50n]);
    a.resolve();
    await tick();
    assert.deepEqual(confirmed, [50n, 500n]);
  });

  it('never confirms past a failed acknowledgement', async () => {
    const confirmed: bigint[] = [];
    const tracker = new AckTracker(0n, (lsn) => confirmed.push(lsn));
    const a = deferred();
    const b = deferred();
    tracker.track(100n, a.promise);
    tracker.track(200n, b.promise);
    a.reject(new Error('broker down'));
    b.resolve();
    await tick();
    tracker.idle(900n);
    await tick();
    assert.deepEqual(confirmed, []);
    assert.match(String(tracker.failure), /broker down/);
  });

  it('never moves backwards', () => {
    const confirmed: bigint[] = [];
    const tracker = new AckTracker(1000n, (lsn) => confirmed.push(lsn));
    tracker.idle(500n);
    assert.deepEqual(confirmed, []);
    assert.equal(tracker.confirmedLsn, 1000n);
  });
});
