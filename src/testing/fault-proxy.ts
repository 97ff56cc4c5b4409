/**
 * A fault-injecting TCP proxy on 127.0.0.1: the daemon reaches a PostgreSQL node (or the Kafka broker,
 * through a listener that advertises the proxy's port) through it, the workload and the checker do not.
 * Faults:
 * - `drop`: every open connection is reset (what a restarted firewall or load balancer does);
 * - `stall`: bytes stop flowing both ways, the connections stay open (a network cut without FIN/RST,
 *   a frozen peer) until `heal`;
 * - `delay`: every chunk is held for a while before it is passed on, until `heal`.
 */
import net from 'node:net';

export type ProxyMode = { kind: 'pass' } | { kind: 'stall' } | { kind: 'delay'; ms: number };

export class FaultProxy {
  readonly #target: { host: string; port: number };
  readonly #server: net.Server;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  #mode: ProxyMode = { kind: 'pass' };
  /** Chunks held back while stalled, per direction, in order. */
  readonly #held: (() => void)[] = [];

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Listens on `listenPort` (default: a free port). */
  static async start(target: { host: string; port: number }, listenPort = 0): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(listenPort, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    const pair = { client, upstream };
    this.#pairs.add(pair);
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.#pipe(client, upstream);
    this.#pipe(upstream, client);
  }

  #pipe(from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk: Buffer) => {
      const send = () => {
        if (!to.destroyed) to.write(chunk);
      };
      const mode = this.#mode;
      if (mode.kind === 'stall' || this.#held.length > 0) this.#held.push(send);
      else if (mode.kind === 'delay') {
        from.pause();
        setTimeout(() => {
          send();
          from.resume();
        }, mode.ms);
      } else send();
    });
  }

  /** Resets every open connection; new ones pass. */
  drop(): void {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.#pairs.clear();
  }

  set(mode: ProxyMode): void {
    this.#mode = mode;
    if (mode.kind !== 'stall') for (const send of this.#held.splice(0)) send();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
