/**
 * HTTP endpoints of `pgbisync run`: /metrics (Prometheus), /healthz, /status (JSON), and POST /reload
 * (reads the config file again, ./daemon.ts; answers the outcome as JSON, 200 or 409 when refused).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { redactText } from '../config/redact.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ComponentState } from './sync-runner.ts';

/** What a reload did, as POST /reload answers it and `pgbisync reload` prints it. */
export interface ReloadOutcome {
  readonly reloaded: boolean;
  readonly tables: readonly string[];
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Why the reload was refused (the running sync goes on unchanged), and what to do. */
  readonly error?: string;
  readonly fix?: string;
}

/** What the endpoints read of the running sync. */
export interface RunnerView {
  readonly states: ReadonlyMap<string, ComponentState>;
  readonly instance: string;
}

export interface HttpServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startHttpServer(o: {
  host: string;
  port: number;
  metrics: Metrics;
  runner: RunnerView;
  reload?: () => Promise<ReloadOutcome>;
}): Promise<HttpServer> {
  const server = createServer((req, res) => {
    if (req.url === '/reload' && o.reload !== undefined) {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' });
        res.end('POST /reload reads the config file again\n');
        return;
      }
      o.reload().then(
        (outcome) => {
          res.writeHead(outcome.reloaded ? 200 : 409, { 'content-type': 'application/json' });
          res.end(redactText(`${JSON.stringify(outcome, null, 2)}\n`));
        },
        (error: unknown) => {
          res.writeHead(500);
          res.end(redactText(String(error)));
        },
      );
      return;
    }
    const states = [...o.runner.states.values()];
    if (req.url === '/metrics') {
      o.metrics.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': o.metrics.registry.contentType });
          res.end(text);
        })
        .catch((error: unknown) => {
          res.writeHead(500);
          res.end(String(error));
        });
      return;
    }
    if (req.url === '/healthz') {
      // 200 "active" (owns components, all well) or "standby" (owns none, stands by to take over);
      // 503 "unhealthy" with the components that are not (blocked, restarting, stopped).
      const unhealthy = states.filter((s) => !['running', 'starting', 'standby'].includes(s.state));
      const active = states.some((s) => s.state !== 'standby');
      res.writeHead(unhealthy.length === 0 ? 200 : 503, { 'content-type': 'text/plain' });
      const lines = unhealthy.map(
        (s) => `${s.name}: ${s.state}${s.lastError === undefined ? '' : ` (${s.lastError})`}\n`,
      );
      res.end(
        unhealthy.length > 0 ? redactText(`unhealthy\n${lines.join('')}`) : active ? 'active\n' : 'standby\n',
      );
      return;
    }
    if (req.url === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        redactText(`${JSON.stringify({ instance: o.runner.instance, components: states }, null, 2)}\n`),
      );
      return;
    }
    res.writeHead(404);
    res.end('not found: try /metrics, /healthz or /status\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${o.host}:${address.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
