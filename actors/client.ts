/**
 * The client of a cluster: knows its engines and makes views on them.
 *
 * @module
 */
import { EngineDiedError } from "../errors.ts";
import { type ClusterKey, openEnvelope } from "../transport/envelope.ts";
import { MemoryTransport } from "../transport/memory.ts";
import type { Transport } from "../transport/types.ts";
import type { FromBroadcastWorker, ToBroadcastWorker } from "./_broadcast_worker.ts";
import { broadcastAddress, type Died } from "./broadcast.ts";
import { type Heartbeat, HEARTBEATS } from "./engine_host.ts";
import { BroadcastView, type BroadcastViewOptions } from "./broadcast_view.ts";
import type { ActorSystem } from "./system.ts";
import { DirectView } from "./view.ts";
import type { Outcome } from "./async_result.ts";

const encoder = new TextEncoder();

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** The actor system the client speaks through. */
  system: ActorSystem;
  /** The engines, each with the id of the host that runs it. */
  hosts: ReadonlyMap<number, string>;
  /** The cluster key. */
  key: ClusterKey;
  /** The transport's URL, password included (for the broadcast worker to connect with). */
  transportUrl: string;
  /** Write what tasks print to this process's stdout/stderr, each line prefixed `[engine N]`. */
  streamOutput?: boolean;
  /** Called by `close()` after the client's own system closed (e.g. to close the transport). */
  onClose?: () => Promise<void>;
  /**
   * An engine whose host sends heartbeats and falls silent this long (ms) is taken for dead.
   * Default 3000. Hosts started by `engine.ts` send heartbeats; hosts a `Cluster` launched are
   * watched directly.
   */
  heartbeatTimeoutMs?: number;
}

/** The `detail` of a client's `"enginedied"` event. */
export interface EngineDiedDetail {
  /** The engine that died. */
  engineId: number;
  /** How it was found dead. */
  reason: string;
}

/**
 * A connection to a cluster's engines (IPython Parallel's `Client`). Dispatches an
 * `"enginedied"` `CustomEvent` (detail {@linkcode EngineDiedDetail}) when an engine dies.
 */
export class Client extends EventTarget {
  /** The actor system the client speaks through. */
  readonly system: ActorSystem;
  readonly #ids: number[];
  readonly #hosts: Map<number, string>;
  readonly #dead = new Map<number, EngineDiedError>();
  readonly #deadHosts = new Set<string>();
  readonly #onClose?: () => Promise<void>;
  readonly #key: ClusterKey;
  readonly #transportUrl: string;
  readonly #streamOutput: boolean;
  #broadcast: { worker: Worker; ready: Promise<string>; stopped: Promise<void> } | undefined;
  #heartbeats: ReturnType<typeof setInterval> | undefined;
  #poll: Promise<void> | undefined;
  #closed = false;

  /** Makes a client speaking through `options.system`; `Cluster` makes clients for you. */
  constructor(options: ClientOptions) {
    super();
    this.system = options.system;
    this.#key = options.key;
    this.#transportUrl = options.transportUrl;
    this.#streamOutput = options.streamOutput ?? false;
    this.#hosts = new Map(options.hosts);
    this.#ids = [...this.#hosts.keys()].sort((a, b) => a - b);
    this.#onClose = options.onClose;
    this.#watchHeartbeats(options.heartbeatTimeoutMs ?? 3000);
  }

  /** Polls the heartbeat stream and declares dead the engines of hosts that fell silent. */
  #watchHeartbeats(timeoutMs: number): void {
    const { system } = this;
    const stream = system.inboxOf(HEARTBEATS);
    const group = `beats.${system.id}`;
    const hosts = new Map<string, { seen: number; engineIds: number[] }>();
    const period = Math.max(50, Math.min(500, timeoutMs / 4));
    let lastPoll = Date.now();
    const poll = async () => {
      try {
        const entries = await system.transport.read(group, system.id, [stream], {
          blockMs: 0,
          count: 1000,
        });
        const now = Date.now();
        for (const entry of entries) {
          try {
            const { content } = openEnvelope(entry.data ?? new Uint8Array(), this.#key);
            const beat = content as Heartbeat;
            hosts.set(beat.hostId, { seen: now, engineIds: beat.engineIds });
          } catch { /* not a heartbeat of this cluster */ }
        }
        if (entries.length) await system.transport.ack(stream, group, entries.map((e) => e.id));
        // A poll this late means this process stalled, not the hosts: start counting again.
        const stalled = now - lastPoll > timeoutMs;
        lastPoll = now;
        for (const [hostId, host] of hosts) {
          if (stalled) host.seen = now;
          else if (now - host.seen > timeoutMs) {
            hosts.delete(hostId);
            const silent = ((now - host.seen) / 1000).toFixed(1);
            for (const id of host.engineIds) {
              this.engineDied(id, `its host ${hostId} sent no heartbeat for ${silent} s`);
            }
          }
        }
      } catch { /* the transport is away: the next poll tries again */ }
    };
    this.#heartbeats = setInterval(() => {
      this.#poll ??= poll().finally(() => (this.#poll = undefined));
    }, period);
  }

  /** The ids of the engines, sorted. */
  get ids(): number[] {
    return [...this.#ids];
  }

  /** The cluster's namespace (stream key prefix). */
  get namespace(): string {
    return this.system.namespace;
  }

  /** The transport the cluster runs on. */
  get transport(): Transport {
    return this.system.transport;
  }

  /**
   * A view on some engines: all of them by default (`rc[:]`), one id, or a list of ids, whose
   * order is the order results come back in.
   */
  view(targets?: number | readonly number[]): DirectView {
    return new DirectView(this, this.resolveTargets(targets));
  }

  /**
   * A view whose calls go out as one message to a tree of broadcast actors (at most `fanout`
   * children each) and come back as one answer, in target order.
   */
  broadcastView(
    targets?: number | readonly number[],
    options: BroadcastViewOptions = {},
  ): BroadcastView {
    return new BroadcastView(this, this.resolveTargets(targets), options);
  }

  /** The id of the host that runs engine `engineId`. */
  hostOf(engineId: number): string {
    const host = this.#hosts.get(engineId);
    if (host === undefined) throw new RangeError(`Cannot find engine ${engineId}: no such engine`);
    return host;
  }

  /** @internal The id of the host of the broadcast nodes whose engines span several hosts. */
  get hubId(): string {
    return `b-${this.system.id}`;
  }

  /**
   * @internal Starts, once, the Worker that runs this client's broadcast actors; resolves to its
   * host id.
   */
  broadcastHost(): Promise<string> {
    if (this.#closed) return Promise.reject(new Error("Cannot broadcast: the client is closed"));
    if (this.#broadcast) return this.#broadcast.ready;
    const hostId = this.hubId;
    const worker = new Worker(new URL("./_broadcast_worker.ts", import.meta.url), {
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
        this.#broadcast = { worker, ready: Promise.reject(error), stopped: Promise.resolve() };
        this.#broadcast.ready.catch(() => {});
        for (let node = 0; node < Math.max(1, this.#ids.length); node++) {
          this.system.failAsksTo(broadcastAddress(hostId, node), error);
        }
        worker.terminate();
      };
    });
    this.#broadcast = {
      worker,
      ready,
      stopped: new Promise((resolve) => (stopped = resolve)),
    };
    const start: ToBroadcastWorker = {
      type: "start",
      key: this.#key,
      namespace: this.namespace,
      hostId,
      nodes: Math.max(1, this.#ids.length),
    };
    const transport = this.system.transport;
    if (transport instanceof MemoryTransport) {
      const port = transport.openPort();
      worker.postMessage({ ...start, port }, [port]);
    } else {
      worker.postMessage({ ...start, url: this.#transportUrl });
    }
    return ready;
  }

  /**
   * @internal With `streamOutput`, writes what an engine printed for a call, each line prefixed
   * with `[engine N]`, as its result arrives. Returns the outcome.
   */
  echoOutput(outcome: Outcome): Outcome {
    if (!this.#streamOutput || !("result" in outcome)) return outcome;
    const { engineId, stdout, stderr } = outcome.result;
    const prefix = (text: string) => text.replace(/^(?=.)/gm, `[engine ${engineId}] `);
    if (stdout) Deno.stdout.writeSync(encoder.encode(prefix(stdout)));
    if (stderr) Deno.stderr.writeSync(encoder.encode(prefix(stderr)));
    return outcome;
  }

  /** @internal Checks and normalises a targets argument. */
  resolveTargets(targets?: number | readonly number[]): number[] {
    const list = targets === undefined ? this.#ids : typeof targets === "number" ? [targets] : [
      ...targets,
    ];
    for (const id of list) {
      if (!this.#ids.includes(id)) {
        throw new RangeError(`Cannot target engine ${id}: no such engine (engines: ${this.#ids})`);
      }
    }
    if (new Set(list).size !== list.length) {
      throw new RangeError(`Cannot target engines ${list}: an engine is listed twice`);
    }
    if (list.length === 0) throw new RangeError("Cannot make a view on no engines");
    return list;
  }

  /** The error of engine `id` if it is known to be dead. */
  deadEngine(id: number): EngineDiedError | undefined {
    return this.#dead.get(id);
  }

  /**
   * Marks engine `id` and its host dead: every pending and later call on it fails with
   * `EngineDiedError`, and so do the broadcasts whose nodes ran on that host.
   */
  engineDied(id: number, reason: string): void {
    if (this.#dead.has(id)) return;
    const error = new EngineDiedError(id, reason);
    this.#dead.set(id, error);
    this.system.failAsksTo(`engine.${id}`, error);
    const host = this.#hosts.get(id);
    if (host !== undefined && !this.#deadHosts.has(host)) {
      this.#deadHosts.add(host);
      const prefix = broadcastAddress(host, 0).slice(0, -1);
      this.system.failAsksWhere((to) => to.startsWith(prefix), error);
    }
    this.dispatchEvent(
      new CustomEvent<EngineDiedDetail>("enginedied", { detail: { engineId: id, reason } }),
    );
    // Every live host's broadcast nodes share what they know: one message per host.
    const died: Died = { engineIds: [id], hostIds: host === undefined ? [] : [host], reason };
    for (const live of new Set(this.#hosts.values())) {
      if (this.#deadHosts.has(live)) continue;
      this.system.send(broadcastAddress(live, 0), "died", died).catch(() => {});
    }
    this.#broadcast?.ready.then((hub) => this.system.send(broadcastAddress(hub, 0), "died", died))
      .catch(() => {});
  }

  /** Closes the client's connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeats);
    await this.#poll;
    if (this.#broadcast) {
      const { worker, ready, stopped } = this.#broadcast;
      if (await ready.then(() => true, () => false)) {
        worker.postMessage({ type: "stop" } satisfies ToBroadcastWorker);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, 5000)))]);
        clearTimeout(timer);
      }
      worker.terminate();
    }
    await this.system.close();
    await this.#onClose?.();
  }
}
