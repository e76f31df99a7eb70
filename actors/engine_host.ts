/**
 * An engine host: one event loop (a Worker or a process) running many engine actors on one
 * actor system, so they share one set of transport connections and one blocking reader.
 *
 * @module
 */
import type { ClusterKey } from "../transport/envelope.ts";
import type { Transport } from "../transport/types.ts";
import { defineActor } from "./actor.ts";
import { engineActor } from "./engine.ts";
import { ActorSystem } from "./system.ts";

/** The address engines register at: its inbox is the cluster's registry stream. */
export const REGISTRY = "_registry";

/** What an engine writes to the registry when it is ready. */
export interface Registration {
  /** The engine's id. */
  id: number;
  /** The engine host it runs on. */
  hostId: string;
  /** The host's process id. */
  pid: number;
  /** When the engine became ready (ms since the epoch). */
  at: number;
}

/** Configuration of an engine host. */
export interface EngineHostConfig {
  /** The cluster's namespace (stream key prefix). */
  namespace: string;
  /** The cluster key. */
  key: ClusterKey;
  /** The ids of the engines this host runs. */
  engineIds: number[];
  /** The number of engines in the cluster. */
  size: number;
  /** This host's id, unique in the cluster. */
  hostId: string;
}

/** A running engine host. */
export class EngineHost {
  /** The actor system the engines run on. */
  readonly system: ActorSystem;
  /** Resolves when the host is asked to stop by a `stop` message to `host.<hostId>`. */
  readonly stopRequested: Promise<void>;

  private constructor(system: ActorSystem, stopRequested: Promise<void>) {
    this.system = system;
    this.stopRequested = stopRequested;
  }

  /** Starts the engines of `config` on `transport` and registers each of them. */
  static async start(transport: Transport, config: EngineHostConfig): Promise<EngineHost> {
    const system = new ActorSystem({
      transport,
      key: config.key,
      namespace: config.namespace,
      id: config.hostId,
    });
    let requestStop!: () => void;
    const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
    system.spawn(
      `host.${config.hostId}`,
      defineActor({ handlers: {}, control: { stop: () => requestStop() } }),
    );
    for (const id of config.engineIds) {
      const engine = engineActor({ id, size: config.size, transport });
      system.spawn(`engine.${id}`, engine.definition);
    }
    await system.sendMany(config.engineIds.map((id) => ({
      to: REGISTRY,
      type: "register",
      content: { id, hostId: config.hostId, pid: Deno.pid, at: Date.now() } satisfies Registration,
    })));
    return new EngineHost(system, stopRequested);
  }

  /** Stops every engine of this host. Does not close the transport. */
  async close(): Promise<void> {
    await this.system.close();
  }
}
