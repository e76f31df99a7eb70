/**
 * An engine host: one event loop (a Worker or a process) running many engine actors on one
 * actor system, so they share one set of transport connections and one blocking reader, and the
 * broadcast nodes of the broadcast trees that reach them.
 *
 * @module
 */
import type { Transport } from "../../transport/types.ts";
import { defineActor } from "../core/actor.ts";
import { BroadcastNodes } from "../broadcast_nodes.ts";
import { dispatcherActor } from "./dispatcher.ts";
import { type Engine, engineActor } from "./engine_actor.ts";
import { ActorSystem } from "../core/system.ts";
import { spawnTaskReader } from "./task_reader.ts";
import { HostClock, setHostClock } from "../_liveness.ts";
import { TaskRealm } from "./_task_realm.ts";
import { checkRace, checkUnclaimed } from "./_host_claims.ts";
import {
  aliveAddress,
  broadcastAddress,
  dispatcherAddress,
  REGISTRY,
} from "../protocol/addresses.ts";
import type { ToHeartbeatWorker } from "../protocol/worker_messages.ts";
import type {
  EngineHostConfig,
  Join,
  Registration,
  Unregistration,
} from "../protocol/host_messages.ts";

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
    const registryRead = config.refuseTaken
      ? await withChecker(
        transport,
        config,
        (checker) => checkUnclaimed(checker, config.hostId, config.engineIds),
      )
      : undefined;
    const system = new ActorSystem({
      transport,
      key: config.key,
      namespace: config.namespace,
      id: config.hostId,
      replayWindowMs: config.replayWindowMs,
      maxMessageBytes: config.maxMessageBytes,
      // A broadcast's hops between this host's nodes and engines, and tree reductions between
      // its engines, need not cross the transport.
      localDelivery: true,
    });
    let requestStop!: () => void;
    const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
    /** What holds the cluster's size: the engines, and the task realm of a sandboxed host. */
    const sized: Pick<Engine, "resize">[] = [];
    const nodes = new BroadcastNodes(config.hostId);
    let size = config.size;
    /** Broadcast nodes are named by target positions: one per engine of the cluster. */
    let spawnedNodes = 0;
    const spawnNodes = () => {
      for (; spawnedNodes < Math.max(1, size); spawnedNodes++) {
        system.spawn(broadcastAddress(config.hostId, spawnedNodes), nodes.actor(spawnedNodes));
      }
    };
    const join = (content: Join) => {
      if (!isRecord(content) || !Number.isInteger(content.size) || content.size < 1) {
        throw new TypeError("Cannot join: content must be { size } with a whole size ≥ 1");
      }
      if (content.size !== size && config.fixedSize) {
        throw new RangeError(
          `host "${config.hostId}" (engines ${config.engineIds.join(", ")}) was started with ` +
            `--size ${size}, but the cluster has ${content.size} engines: start it with ` +
            `--size ${content.size}, or without --size`,
        );
      }
      if (content.size !== size) {
        size = content.size;
        for (const holder of sized) holder.resize(size);
        spawnNodes();
      }
      return { hostId: config.hostId, size };
    };
    system.spawn(
      `host.${config.hostId}`,
      defineActor({ handlers: {}, control: { stop: () => requestStop(), join } }),
    );
    const clock = new HostClock(config.clock);
    const realm = config.taskPermissions
      ? await TaskRealm.start({
        permissions: config.taskPermissions,
        size,
        clock: clock.buffer,
        transport,
        hostId: config.hostId,
      }).catch(async (error) => {
        await system.close();
        throw error;
      })
      : undefined;
    if (realm) sized.push(realm);
    for (const id of config.engineIds) {
      const engine = engineActor({
        realm,
        id,
        size,
        transport,
        resultRetentionMs: config.resultRetentionMs,
      });
      system.spawn(`engine.${id}`, engine.definition);
      sized.push(engine);
    }
    system.spawn(dispatcherAddress(config.hostId), dispatcherActor(config.hostId));
    spawnTaskReader(system, config.hostId, config.engineIds);
    spawnNodes();
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
    const run = crypto.randomUUID();
    await system.sendMany(config.engineIds.map((id) => ({
      to: REGISTRY,
      type: "register",
      content: {
        id,
        hostId: config.hostId,
        pid: Deno.pid,
        at: Date.now(),
        run,
      } satisfies Registration,
    })));
    const host = new EngineHost(system, config, stopRequested, stopTicks, heartbeat, realm);
    if (registryRead !== undefined) {
      const lost = await withChecker(
        transport,
        config,
        (checker) => checkRace(checker, config.hostId, config.engineIds, run, registryRead),
      ).catch(async (error) => {
        await host.close();
        throw error;
      });
      if (lost) {
        // The registry's last word goes back to the host that registered first.
        await system.sendMany(
          lost.messages.map(({ type, content }) => ({ to: REGISTRY, type, content })),
        )
          .catch(() => {});
        await host.close({ unregister: false });
        throw lost.refusal;
      }
    }
    return host;
  }

  /**
   * Stops every engine of this host (and its heartbeats), and says so in the registry (an
   * `unregister` per engine), so that a client connecting later does not take the engines for
   * this host's (unless `unregister` is `false`: a host that lost the race for its ids leaves
   * the registry to the winner). Does not close the transport.
   */
  async close(options: { unregister?: boolean } = {}): Promise<void> {
    this.#stopTicks();
    setHostClock(undefined);
    if (options.unregister ?? true) {
      await this.system.sendMany(this.#engineIds.map((id) => ({
        to: REGISTRY,
        type: "unregister",
        content: { id, hostId: this.#hostId } satisfies Unregistration,
      }))).catch(() => {}); // the transport is away: the registry keeps the last word it had
    }
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

/**
 * Runs `check` with an actor system of its own, which reads and never writes: a host refused
 * must not touch the streams of its own system's id, which may be a live host's.
 */
async function withChecker<T>(
  transport: Transport,
  config: EngineHostConfig,
  check: (checker: ActorSystem) => Promise<T>,
): Promise<T> {
  const checker = new ActorSystem({
    transport,
    key: config.key,
    namespace: config.namespace,
    id: `${config.hostId}.check-${crypto.randomUUID().slice(0, 8)}`,
    replayWindowMs: config.replayWindowMs,
    maxMessageBytes: config.maxMessageBytes,
  });
  try {
    return await check(checker);
  } finally {
    await checker.close();
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
