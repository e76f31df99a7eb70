/**
 * A client's broadcast hub: the Worker that runs, off the client's thread, the broadcast nodes
 * of ranges of engines that span several hosts.
 *
 * @module
 */
import type { ClusterKey } from "../../transport/envelope.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import type { ActorSystem } from "../core/system.ts";
import { broadcastAddress } from "../protocol/addresses.ts";
import type { FromBroadcastWorker, ToBroadcastWorker } from "../protocol/worker_messages.ts";

/** The hub Worker of one client, started on first use. */
export class BroadcastHub {
  /** The hub's host id, which broadcast requests name as their `hub`. */
  readonly hostId: string;
  readonly #system: ActorSystem;
  readonly #key: ClusterKey;
  readonly #transportUrl: string;
  readonly #nodes: number;
  #running: { worker: Worker; ready: Promise<string>; stopped: Promise<void> } | undefined;

  /** A hub for the client speaking through `system`, with node addresses `0 … nodes - 1`. */
  constructor(system: ActorSystem, key: ClusterKey, transportUrl: string, nodes: number) {
    this.#system = system;
    this.#key = key;
    this.#transportUrl = transportUrl;
    this.#nodes = nodes;
    this.hostId = `b-${system.id}`;
  }

  /** Resolves to the hub's host id once it runs; `undefined` until it was started. */
  get ready(): Promise<string> | undefined {
    return this.#running?.ready;
  }

  /** Starts the Worker, once; resolves to the hub's host id. */
  start(): Promise<string> {
    if (this.#running) return this.#running.ready;
    const { hostId } = this;
    const worker = new Worker(new URL("../host/_broadcast_worker.ts", import.meta.url), {
      type: "module",
    });
    let stopped!: () => void;
    const ready = new Promise<string>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<FromBroadcastWorker>) => {
        const message = event.data;
        if (message.type === "started") resolve(hostId);
        else if (message.type === "failed") {
          reject(new Error(`Cannot start broadcast actors: ${message.message}`));
        } else stopped();
      };
      worker.onerror = (event) => {
        event.preventDefault();
        const error = new Error(
          `Cannot run broadcast actors: their worker crashed: ${event.message}`,
        );
        reject(error);
        // Broadcasts in flight would wait forever for nodes that are gone; later ones fail at once.
        this.#running = { worker, ready: Promise.reject(error), stopped: Promise.resolve() };
        this.#running.ready.catch(() => {});
        for (let node = 0; node < this.#nodes; node++) {
          this.#system.failAsksTo(broadcastAddress(hostId, node), error);
        }
        worker.terminate();
      };
    });
    this.#running = {
      worker,
      ready,
      stopped: new Promise((resolve) => (stopped = resolve)),
    };
    const start: ToBroadcastWorker = {
      type: "start",
      key: this.#key,
      namespace: this.#system.namespace,
      hostId,
      nodes: this.#nodes,
    };
    const transport = this.#system.transport;
    if (transport instanceof MemoryTransport) {
      const port = transport.openPort();
      worker.postMessage({ ...start, port }, [port]);
    } else {
      worker.postMessage({ ...start, url: this.#transportUrl });
    }
    return ready;
  }

  /** Stops the Worker if it was started: its nodes first, for at most 5 s, then the Worker. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    const { worker, ready, stopped } = this.#running;
    if (await ready.then(() => true, () => false)) {
      worker.postMessage({ type: "stop" } satisfies ToBroadcastWorker);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
    }
    worker.terminate();
  }
}
