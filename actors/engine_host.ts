/**
 * An engine host: one event loop (a Worker or a process) running many engine actors on one
 * actor system, so they share one set of transport connections and one blocking reader, and the
 * broadcast nodes of the broadcast trees that reach them.
 *
 * @module
 */
import type { ClusterKey } from "../transport/envelope.ts";
import type { Transport } from "../transport/types.ts";
import { defineActor } from "./actor.ts";
import { broadcastAddress, BroadcastNodes } from "./broadcast.ts";
import { dispatcherActor, dispatcherAddress } from "./dispatcher.ts";
import { engineActor } from "./engine.ts";
import { ActorSystem } from "./system.ts";
import { spawnTaskReader } from "./task_reader.ts";
import type { ToHeartbeatWorker } from "./_heartbeat_worker.ts";
import { aliveAddress, HostClock, setHostClock } from "./_liveness.ts";
import { TaskRealm } from "./_task_realm.ts";

/** The address engines register at: its inbox is the cluster's registry stream. */
export const REGISTRY = "_registry";

/** The address engine hosts send heartbeats to: its inbox is the cluster's heartbeat stream. */
export const HEARTBEATS = "_heartbeats";

/** What an engine host sends every heartbeat interval. */
export interface Heartbeat {
  /** The host's id. */
  hostId: string;
  /** The engines it runs. */
  engineIds: number[];
  /** When it was sent (ms since the epoch, host's clock). */
  at: number;
  /**
   * Greater than that of every earlier beat of the host (its clock's ms, or one more than the
   * last): a beat whose `seq` is not greater than the last one heard is a replay and says nothing.
   */
  seq: number;
  /**
   * How long before `at` the host's event loop last ran, in ms: near 0 while it runs, growing
   * while a task computes without yielding. A busy host is alive: this only informs.
   */
  stalledMs?: number;
  /** Set while a task blocks the host past its call's deadline: its engine and by how much. */
  overrun?: { engineId: number; overrunMs: number };
}

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

/** What a host writes to the registry for each of its engines when it stops. */
export interface Unregistration {
  /** The engine's id. */
  id: number;
  /** The engine host that ran it. */
  hostId: string;
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
  /**
   * How long (ms) the engines keep each task's answer for `client.getResult`; 0 keeps nothing.
   * Default 1 hour. A host keeps at most its last 1,000 answers (one per task of an engine, or
   * one per broadcast for all its engines), as IPython Parallel's hub database keeps 1,024 records.
   */
  resultRetentionMs?: number;
  /** The host's systems' `replayWindowMs` (see `ActorSystemOptions`). */
  replayWindowMs?: number;
  /**
   * Send heartbeats from the host's liveness thread, so that clients notice when the host's
   * process dies or stops (SIGSTOP, a machine gone, a cut link): the transport URL (password
   * included) and the interval in ms (default 250).
   */
  heartbeat?: { url: string; intervalMs?: number };
  /**
   * How the host's liveness thread reaches the transport when the host sends no heartbeats (a
   * host in a Worker of the `Cluster`): a URL, or a port of the embedded transport. With neither
   * (and no `heartbeat`), the host answers its engines' liveness pings from its own event loop,
   * so a long task there looks like a death to tree reductions.
   */
  liveness?: { url?: string; port?: MessagePort };
  /**
   * The buffer of the host's {@linkcode HostClock}, for a watcher on another thread of this
   * process (the `Cluster` that started the host in a Worker). Made by the host when absent.
   */
  clock?: SharedArrayBuffer;
  /**
   * Sandbox the tasks: run them in a task realm of their own (a Worker) with exactly these
   * permissions (Worker `deno.permissions` shape, omitted kinds denied), away from the key and the
   * transport. Needs `--unstable-worker-options`.
   */
  taskPermissions?: Deno.PermissionOptionsObject;
}

/** A running engine host. */
export class EngineHost {
  /** The actor system the engines run on. */
  readonly system: ActorSystem;
  /** Resolves when the host is asked to stop by a `stop` message to `host.<hostId>`. */
  readonly stopRequested: Promise<void>;

  readonly #stopTicks: () => void;
  readonly #heartbeat: Worker | undefined;
  readonly #engineIds: number[];
  readonly #hostId: string;
  readonly #realm: TaskRealm | undefined;

  private constructor(
    system: ActorSystem,
    config: EngineHostConfig,
    stopRequested: Promise<void>,
    stopTicks: () => void,
    heartbeat?: Worker,
    realm?: TaskRealm,
  ) {
    this.system = system;
    this.#engineIds = [...config.engineIds];
    this.#hostId = config.hostId;
    this.stopRequested = stopRequested;
    this.#stopTicks = stopTicks;
    this.#heartbeat = heartbeat;
    this.#realm = realm;
  }

  /** Starts the engines of `config` on `transport` and registers each of them. */
  static async start(transport: Transport, config: EngineHostConfig): Promise<EngineHost> {
    const system = new ActorSystem({
      transport,
      key: config.key,
      namespace: config.namespace,
      id: config.hostId,
      replayWindowMs: config.replayWindowMs,
      // A broadcast's hops between this host's nodes and engines, and tree reductions between
      // its engines, need not cross the transport.
      localDelivery: true,
    });
    let requestStop!: () => void;
    const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
    system.spawn(
      `host.${config.hostId}`,
      defineActor({ handlers: {}, control: { stop: () => requestStop() } }),
    );
    const clock = new HostClock(config.clock);
    const realm = config.taskPermissions
      ? await TaskRealm.start({
        permissions: config.taskPermissions,
        size: config.size,
        clock: clock.buffer,
        transport,
        hostId: config.hostId,
      }).catch(async (error) => {
        await system.close();
        throw error;
      })
      : undefined;
    for (const id of config.engineIds) {
      const engine = engineActor({
        realm,
        id,
        size: config.size,
        transport,
        resultRetentionMs: config.resultRetentionMs,
      });
      system.spawn(`engine.${id}`, engine.definition);
    }
    system.spawn(dispatcherAddress(config.hostId), dispatcherActor(config.hostId));
    spawnTaskReader(system, config.hostId, config.engineIds);
    const nodes = new BroadcastNodes(config.hostId);
    for (let node = 0; node < Math.max(1, config.size); node++) {
      system.spawn(broadcastAddress(config.hostId, node), nodes.actor(node));
    }
    setHostClock(clock);
    // Tasks run in the realm's event loop, which ticks the clock.
    const stopTicks = realm ? () => {} : clock.start();
    let heartbeat: Worker | undefined;
    try {
      if (config.heartbeat || config.liveness) heartbeat = await startHeartbeat(config, clock);
      else {
        for (const id of config.engineIds) {
          system.spawn(
            aliveAddress(id),
            defineActor({ handlers: {}, control: { ping: () => ({ id, at: Date.now() }) } }),
          );
        }
      }
    } catch (error) {
      stopTicks();
      realm?.close();
      setHostClock(undefined);
      await system.close();
      throw error;
    }
    await system.sendMany(config.engineIds.map((id) => ({
      to: REGISTRY,
      type: "register",
      content: { id, hostId: config.hostId, pid: Deno.pid, at: Date.now() } satisfies Registration,
    })));
    return new EngineHost(system, config, stopRequested, stopTicks, heartbeat, realm);
  }

  /**
   * Stops every engine of this host (and its heartbeats), and says so in the registry (an
   * `unregister` per engine), so that a client connecting later does not take the engines for
   * this host's. Does not close the transport.
   */
  async close(): Promise<void> {
    this.#stopTicks();
    setHostClock(undefined);
    await this.system.sendMany(this.#engineIds.map((id) => ({
      to: REGISTRY,
      type: "unregister",
      content: { id, hostId: this.#hostId } satisfies Unregistration,
    }))).catch(() => {}); // the transport is away: the registry keeps the last word it had
    if (this.#heartbeat) {
      const heartbeat = this.#heartbeat;
      const stopped = new Promise((resolve) => (heartbeat.onmessage = resolve));
      heartbeat.postMessage({ type: "stop" } satisfies ToHeartbeatWorker);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      heartbeat.terminate();
    }
    this.#realm?.close();
    await this.system.close();
  }
}

async function startHeartbeat(config: EngineHostConfig, clock: HostClock): Promise<Worker> {
  const worker = new Worker(new URL("./_heartbeat_worker.ts", import.meta.url), { type: "module" });
  const started = new Promise<void>((resolve, reject) => {
    worker.onmessage = () => resolve();
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new Error(`Cannot start heartbeats: ${event.message}`));
    };
  });
  const { heartbeat, liveness } = config;
  const port = heartbeat ? undefined : liveness?.port;
  worker.postMessage(
    {
      type: "start",
      url: heartbeat?.url ?? liveness?.url,
      port,
      key: config.key,
      namespace: config.namespace,
      hostId: config.hostId,
      engineIds: config.engineIds,
      intervalMs: heartbeat ? heartbeat.intervalMs ?? 250 : undefined,
      clock: clock.buffer,
    } satisfies ToHeartbeatWorker,
    port ? [port] : [],
  );
  try {
    await started;
  } catch (error) {
    worker.terminate();
    throw error;
  }
  return worker;
}
