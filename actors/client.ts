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
import { broadcastAddress } from "./broadcast.ts";
import { type Heartbeat, HEARTBEATS } from "./engine_host.ts";
import { LivenessWatch } from "./_liveness.ts";
import { BroadcastView, type BroadcastViewOptions } from "./broadcast_view.ts";
import type { ActorSystem } from "./system.ts";
import { DirectView } from "./view.ts";
import type { Outcome } from "./async_result.ts";

const encoder = new TextEncoder();

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** The actor system the client speaks through. */
  system: ActorSystem;
  /** The ids of the engines, sorted. */
  ids: number[];
  /** The cluster key. */
  key: ClusterKey;
  /** The transport's URL, password included (for the broadcast worker to connect with). */
  transportUrl: string;
  /** Write what tasks print to this process's stdout/stderr, each line prefixed `[engine N]`. */
  streamOutput?: boolean;
  /** Called by `close()` after the client's own system closed (e.g. to close the transport). */
  onClose?: () => Promise<void>;
  /**
   * An engine is taken for dead when its host has not been seen alive for this long, in ms: no
   * heartbeat came, or its heartbeats say that its event loop has not run (a task that blocks
   * it and never yields). Hosts in processes (`engine.ts`) send heartbeats from a thread of
   * their own. A task that blocks its host for longer than about this minus half a second is
   * taken for dead too: raise it for engines that run long synchronous tasks. Default 3000.
   */
  heartbeatTimeoutMs?: number;
  /**
   * Called, instead of marking the engines dead, when the heartbeats of host `hostId` say it is
   * dead: the `Cluster` that launched it ends it, marks its engines dead with
   * {@linkcode Client.engineDied} and may restart them.
   */
  onHostDied?: (hostId: string, engineIds: readonly number[], reason: string) => void;
}

/** The `detail` of a client's `"enginedied"` event. */
export interface EngineDiedDetail {
  /** The engine that died. */
  engineId: number;
  /** How it was found dead. */
  reason: string;
}

/** The `detail` of an `"enginerestarted"` event. */
export interface EngineRestartedDetail {
  /** The engine that runs again, on a new host, with a fresh namespace. */
  engineId: number;
}

/**
 * A connection to a cluster's engines (IPython Parallel's `Client`). Dispatches an
 * `"enginedied"` `CustomEvent` (detail {@linkcode EngineDiedDetail}) when an engine dies, and an
 * `"enginerestarted"` one (detail {@linkcode EngineRestartedDetail}) when a replacement of a dead
 * engine is running.
 */
export class Client extends EventTarget {
  /** The actor system the client speaks through. */
  readonly system: ActorSystem;
  readonly #ids: number[];
  readonly #dead = new Map<number, EngineDiedError>();
  /** Each engine's current tree wiring (`wireTree`): its id and engines. */
  readonly #trees = new Map<number, { wiring: string; ids: readonly number[] }>();
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
    this.#ids = [...options.ids].sort((a, b) => a - b);
    this.#onClose = options.onClose;
    this.#watchHeartbeats(options.heartbeatTimeoutMs ?? 3000, options.onHostDied);
  }

  /**
   * Polls the heartbeat stream and declares dead the engines of hosts not seen alive for
   * `timeoutMs` (see {@linkcode LivenessWatch}).
   */
  #watchHeartbeats(timeoutMs: number, onHostDied: ClientOptions["onHostDied"]): void {
    if (!(timeoutMs > 0)) {
      throw new RangeError(
        `Cannot make client: heartbeatTimeoutMs must be positive, got ${timeoutMs}`,
      );
    }
    const { system } = this;
    const stream = system.inboxOf(HEARTBEATS);
    const group = `beats.${system.id}`;
    const watch = new LivenessWatch(timeoutMs, (hostId, engineIds, reason) => {
      if (onHostDied) onHostDied(hostId, engineIds, reason);
      else for (const id of engineIds) this.engineDied(id, reason);
    });
    const poll = async () => {
      let entries;
      try {
        entries = await system.transport.read(group, system.id, [stream], {
          blockMs: 0,
          count: 1000,
        });
        if (entries.length) await system.transport.ack(stream, group, entries.map((e) => e.id));
      } catch {
        watch.pause(); // the transport is away: hosts cannot be heard
        return;
      }
      watch.advance();
      for (const entry of entries) {
        let beat: Heartbeat;
        try {
          beat = openEnvelope(entry.data ?? new Uint8Array(), this.#key).content as Heartbeat;
        } catch {
          continue; // not a heartbeat of this cluster
        }
        if (typeof beat?.hostId !== "string" || !Array.isArray(beat.engineIds)) continue;
        watch.seen(beat.hostId, beat.engineIds, beat.stalledMs ?? 0);
      }
      watch.check();
    };
    this.#heartbeats = setInterval(() => {
      this.#poll ??= poll().finally(() => (this.#poll = undefined));
    }, watch.periodMs);
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

  /**
   * @internal Starts, once, the Worker that runs this client's broadcast actors; resolves to its
   * host id.
   */
  broadcastHost(): Promise<string> {
    if (this.#closed) return Promise.reject(new Error("Cannot broadcast: the client is closed"));
    if (this.#broadcast) return this.#broadcast.ready;
    const hostId = `b-${this.system.id}`;
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
   * Marks engine `id` dead: every pending and later call on it fails with `EngineDiedError`
   * (until {@linkcode engineRestarted}), and the client dispatches `"enginedied"`.
   */
  engineDied(id: number, reason: string): void {
    if (this.#dead.has(id)) return;
    const error = new EngineDiedError(id, reason);
    this.#dead.set(id, error);
    this.system.failAsksTo(`engine.${id}`, error);
    this.dispatchEvent(
      new CustomEvent<EngineDiedDetail>("enginedied", { detail: { engineId: id, reason } }),
    );
    this.#broadcast?.ready.then((hostId) =>
      this.system.send(broadcastAddress(hostId, 0), "died", { engineIds: [id], reason })
    ).catch(() => {});
    // Tree reductions waiting on it fail now rather than when their pings go unanswered.
    this.#trees.delete(id);
    const told = [...this.#trees].filter(([other, tree]) =>
      tree.ids.includes(id) && !this.#dead.has(other)
    );
    if (told.length === 0) return;
    this.system.sendMany(told.map(([other, tree]) => ({
      to: `tree.${other}`,
      type: "died",
      content: { wiring: tree.wiring, engineId: id, reason },
    }))).catch(() => {});
  }

  /** @internal Records that `wireTree` wired engines `ids` into tree `wiring`. */
  treeWired(wiring: string, ids: readonly number[]): void {
    for (const id of ids) this.#trees.set(id, { wiring, ids: [...ids] });
  }

  /**
   * Marks dead engine `id` alive again: a replacement with the same id runs (the `Cluster` calls
   * this once it restarted the engine). Later calls go to it; calls that were pending when it died
   * stay failed. Dispatches `"enginerestarted"`. Resolves once the broadcast actors know too.
   */
  async engineRestarted(id: number): Promise<void> {
    if (!this.#dead.delete(id)) return;
    await this.#broadcast?.ready.then((hostId) =>
      this.system.send(broadcastAddress(hostId, 0), "restarted", { engineIds: [id] })
    ).catch(() => {});
    this.dispatchEvent(
      new CustomEvent<EngineRestartedDetail>("enginerestarted", { detail: { engineId: id } }),
    );
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
