/**
 * Real connectors on the test stack's Kafka Connect worker: registered and running for the length of a
 * test, deleted when it is done (see ../dev/connect-client.ts).
 */
import { ConnectClient, connectorFailure } from '../dev/connect-client.ts';
import { testEnv } from './test-env.ts';

export { databaseParts } from '../dev/connect-client.ts';

export interface RunningConnector extends AsyncDisposable {
  readonly name: string;
  /** Throws with the worker's trace when the connector or one of its tasks failed. */
  assertRunning(): Promise<void>;
}

/** Registers `name` and waits until the connector and its tasks are RUNNING. */
export async function startConnector(
  name: string,
  config: Readonly<Record<string, string>>,
  timeoutMs = 60_000,
): Promise<RunningConnector> {
  const client = new ConnectClient(testEnv.connectUrl());
  await client.register(name, config, timeoutMs);
  return {
    name,
    async assertRunning() {
      const s = await client.status(name);
      if (s === undefined) throw new Error(`connector ${name} is not registered`);
      const failed = connectorFailure(name, s);
      if (failed !== undefined) throw new Error(failed);
    },
    async [Symbol.asyncDispose]() {
      await client.remove(name);
    },
  };
}
