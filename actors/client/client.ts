/**
 * The client of a cluster: knows its engines and makes views on them.
 *
 * Over 500 lines only by its documentation: what it does besides is split off (`_view_host.ts`,
 * `fetch_result.ts`, `_heartbeat_watch.ts`, `_broadcast_hub.ts`).
 *
 * @module
 */
import {
  ClusterStoppedError,
  EngineDiedError,
  TimeoutError,
  TransportClosedError,
} from "../../errors.ts";
import type { ClusterKey } from "../../transport/envelope.ts";
import type { Transport } from "../../transport/types.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../_liveness.ts";
import { BroadcastView, type BroadcastViewOptions } from "./broadcast_view.ts";
import { LoadBalancedView, type LoadBalancedViewOptions } from "./load_balanced_view.ts";
import type { ViewHost } from "./_view_host.ts";
import type { ActorSystem } from "../core/system.ts";
import type { AsyncResult, GetOptions } from "./async_result.ts";
import { broadcastAddress, callKey, engineMessageId } from "../protocol/addresses.ts";
import type { BroadcastTree, CallRecord, Died, TaskRecord } from "../protocol/messages.ts";
import { DEFAULT_RESULT_RETENTION_MS } from "../protocol/results.ts";
import { DirectView } from "./direct_view.ts";
import { CallPaths } from "./_call_paths.ts";
import { displayClient } from "./_jupyter_display.ts";
import { OutputEcho } from "./_output_echo.ts";
import { BroadcastHub } from "./_broadcast_hub.ts";
import { type HeartbeatWatch, watchHeartbeats } from "./_heartbeat_watch.ts";
import { fetchCall, type FetchedCall, flattenMap } from "./fetch_result.ts";
import { askQueueStatus } from "./_queue_status.ts";
import type { EngineQueueStatus } from "../protocol/queue_status.ts";

/**
 * Options of {@linkcode Client}.
 *
 * @example A Cluster builds them; read what it used
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, type ClientOptions } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * const retention: ClientOptions["resultRetentionMs"] = client.retentionMs;
 * assert.ok(retention! > 0);
 * ```
 */
export interface ClientOptions {
  /** The actor system the client speaks through. */
  system: ActorSystem;
  /** The engines, each with the id of the host that runs it. */
  hosts: ReadonlyMap<number, string>;
  /** The cluster key. */
  key: ClusterKey;
  /** The transport's URL, password included. */
  transportUrl: string;
  /**
   * Write what tasks print to this process's stdout/stderr, each line prefixed `[engine N]`; in
   * Deno's Jupyter kernel, into the cell that made the call.
   */
  streamOutput?: boolean;
  /** Called by `close()` after the client's own system closed (e.g. to close the transport). */
  onClose?: () => Promise<void>;
  /** What `shutdown()` does instead of asking the hosts to stop: the launching cluster's stop. */
  onShutdown?: () => Promise<void>;
  /**
   * How long (ms) the calls this client makes can be looked up by id with
   * {@linkcode Client.getResult}: the lifetime of each call's record in the transport. Set it as
   * the engines keep their results (`ClusterOptions.resultRetention`, `engine.ts
   * --result-retention`). 0 records nothing. Default 3,600,000 (one hour).
   */
  resultRetentionMs?: number;
  /**
   * An engine is taken for dead when no heartbeat of its host came for this long, in ms. Hosts
   * in processes (`engine.ts`) send heartbeats from a thread of their own, which beats whatever
   * the host's event loop does: a task may compute for hours without yielding and its engines
   * stay alive; the beats stop when the process is gone or stopped, or its link is cut. Default
   * 2500: a host is found dead within 3 s (see `ClusterOptions.heartbeatTimeoutMs`).
   */
  heartbeatTimeoutMs?: number;
  /**
   * Called, instead of marking the engines dead, when the heartbeats of host `hostId` say it is
   * dead: the `Cluster` that launched it ends it, marks its engines dead with
   * {@linkcode Client.engineDied} and may restart them.
   */
  onHostDied?: (hostId: string, engineIds: readonly number[], reason: string) => void;
  /**
   * Called while the heartbeats of host `hostId` say that a task of engine `engineId` blocks it
   * `overrunMs` past its call's deadline (the `Cluster`'s restart policy replaces such hosts).
   */
  onOverrun?: (hostId: string, engineId: number, overrunMs: number) => void;
}

/**
 * The `detail` of a client's `"enginedied"` event.
 *
 * @example Hear of an engine's death
 * ```ts
 * import { Cluster, type EngineDiedDetail } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const died: EngineDiedDetail[] = [];
 * client.addEventListener("enginedied", (e) => died.push((e as CustomEvent<EngineDiedDetail>).detail));
 * ```
 */
export interface EngineDiedDetail {
  /** The engine that died. */
  engineId: number;
  /** How it was found dead. */
  reason: string;
}

/**
 * The `detail` of an `"enginerestarted"` event.
 *
 * @example Hear of an engine's replacement
 * ```ts
 * import { Cluster, type EngineRestartedDetail } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, restart: true, progress: false });
 * const client = await cluster.startAndConnect();
 * const restarted: number[] = [];
 * client.addEventListener("enginerestarted", (e) => {
 *   restarted.push((e as CustomEvent<EngineRestartedDetail>).detail.engineId);
 * });
 * ```
 */
export interface EngineRestartedDetail {
  /**
   * The engine that runs again: on a new host, with a fresh namespace, or, when `readmitted`, the
   * same engine on the same host.
   */
  engineId: number;
  /**
   * Set when the engine never died: its host was taken for dead because no heartbeat came (a cut
   * link, a stopped process), and its heartbeats resumed. It keeps its namespace; the calls
   * that failed with `EngineDiedError` meanwhile may have run on it all the same; trees wired
   * through it (`wireTree`) ping it at their next reduction and take it back.
   */
  readmitted?: boolean;
}

let closeClient: (client: Client, cluster: string) => Promise<void>;

/**
 * A connection to a cluster's engines (IPython Parallel's `Client`). Dispatches an
 * `"enginedied"` `CustomEvent` (detail {@linkcode EngineDiedDetail}) when an engine dies, and an
 * `"enginerestarted"` one (detail {@linkcode EngineRestartedDetail}) when a replacement of a dead
 * engine is running.
 *
 * @example Run a function on every engine, then on one
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * assert.deepEqual(client.ids, [0, 1]);
 * assert.deepEqual(await client.view().apply((x: number) => x * 2, 21), [42, 42]);
 * assert.equal(await client.view(1).apply(() => 7), 7);
 * ```
 */
export class Client extends EventTarget {
  /** The actor system the client speaks through. */
  readonly system: ActorSystem;
  readonly #ids: number[];
  readonly #hosts: Map<number, string>;
  readonly #dead = new Map<number, EngineDiedError>();
  readonly #deadHosts = new Set<string>();
  /** Each engine's current tree wiring (`wireTree`): its id and engines. */
  readonly #trees = new Map<number, { wiring: string; ids: readonly number[] }>();
  readonly #onClose?: () => Promise<void>;
  readonly #onShutdown?: () => Promise<void>;
  readonly #echo: OutputEcho;
  readonly #retention: number;
  /** Aborted by `close()`: ends the waits for results not stored yet. */
  readonly #closing = new AbortController();
  /** Settles once the last call still being prepared (storing blobs) was dispatched. */
  #dispatchTail: Promise<void> | undefined;
  readonly #paths = new CallPaths();
  /** The client's broadcast nodes of ranges spanning hosts. */
  readonly #hub: BroadcastHub;
  readonly #heartbeats: HeartbeatWatch;
  #closed = false;
  /** The calls made through this client's views that not every engine answered yet. */
  readonly #outstanding = new Set<AsyncResult<unknown>>();
  /** Set when the client was closed by the stop of its cluster: that cluster's name. */
  #stoppedCluster: string | undefined;
  /** What the client's views use of it. */
  readonly #host: ViewHost;

  static {
    closeClient = (client, cluster) => client.#closeForStop(cluster);
  }

  /** Makes a client speaking through `options.system`; `Cluster` makes clients for you. */
  constructor(options: ClientOptions) {
    super();
    this.system = options.system;
    this.#echo = new OutputEcho(options.streamOutput ?? false);
    this.#hosts = new Map(options.hosts);
    this.#ids = [...this.#hosts.keys()].sort((a, b) => a - b);
    this.#hub = new BroadcastHub(this.system);
    this.#onClose = options.onClose;
    this.#onShutdown = options.onShutdown;
    this.#retention = options.resultRetentionMs ?? DEFAULT_RESULT_RETENTION_MS;
    if (!Number.isInteger(this.#retention) || this.#retention < 0) {
      throw new RangeError(
        `Cannot make client: resultRetentionMs must be a whole number ≥ 0, got ${this.#retention}`,
      );
    }
    this.#host = this.#viewHost();
    const { onHostDied, onOverrun } = options;
    this.#heartbeats = watchHeartbeats(this.system, {
      timeoutMs: options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
      ownedBy: (hostId, engineIds) => engineIds.filter((id) => this.#hosts.get(id) === hostId),
      onHostDied: onHostDied ??
        ((_, engineIds, reason) => engineIds.forEach((id) => this.engineDied(id, reason))),
      // A Cluster that launched its hosts ends those it finds dead; hosts started by hand whose
      // beats resume are re-admitted.
      ...(onHostDied ? {} : {
        onHostBack: (hostId: string, engineIds: number[]) => {
          this.#readmit(hostId, engineIds).catch(() => {});
        },
      }),
      onOverrun,
    });
  }

  /** The plumbing the client's views go through. */
  #viewHost(): ViewHost {
    // deno-lint-ignore no-this-alias
    const client = this;
    return {
      system: this.system,
      namespace: this.system.namespace,
      transport: this.system.transport,
      events: this,
      get hubId() {
        return client.hubId;
      },
      get retentionMs() {
        return client.#retention;
      },
      get preparing() {
        return client.#preparing;
      },
      paths: this.#paths,
      hostOf: (engineId) => this.hostOf(engineId),
      deadEngine: (engineId) => this.deadEngine(engineId),
      broadcastHost: (nodes) => this.broadcastHost(nodes),
      echoOutput: () => this.#echo.forCall(),
      dispatchInOrder: (prepared, dispatch) => this.#dispatchInOrder(prepared, dispatch),
      recordCall: (...call) => this.#recordCall(...call),
      abortCall: (id, engineIds) => this.#abortCall(id, engineIds),
      treeWired: (wiring, ids) => this.#treeWired(wiring, ids),
      track: (result) => this.#track(result),
      closedError: (action) => this.#closedError(action),
    };
  }

  /** The notebook's rich display of the client (Deno's Jupyter kernel calls it). */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return displayClient(this);
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
   * A view on one engine (`rc[2]`): its calls resolve to that engine's bare value, e.g.
   * `await client.view(2).pull("a")` is `3453`.
   */
  view(target: number): DirectView<"one">;
  /**
   * A view on some engines: all of them by default (`rc[:]`), or a list of ids (even of one),
   * whose order is the order results come back in; its calls resolve to lists.
   */
  view(targets?: readonly number[]): DirectView;
  /** A view on one engine (a number) or on a list of them. */
  view(targets?: number | readonly number[]): DirectView<"one"> | DirectView;
  view(targets?: number | readonly number[]): DirectView<"one"> | DirectView {
    const ids = this.#resolveTargets(targets);
    return typeof targets === "number"
      ? new DirectView<"one">(this.#host, ids, "one")
      : new DirectView<"list">(this.#host, ids);
  }

  /**
   * A broadcast view on one engine: its calls resolve to that engine's bare value, as
   * {@linkcode view} of one id does.
   */
  broadcastView(target: number, options?: BroadcastViewOptions): BroadcastView<"one">;
  /**
   * A view whose calls go out as one message to a tree of broadcast actors (at most `fanout`
   * children each) and come back as one answer, in target order (all engines by default, or a
   * list of ids).
   */
  broadcastView(targets?: readonly number[], options?: BroadcastViewOptions): BroadcastView;
  /** A broadcast view on one engine (a number) or on a list of them. */
  broadcastView(
    targets?: number | readonly number[],
    options?: BroadcastViewOptions,
  ): BroadcastView<"one"> | BroadcastView;
  broadcastView(
    targets?: number | readonly number[],
    options: BroadcastViewOptions = {},
  ): BroadcastView<"one"> | BroadcastView {
    const ids = this.#resolveTargets(targets);
    return typeof targets === "number"
      ? new BroadcastView<"one">(this.#host, ids, options, "one")
      : new BroadcastView<"list">(this.#host, ids, options);
  }

  /**
   * A view whose tasks run on whichever of `targets` (default: every engine) is free first:
   * IPython Parallel's `load_balanced_view()`. Its `map` and `apply` answer per task.
   */
  loadBalancedView(
    targets?: number | readonly number[],
    options: LoadBalancedViewOptions = {},
  ): LoadBalancedView {
    return new LoadBalancedView(
      this.#host,
      this.#resolveTargets(targets),
      targets === undefined,
      options,
    );
  }

  /** How long (ms) the answers of this client's calls are kept for {@linkcode getResult}. */
  get retentionMs(): number {
    return this.#retention;
  }

  /** The id of the host that runs engine `engineId`. */
  hostOf(engineId: number): string {
    const host = this.#hosts.get(engineId);
    if (host === undefined) throw new RangeError(`Cannot find engine ${engineId}: no such engine`);
    return host;
  }

  /** The id of the host of the broadcast nodes whose engines span several hosts. */
  get hubId(): string {
    return this.#hub.hostId;
  }

  /**
   * Starts this client's broadcast nodes `nodes` (of ranges spanning hosts) where they do not run
   * yet; resolves to their host id.
   */
  broadcastHost(nodes: readonly number[] = []): Promise<string> {
    if (this.#closed) return Promise.reject(this.#closedError("broadcast"));
    this.#hub.start(nodes);
    return Promise.resolve(this.#hub.hostId);
  }

  /** Checks and normalises a targets argument. */
  #resolveTargets(targets?: number | readonly number[]): number[] {
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

  /**
   * Whether a call is still being prepared: a new call must then be dispatched after
   * it, with {@linkcode dispatchInOrder}.
   */
  get #preparing(): boolean {
    return this.#dispatchTail !== undefined;
  }

  /**
   * Calls `dispatch` with what `prepared` resolves to, once every call made before
   * was dispatched: the calls of one client leave in the order they were made, however long each
   * took to prepare, so that each engine queues them in that order.
   */
  #dispatchInOrder<C, R>(prepared: Promise<C>, dispatch: (content: C) => R): Promise<R> {
    const run = (this.#dispatchTail ?? Promise.resolve()).then(() => prepared).then(dispatch);
    const tail = run.then(() => {}, () => {});
    this.#dispatchTail = tail;
    tail.then(() => {
      if (this.#dispatchTail === tail) this.#dispatchTail = undefined;
    });
    return run;
  }

  /**
   * Records call `id` (its targets, in order) in the transport, for
   * {@linkcode getResult}. Not awaited: the record is written before the call's messages.
   */
  #recordCall(
    id: string,
    targets: readonly number[],
    type: string,
    single = false,
    tree?: BroadcastTree,
    one = false,
    tasks?: TaskRecord,
  ): void {
    if (this.#retention === 0) return;
    const record: CallRecord = {
      targets: [...targets],
      type,
      retentionMs: this.#retention,
      ...(single ? { single: true } : {}),
      ...(tree ? { tree } : {}),
      ...(one ? { one: true } : {}),
      ...(tasks ? { tasks } : {}),
    };
    this.system.store(callKey(this.namespace, id), id, "call", record, this.#retention)
      .catch(() => {/* the call's own messages fail the same way, and say so */});
  }

  /**
   * Tells engines `engineIds` to skip their part of call `id` if they have not started
   * it: an `abort` control message straight to each engine's inbox.
   */
  #abortCall(id: string, engineIds: readonly number[]): void {
    if (engineIds.length === 0 || this.#closed) return;
    this.system.sendMany(engineIds.map((engineId) => ({
      to: `engine.${engineId}`,
      type: "abort",
      content: { id: engineMessageId(id, engineId) },
    }))).catch(() => {/* the engines are unreachable: nothing is running there either */});
  }

  /**
   * The values of call `id` (an `AsyncResult.id`, from this client or from any other client of
   * the cluster, e.g. one that ran before a restart), in its target order: the same as
   * `ar.get(options)` on the call's `AsyncResult`. Works while the results are retained
   * (`ClusterOptions.resultRetention`, default one hour).
   *
   * Rejects with `ResultNotFoundError` when no call has that id, or its results expired; else as
   * `ar.get(options)` does (with `returnExceptions`, the errors come in place of the values). For
   * the output and timings, use {@linkcode fetchResult}.
   */
  async getResult(id: string, options: GetOptions = {}): Promise<unknown> {
    const { type, result, tasks, engineIds } = await this.fetchResult(id);
    if (tasks) {
      const values = await tasks.get(options);
      return type === "apply" ? values[0] : values;
    }
    if (type === "map") {
      return flattenMap(
        await result.reshaped("list").get({ ...options, returnExceptions: true }),
        engineIds,
        options,
      );
    }
    return await result.get(options);
  }

  /**
   * Finds call `id` (an `AsyncResult.id`) in the transport: its targets, and an `AsyncResult` on
   * its stored results, with their output and timings (IPython Parallel's hub database). Works
   * for calls of any view, made by any client of the cluster, while their results are retained.
   * The `AsyncResult` is wrapped in an object: a promise would resolve to its values.
   *
   * Rejects with `ResultNotFoundError` when no call has that id (or its retention ended), with
   * `InvalidMessageError` when what is stored under it is not signed with the cluster key.
   */
  async fetchResult(id: string): Promise<FetchedCall> {
    if (typeof id !== "string" || id === "") {
      throw new TypeError(`Cannot get result: the id must be a non-empty string, got ${id}`);
    }
    if (this.#closed) throw this.#closedError("get result");
    // A call of this client may still be preparing: its record is written when it is sent.
    await this.#dispatchTail;
    return await fetchCall(this.#host, id, this.#closing.signal);
  }

  /** The error of engine `id` if it is known to be dead. */
  deadEngine(id: number): EngineDiedError | undefined {
    return this.#dead.get(id);
  }

  /**
   * Marks engine `id` and its host dead: every pending and later call on it fails with
   * `EngineDiedError` (until {@linkcode engineRestarted}), and so do the broadcasts whose nodes ran
   * on that host; the client dispatches `"enginedied"`.
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
    this.#hub.died(died);
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

  /** Records that `wireTree` wired engines `ids` into tree `wiring`. */
  #treeWired(wiring: string, ids: readonly number[]): void {
    for (const id of ids) this.#trees.set(id, { wiring, ids: [...ids] });
  }

  /**
   * Marks dead engine `id` alive again: a replacement with the same id runs, on host `hostId` (the
   * `Cluster` calls this once it restarted the engine). Later calls go to it; calls that were pending when it died
   * stay failed. Dispatches `"enginerestarted"`. Resolves once the broadcast actors know too.
   */
  async engineRestarted(id: number, hostId?: string): Promise<void> {
    if (!this.#dead.delete(id)) return;
    if (hostId !== undefined) this.#hosts.set(id, hostId);
    await this.#tellRestarted({ engineIds: [id] });
    this.dispatchEvent(
      new CustomEvent<EngineRestartedDetail>("enginerestarted", { detail: { engineId: id } }),
    );
  }

  /**
   * Host `hostId`, taken for dead by its silence, beats again: its engines `engineIds` that were
   * marked dead are alive, as they were. Dispatches `"enginerestarted"` with `readmitted` for each.
   */
  async #readmit(hostId: string, engineIds: readonly number[]): Promise<void> {
    const back = engineIds.filter((id) => this.#hosts.get(id) === hostId && this.#dead.delete(id));
    if (back.length === 0 || this.#closed) return;
    this.#deadHosts.delete(hostId);
    await this.#tellRestarted({ engineIds: back, hostIds: [hostId] });
    for (const engineId of back) {
      this.dispatchEvent(
        new CustomEvent<EngineRestartedDetail>("enginerestarted", {
          detail: { engineId, readmitted: true },
        }),
      );
    }
  }

  /** Tells every live host's broadcast nodes, and the hub's, that engines (and hosts) are back. */
  async #tellRestarted(restarted: { engineIds: number[]; hostIds?: string[] }): Promise<void> {
    const told = [...new Set(this.#hosts.values())].filter((h) => !this.#deadHosts.has(h)).map(
      (h) => this.system.send(broadcastAddress(h, 0), "restarted", restarted).catch(() => {}),
    );
    this.#hub.restarted(restarted);
    await Promise.all(told);
  }

  /** Counts `result` among the outstanding calls until every engine answered. */
  #track(result: AsyncResult<unknown>): AsyncResult<unknown> {
    if (result.ready()) return result;
    this.#outstanding.add(result);
    result.wait().then(() => this.#outstanding.delete(result));
    return result;
  }

  /** How many calls made through this client's views are still waiting for an engine. */
  get outstanding(): number {
    return this.#outstanding.size;
  }

  /**
   * Waits until every call made through this client's views so far has been answered by all
   * its engines, or `timeout` ms passed (IPython Parallel's `Client.wait()`). Resolves to whether
   * they all were. Calls that fail count as answered.
   *
   * @example Wait for everything sent so far
   * ```ts ignore
   * client.view().apply(step, 1);
   * client.broadcastView().execute("await step(2)");
   * const done = await client.wait(10_000); // true once both are answered
   * ```
   */
  async wait(timeout = Infinity): Promise<boolean> {
    const pending = [...this.#outstanding];
    const answered = await Promise.all(pending.map((r) => r.wait(timeout)));
    return answered.every(Boolean);
  }

  /**
   * Aborts every call made through this client's views that is still outstanding (IPython
   * Parallel's `Client.abort()`): engines that have not started one skip it, and their part
   * fails with `TaskAbortedError`; a task already running finishes. Returns how many calls were
   * aborted.
   */
  abort(): number {
    const pending = [...this.#outstanding];
    for (const result of pending) result.abort();
    return pending.length;
  }

  /**
   * Each engine's tasks, asked of the engines (IPython Parallel's `Client.queue_status()`): how
   * many it has read and not started, how many it is running, how many it finished. All engines
   * by default, or `targets`. Rejects with `TimeoutError` naming the engines that did not answer
   * within `timeout` ms (default 10,000), and with `ClusterStoppedError` once the cluster stopped.
   *
   * @example
   * ```ts ignore
   * const status = await client.queueStatus();
   * console.log(status[0]); // { queued: 2, running: 1, completed: 17 }
   * ```
   */
  async queueStatus(
    options: { timeout?: number; targets?: number | readonly number[] } = {},
  ): Promise<Record<number, EngineQueueStatus>> {
    const closed = this.#closedError("get queue status");
    if (closed) throw closed;
    return await askQueueStatus(
      this.system,
      this.#resolveTargets(options.targets),
      options.timeout,
    );
  }

  /**
   * Stops the cluster's engines and closes this client (IPython Parallel's `Client.shutdown()`).
   * For a client of a `Cluster` this process started, that is `cluster.stop()`. For one made by
   * `Cluster.connect`, each engine host (an `engine.ts` process elsewhere) is asked to stop, and
   * stops its engines and ends. Later calls fail with `ClusterStoppedError`. Rejects with
   * `TimeoutError` naming the engines whose host did not answer within `timeout` ms (default
   * 10,000); the client is closed all the same.
   *
   * @example
   * ```ts ignore
   * const client = await Cluster.connect({ transport, cluster: "jobs", keyFile: "jobs.key" });
   * await client.shutdown(); // the engine.ts processes of "jobs" end
   * ```
   */
  async shutdown(options: { timeout?: number } = {}): Promise<void> {
    const closed = this.#closedError("shut down");
    if (closed) throw closed;
    if (this.#onShutdown) return await this.#onShutdown();
    const timeout = options.timeout ?? 10_000;
    const hosts = [...new Set(this.#hosts.values())].filter((h) => !this.#deadHosts.has(h));
    const silent: number[] = [];
    await Promise.all(hosts.map(async (hostId) => {
      try {
        await this.system.ask(`host.${hostId}`, "stop", {}, { timeout });
      } catch (error) {
        if (!(error instanceof TimeoutError)) throw error;
        silent.push(...this.#ids.filter((id) => this.#hosts.get(id) === hostId));
      }
    })).finally(() => this.#closeForStop(this.namespace));
    if (silent.length > 0) {
      silent.sort((a, b) => a - b);
      throw new TimeoutError(
        `Cannot shut down engines ${silent.join(", ")}: their host did not answer within ` +
          `${timeout} ms`,
        timeout,
        silent,
      );
    }
  }

  /** Whether the client is closed: by {@linkcode close}, or by the stop of its cluster. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Why `action` cannot be done, when the client is closed: `ClusterStoppedError` when
   * its cluster was stopped, else `TransportClosedError`.
   */
  #closedError(action: string): TransportClosedError | undefined {
    if (!this.#closed) return undefined;
    return this.#stoppedCluster !== undefined
      ? new ClusterStoppedError(action, this.#stoppedCluster)
      : new TransportClosedError(`Cannot ${action}: the client is closed`);
  }

  /**
   * Closes the client because its cluster `cluster` is stopping: calls made later, and
   * those still pending, fail with `ClusterStoppedError`.
   */
  async #closeForStop(cluster: string): Promise<void> {
    if (!this.#closed) this.#stoppedCluster = cluster;
    await this.close();
  }

  /**
   * Closes the client's connections. Calls made later fail with `TransportClosedError`
   * (`ClusterStoppedError` once its cluster was stopped).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await this.#heartbeats.close();
    await this.#hub.stop();
    await this.system.close(this.#closedError("get answer"));
    await this.#onClose?.();
  }
}

/**
 * Closes `client` because its cluster `cluster` is stopping: calls made later, and those still
 * pending, fail with `ClusterStoppedError`. For `Cluster.stop()`.
 */
export function closeForStop(client: Client, cluster: string): Promise<void> {
  return closeClient(client, cluster);
}
