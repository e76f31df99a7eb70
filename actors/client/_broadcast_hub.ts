/**
 * A client's broadcast hub: the broadcast nodes of ranges of engines that span several hosts,
 * run in the client's own actor system. The client hands its request to the root, and the root
 * its answer to the client, without the transport: a broadcast over hosts crosses the transport
 * only between the hub and one node (or engine) per host, as a direct call does. A node is
 * spawned the first time a broadcast needs it, so that the client's reads cover only the inboxes
 * of nodes in use.
 *
 * @module
 */
import type { ActorSystem } from "../core/system.ts";
import { BroadcastNodes } from "../broadcast_nodes.ts";
import { broadcastAddress } from "../protocol/addresses.ts";
import type { Died } from "../protocol/messages.ts";

/** The hub of one client. */
export class BroadcastHub {
  /** The hub's host id, which broadcast requests name as their `hub`. */
  readonly hostId: string;
  readonly #system: ActorSystem;
  readonly #nodes: BroadcastNodes;
  readonly #spawned = new Set<number>();

  /** A hub for the client speaking through `system` (best with local delivery). */
  constructor(system: ActorSystem) {
    this.#system = system;
    this.hostId = `b-${system.id}`;
    this.#nodes = new BroadcastNodes(this.hostId);
  }

  /** Spawns the nodes of `nodes` that do not run yet. */
  start(nodes: Iterable<number>): void {
    for (const node of nodes) {
      if (this.#spawned.has(node)) continue;
      this.#system.spawn(broadcastAddress(this.hostId, node), this.#nodes.actor(node));
      this.#spawned.add(node);
    }
  }

  /** Engines (and hosts) died: the hub's parts for them fail, now and in later broadcasts. */
  died(died: Died): void {
    this.#nodes.died(died);
  }

  /** Engines (and hosts) run again. */
  restarted(restarted: { engineIds: number[]; hostIds?: string[] }): void {
    this.#nodes.restarted(restarted);
  }

  /** Stops the nodes that were started. */
  async stop(): Promise<void> {
    for (const node of this.#spawned) {
      await this.#system.stopActor(broadcastAddress(this.hostId, node));
    }
    this.#spawned.clear();
  }
}
