/**
 * Entry of the components' worker thread (component-thread.ts has the protocol): runs an attempt of the
 * named component per `run`, aborts it on `stop`, and posts its reports and its end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { fromTransferable, toTransferable } from '../runtime/error-transfer.ts';
import type { ComponentWorkerData, FromWorker, ToWorker } from './component-thread.ts';
import { type ComponentReport, runComponent } from './components.ts';

const port = parentPort;
if (port === null) throw new Error('component-worker.ts runs as a worker thread (see component-thread.ts)');
const { config, tables } = workerData as ComponentWorkerData;
const post = (m: FromWorker) => port.postMessage(m);

const reporter = (name: string) => (report: ComponentReport) => post({ type: 'report', name, report });

/** The running attempt of each component, by name. */
const attempts = new Map<string, AbortController>();
port.on('message', (m: ToWorker) => {
  if (m.type === 'stop') {
    attempts.get(m.name)?.abort(m.reason === undefined ? undefined : fromTransferable(m.reason));
    return;
  }
  const { name } = m;
  const controller = new AbortController();
  attempts.set(name, controller);
  const end = (error?: unknown) => {
    if (attempts.get(name) === controller) attempts.delete(name);
    post(
      error === undefined ? { type: 'ended', name } : { type: 'ended', name, error: toTransferable(error) },
    );
  };
  runComponent(m.spec, { config, tables, report: reporter(name), signal: controller.signal }).then(
    () => end(),
    end,
  );
});
