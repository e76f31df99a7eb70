// The lease of a namespace's keys (see transport/_redis_lease.ts): every actor system renews it
// from its read loop, so that the streams and kept values live while any party of the cluster
// reads (values up to their own TTL), and leave the server within STREAM_LEASE_MS of the last
// one's end, however it ended. A host busy in a task still renews: its heartbeat thread runs a
// system of its own.
import type { Transport } from "../../transport/types.ts";

/**
 * How long the keys of a namespace outlive the last renewal of their lease, in ms: also about how
 * long a Redis outage can last before the idle streams of a live cluster expire (less a sweep).
 */
export const STREAM_LEASE_MS = 40_000;
/** How often the keys of a namespace are renewed, by whichever party asks first, in ms. */
export const LEASE_SWEEP_MS = 5000;
/** How often each system asks whether a renewal is due, in ms. */
const LEASE_CHECK_MS = 1000;

/** One actor system's part in the lease of its namespace's keys. */
export class NamespaceLease {
  readonly #transport: Transport;
  readonly #prefix: string;
  #next = 0;
  #renewing: Promise<void> | undefined;

  /** Leases the keys of `namespace` that `transport` creates from now on. */
  constructor(transport: Transport, namespace: string) {
    this.#transport = transport;
    this.#prefix = `${namespace}:`;
    transport.leaseKeys?.(this.#prefix, STREAM_LEASE_MS);
  }

  /** Renews the lease when a renewal is due; never waits, never throws. */
  tick(): void {
    const renew = this.#transport.renewLease;
    if (!renew || this.#renewing || Date.now() < this.#next) return;
    this.#next = Date.now() + LEASE_CHECK_MS;
    this.#renewing = renew.call(this.#transport, this.#prefix, LEASE_SWEEP_MS)
      .then(() => {}, () => {}) // the transport is away: a later tick renews
      .finally(() => (this.#renewing = undefined));
  }

  /** Resolves once no renewal is on its way. */
  async settled(): Promise<void> {
    await this.#renewing;
  }
}
