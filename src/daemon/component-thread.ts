/**
 * The captures on a worker thread (`threads: true`). A capture (decode, encode, produce) and an applier
 * (consume, decode, group, write) each keep a core busy at full speed; on one thread they take turns, so
 * a sync ran at the pace of one core while the other idled (docs/performance.md). The captures share one
 * worker thread and the appliers stay on the main thread: one more V8 isolate (~45 MiB idle with the
 * modules loaded, plus its heap), where a thread per component cost a few hundred MiB with four.
 *
 * The worker is started at the first attempt and kept for the next ones (a restart builds new
 * connections and clients in it, not a new thread); `close()` ends it. Protocol: the runner posts `run`
 * and, when an attempt's signal aborts, `stop`, both naming the component; the worker posts `report`s and
 * one `ended` per attempt, carrying the attempt's error (error-transfer.ts keeps its class, code and
 * hint, which the supervisor acts on). A worker that dies (an uncaught error, out of memory) fails every
 * attempt on it like any error; the next attempt starts a new worker.
 */
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/schema.ts';
import { fromTransferable, type TransferredError, toTransferable } from '../runtime/error-transfer.ts';
import { ErrorCode, RetryableError } from '../runtime/errors.ts';
import { type CaptureSpec, type ComponentReport, componentName } from './components.ts';

export interface ComponentWorkerData {
  readonly config: Config;
  readonly tables: readonly string[];
}

/** `name`: the component's (componentName). */
export type ToWorker =
  | { readonly type: 'run'; readonly name: string; readonly spec: CaptureSpec }
  | { readonly type: 'stop'; readonly name: string; readonly reason?: TransferredError };
export type FromWorker =
  | { readonly type: 'report'; readonly name: string; readonly report: ComponentReport }
  | { readonly type: 'ended'; readonly name: string; readonly error?: TransferredError };

/** The worker's module next to this one (.ts when run from source, .js when compiled). */
const WORKER_URL = new URL(
  `./component-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`,
  import.meta.url,
);

export class ComponentThread {
  readonly #data: ComponentWorkerData;
  readonly #onStrayError: (error: Error) => void;
  #worker: Worker | undefined;

  /** `onStrayError`: the worker failed while no attempt ran (the next attempt starts a new one). */
  constructor(data: ComponentWorkerData, onStrayError: (error: Error) => void) {
    this.#data = data;
    this.#onStrayError = onStrayError;
  }

  /**
   * One attempt on the worker: resolves when it stopped after `signal` aborted, rejects when it failed.
   * Captures only: their reports are plain data (an applier's dead letters carry errors, and appliers
   * stay on the main thread).
   */
  run(spec: CaptureSpec, signal: AbortSignal, report: (r: ComponentReport) => void): Promise<void> {
    const name = componentName(spec);
    const worker = this.#worker ?? this.#start();
    return new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        signal.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onMessage = (m: FromWorker) => {
        if (m.name !== name) return;
        if (m.type === 'ended') done(m.error === undefined ? undefined : fromTransferable(m.error));
        else report(m.report);
      };
      const onError = (error: Error) => done(error);
      const onExit = (code: number) =>
        done(
          new RetryableError(`the worker thread running ${name} exited (code ${code})`, {
            code: ErrorCode.COMPONENT_ENDED,
            hint: 'nothing if it runs again (a new worker thread starts); if it keeps exiting, look for a crash or an out-of-memory report before this one',
          }),
        );
      // The reason goes along: a capture that lost its lease stops sending at once (components.ts).
      const onAbort = () =>
        worker.postMessage({ type: 'stop', name, reason: toTransferable(signal.reason) } satisfies ToWorker);
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
      worker.postMessage({ type: 'run', name, spec } satisfies ToWorker);
      if (signal.aborted) onAbort();
    });
  }

  #start(): Worker {
    const worker = new Worker(WORKER_URL, { workerData: this.#data, name: 'pgbisync components' });
    // Between attempts nobody else listens: an 'error' without a listener would crash the process.
    worker.on('error', (error) => {
      if (worker.listenerCount('error') === 1) this.#onStrayError(error);
    });
    worker.once('exit', () => {
      if (this.#worker === worker) this.#worker = undefined;
    });
    this.#worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }
}
