/**
 * A client's broadcast hub: the broadcast nodes of ranges of engines that span several hosts,
 * run in the client's own actor system. The client hands its request to the root, and the root
 * its answer to the client, without the transport: a broadcast over hosts crosses the transport
 * only between the hub and one node (or engine) per host, as a direct call does.
 *
 * @module
 */
import type { ActorSystem } from "../core/system.ts";
import { BroadcastNodes } from "../broadcast_nodes.ts";
import { broadcastAddress } from "../protocol/addresses.ts";

/** The hub of one client, started on first use. */
export class BroadcastHub {
  /** The hub's host id, which broadcast requests name as their `hub`. */
  readonly hostId: string;
  readonly #system: ActorSystem;
  readonly #nodes: number;
  #ready: Promise<string> | undefined;

  /**
   * A hub for the client speaking through `system` (which must deliver locally), with node
   * addresses `0 … nodes - 1`.
   */
  constructor(system: ActorSystem, nodes: number) {
    this.#system = system;
    this.#nodes = nodes;
    this.hostId = `b-${system.id}`;
  }

  /** Resolves to the hub's host id once it runs; `undefined` until it was started. */
  get ready(): Promise<string> | undefined {
    return this.#ready;
  }

  /** Spawns the nodes, once; resolves to the hub's host id. */
  start(): Promise<string> {
    if (this.#ready) return this.#ready;
    const nodes = new BroadcastNodes(this.hostId);
    for (let node = 0; node < this.#nodes; node++) {
      this.#system.spawn(broadcastAddress(this.hostId, node), nodes.actor(node));
    }
    return this.#ready = Promise.resolve(this.hostId);
  }

  /** Stops the nodes if they were started. */
  async stop(): Promise<void> {
    if (!this.#ready) return;
    for (let node = 0; node < this.#nodes; node++) {
      await this.#system.stopActor(broadcastAddress(this.hostId, node));
    }
  }
}
