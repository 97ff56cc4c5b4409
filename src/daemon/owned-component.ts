/**
 * Runs a component only while this instance owns it: each attempt first waits for the component's
 * lease (standing by while another instance owns it), then runs the component until the lease is lost or
 * the run stops, and gives the lease up after. Several `pgbisync run` on one config thus share the work,
 * and a survivor takes over the components of one that died.
 *
 * The lease decides who tries; PostgreSQL decides who writes. A capture streams from its slot, which
 * has one walsender at most; an applier writes in a session bound to its replication origin, which one
 * session at most can be. When the new owner finds either still held (SQLSTATE 55006, "active for PID
 * n") by a pgbisync backend, that backend belongs to the owner whose lease came free — dead, frozen or
 * cut off — and the new owner ends it before it starts (docs/deployment.md has the whole argument).
 */
import type { Logger } from '../observability/logger.ts';
import type { OwnedComponent } from '../operate/ownership.ts';
import type { Component } from '../runtime/supervisor.ts';
import { ComponentLease, type Instance, type LeaseEvents } from './lease.ts';

/** Leftovers ended in one attempt before it gives up (a slot and an origin both held: two). */
const MAX_LEFTOVERS_ENDED = 3;

export interface OwnershipOptions {
  readonly component: OwnedComponent;
  /** The URL of the component's node. */
  readonly url: string;
  readonly instance: Instance;
  readonly log: Logger;
  readonly events: LeaseEvents & {
    /** The lease was given up (the attempt ended, or the lease was lost). */
    released(): void;
  };
}

export function ownedComponent(inner: Component, o: OwnershipOptions): Component {
  return {
    name: inner.name,
    run: async (signal) => {
      const lease = new ComponentLease(o.component, o.url, o.instance);
      const lost = await lease.acquire(signal, o.events);
      if (lost === undefined) return; // stopped while standing by
      try {
        const running = AbortSignal.any([signal, lost]);
        for (let ended = 0; ; ) {
          try {
            await inner.run(running);
            break;
          } catch (error) {
            if (running.aborted) break;
            const pid = leftoverPid(error);
            if (pid === undefined || ended >= MAX_LEFTOVERS_ENDED || !(await lease.endLeftover(pid)))
              throw error;
            ended++;
            o.log.warn(
              { component: inner.name, node: o.component.node, pid, reason: messageOf(error) },
              "ended a former owner's backend that still held what this component needs",
            );
          }
        }
        if (lost.aborted && !signal.aborted) throw lost.reason;
      } finally {
        await lease.release();
        o.events.released();
      }
    },
  };
}

/**
 * The backend named by a 55006 (object_in_use) anywhere in the error's causes: PostgreSQL says
 * `replication slot "s" is active for PID n` and `replication origin with ID n is already active for PID n`.
 */
export function leftoverPid(error: unknown): number | undefined {
  const seen = new Set<unknown>();
  for (let e: unknown = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if ((e as { code?: unknown }).code === '55006') {
      const m = /active for PID (\d+)/.exec(e.message);
      if (m !== null) return Number(m[1]);
    }
    if (e instanceof AggregateError) {
      for (const inner of e.errors) {
        const pid = leftoverPid(inner);
        if (pid !== undefined) return pid;
      }
    }
  }
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
