/**
 * Kafka Connect's REST API as tests and the benchmark use it: register a connector and wait until it
 * and its tasks run, read its status, delete it and wait until the worker forgot it. A connector or
 * task that fails is reported with Connect's own stack trace, so a caller never only times out.
 */
import { firstHostUrl } from '../pg/node-url.ts';
import { sleep } from './process-tools.ts';

export interface ConnectorStatus {
  readonly connector: { readonly state: string; readonly trace?: string };
  readonly tasks: readonly { readonly id: number; readonly state: string; readonly trace?: string }[];
}

/** Why the connector or one of its tasks failed, or undefined when none did. */
export function connectorFailure(name: string, s: ConnectorStatus): string | undefined {
  if (s.connector.state === 'FAILED') return `connector ${name} failed:\n${s.connector.trace ?? ''}`;
  const task = s.tasks.find((t) => t.state === 'FAILED');
  return task === undefined ? undefined : `connector ${name} task ${task.id} failed:\n${task.trace ?? ''}`;
}

export class ConnectClient {
  readonly url: string;

  constructor(url: string) {
    this.url = url;
  }

  async #rest(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, {
        method,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw new Error(`Kafka Connect did not answer ${method} ${this.url}${path}`, { cause: error });
    }
  }

  /** The connector's status, or undefined when it is not registered. */
  async status(name: string): Promise<ConnectorStatus | undefined> {
    const response = await this.#rest('GET', `/connectors/${name}/status`);
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`GET /connectors/${name}/status: HTTP ${response.status}`);
    return (await response.json()) as ConnectorStatus;
  }

  /** PUT /connectors/<name>/config, then waits until the connector and its tasks are RUNNING. */
  async register(name: string, config: Readonly<Record<string, string>>, timeoutMs: number): Promise<void> {
    const response = await this.#rest('PUT', `/connectors/${name}/config`, config);
    if (!response.ok) {
      throw new Error(
        `Kafka Connect refused connector ${name}: HTTP ${response.status} ${await response.text()}`,
      );
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.status(name);
      if (s !== undefined) {
        const failed = connectorFailure(name, s);
        if (failed !== undefined) throw new Error(failed);
        if (
          s.connector.state === 'RUNNING' &&
          s.tasks.length > 0 &&
          s.tasks.every((t) => t.state === 'RUNNING')
        ) {
          return;
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`connector ${name} not running after ${timeoutMs} ms: ${JSON.stringify(s)}`);
      }
      await sleep(250);
    }
  }

  /** DELETE /connectors/<name>, then waits (up to `timeoutMs`) until the worker forgot it. */
  async remove(name: string, timeoutMs = 30_000): Promise<void> {
    await this.#rest('DELETE', `/connectors/${name}`);
    // Gone once its task released what it held (the source's slot, the sink's connections).
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && (await this.status(name)) !== undefined) await sleep(200);
  }
}

/** host, port, user, password and database of a PostgreSQL URL, as connectors want them. */
export function databaseParts(url: string): {
  host: string;
  port: string;
  user: string;
  password: string;
  database: string;
} {
  // A connector takes one host: the first of a node url listing several.
  const u = new URL(firstHostUrl(url));
  return {
    host: u.hostname,
    port: u.port || '5432',
    user: decodeURIComponent(u.username),
    // The dev servers trust local connections; the JDBC driver still wants a password string.
    password: decodeURIComponent(u.password) || 'unused',
    database: u.pathname.slice(1),
  };
}
