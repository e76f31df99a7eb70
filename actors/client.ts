/**
 * The client of a cluster: knows its engines and makes views on them.
 *
 * @module
 */
import {
  ClusterStoppedError,
  CompositeError,
  EngineDiedError,
  InvalidMessageError,
  RemoteError,
  ResultNotFoundError,
  TaskError,
  TransportClosedError,
} from "../errors.ts";
import type { ClusterKey } from "../transport/envelope.ts";
import { MemoryTransport } from "../transport/memory.ts";
import type { Transport } from "../transport/types.ts";
import type { FromBroadcastWorker, ToBroadcastWorker } from "./_broadcast_worker.ts";
import {
  broadcastAddress,
  type BroadcastPart,
  type Died,
  type KeptPiece,
  keptPieces,
} from "./broadcast.ts";
import { type Heartbeat, HEARTBEATS } from "./engine_host.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS, LivenessWatch } from "./_liveness.ts";
import { BroadcastView, type BroadcastViewOptions, toOutcome } from "./broadcast_view.ts";
import { LoadBalancedView, type LoadBalancedViewOptions } from "./load_balanced_view.ts";
import type { AsyncMapResult } from "./async_map_result.ts";
import { storedTasks, type TaskRecord } from "./_stored_tasks.ts";
import type { ActorSystem, Reply } from "./system.ts";
import { displayClient } from "./_jupyter_display.ts";
import { type BroadcastTree, DirectView, firstOf, mapResult } from "./view.ts";
import { AsyncResult, type GetOptions, type Outcome, type Shape } from "./async_result.ts";
import {
  DEFAULT_RESULT_RETENTION_MS,
  engineMessageId,
  type EngineResult,
  type MapItemResult,
  resultKey,
} from "./engine.ts";

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

/** How long a heartbeat read that does not wait may take before it says the server is away, ms. */
const OUTAGE_READ_MS = 1500;

/** The `detail` of a client's `"enginedied"` event. */
export interface EngineDiedDetail {
  /** The engine that died. */
  engineId: number;
  /** How it was found dead. */
  reason: string;
}

/** A call found by its id with {@linkcode Client.fetchResult}. */
export interface FetchedCall {
  /** The call's id (its `AsyncResult.id`). */
  readonly id: string;
  /** What the call asked of the engines: `"apply"`, `"execute"`, `"push"`, `"pull"`, `"clear"`. */
  readonly type: string;
  /** The engines it went to, in target order. */
  readonly engineIds: readonly number[];
  /** When it was sent (ms since the epoch, the sending client's clock). */
  readonly submitted: number;
  /**
   * Its results, as the client that made the call had them: values, errors, output and timings.
   * An engine whose result is not stored yet is waited for (polled) until it is, until the call's
   * retention ends (then `ResultNotFoundError`), or until this client closes.
   */
  readonly result: AsyncResult<unknown, Shape>;
  /**
   * For a load-balanced call (`type` `"map"` or `"apply"` of a `LoadBalancedView`): its per-item
   * results, each found where the engine that ran its task kept it (`result` then has no
   * engines; `engineIds` are the view's).
   */
  readonly tasks?: AsyncMapResult<unknown>;
}

/**
 * The values of a `DirectView`/`BroadcastView` `map` from its engines' answers (each a list of
 * its partition's item outcomes), as one flat list; errors as `get(options)` gives them.
 */
function flattenMap(
  perEngine: unknown[],
  engineIds: readonly number[],
  options: GetOptions,
): unknown[] {
  const values: unknown[] = [];
  const errors: Error[] = [];
  perEngine.forEach((list, e) => {
    if (!Array.isArray(list)) {
      errors.push(list as Error);
      values.push(list);
      return;
    }
    for (const item of list as MapItemResult[]) {
      if (item && "error" in item) {
        const engineError = new TaskError(values.length, engineIds[e], item.error);
        errors.push(engineError);
        values.push(engineError);
      } else values.push(item?.value);
    }
  });
  if (options.returnExceptions || errors.length === 0) return values;
  if (errors.length === 1) throw errors[0];
  throw new CompositeError(errors);
}

/** The transport key of the record of call `id`. */
function callKey(namespace: string, id: string): string {
  return `${namespace}:call:${id}`;
}

/** What the record of a call holds. */
interface CallRecord {
  /** The engines, in target order. */
  targets: number[];
  /** The engine message type. */
  type: string;
  /** How long the record is kept (ms). */
  retentionMs: number;
  /** A `pull` of one name: each engine's value is the first item of the list it answered. */
  single?: true;
  /** For a `BroadcastView` call: its tree, which says where its answer is kept. */
  tree?: BroadcastTree;
  /** A call of a view on one engine id: its values are that engine's bare value. */
  one?: true;
  /** A load-balanced call: its tasks, whose answers are kept under their own message ids. */
  tasks?: TaskRecord;
}

/** The longest pause between two looks for a result that is not stored yet. */
const POLL_MAX_MS = 1000;

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
  readonly #hosts: Map<number, string>;
  readonly #dead = new Map<number, EngineDiedError>();
  readonly #deadHosts = new Set<string>();
  /** Each engine's current tree wiring (`wireTree`): its id and engines. */
  readonly #trees = new Map<number, { wiring: string; ids: readonly number[] }>();
  readonly #onClose?: () => Promise<void>;
  readonly #key: ClusterKey;
  readonly #transportUrl: string;
  readonly #streamOutput: boolean;
  readonly #retention: number;
  /** Aborted by `close()`: ends the waits for results not stored yet. */
  readonly #closing = new AbortController();
  /** Settles once the last call still being prepared (storing blobs) was dispatched. */
  #dispatchTail: Promise<void> | undefined;
  #broadcast: { worker: Worker; ready: Promise<string>; stopped: Promise<void> } | undefined;
  #heartbeats: ReturnType<typeof setInterval> | undefined;
  #poll: Promise<void> | undefined;
  #closed = false;
  /** The calls made through this client's views that not every engine answered yet. */
  readonly #outstanding = new Set<AsyncResult<unknown>>();
  /** Set when the client was closed by the stop of its cluster: that cluster's name. */
  #stoppedCluster: string | undefined;

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
    this.#retention = options.resultRetentionMs ?? DEFAULT_RESULT_RETENTION_MS;
    if (!Number.isInteger(this.#retention) || this.#retention < 0) {
      throw new RangeError(
        `Cannot make client: resultRetentionMs must be a whole number ≥ 0, got ${this.#retention}`,
      );
    }
    this.#watchHeartbeats(
      options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
      options.onHostDied,
      options.onOverrun,
    );
  }

  /**
   * Polls the heartbeat stream and declares dead the engines of hosts not heard from for
   * `timeoutMs` (see {@linkcode LivenessWatch}). A beat counts only for the engines its host is
   * the current host of (the one that registered them last): the beats of a host that was
   * replaced, or stopped, say nothing of the engines that another host runs now.
   */
  #watchHeartbeats(
    timeoutMs: number,
    onHostDied: ClientOptions["onHostDied"],
    onOverrun: ClientOptions["onOverrun"],
  ): void {
    if (!(timeoutMs > 0)) {
      throw new RangeError(
        `Cannot make client: heartbeatTimeoutMs must be positive, got ${timeoutMs}`,
      );
    }
    const { system } = this;
    const stream = system.inboxOf(HEARTBEATS);
    const group = `beats.${system.id}`;
    const lastSeq = new Map<string, number>();
    const ownedBy = (hostId: string, engineIds: readonly number[]) =>
      engineIds.filter((id) => this.#hosts.get(id) === hostId);
    const watch = new LivenessWatch(timeoutMs, (hostId, engineIds, reason) => {
      const owned = ownedBy(hostId, engineIds);
      if (owned.length === 0) return;
      if (onHostDied) onHostDied(hostId, owned, reason);
      else for (const id of owned) this.engineDied(id, reason);
    });
    const poll = async () => {
      let entries;
      const begun = performance.now();
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
      // A read that does not wait came back empty after waiting for an absent server (the Redis
      // transport gives up on it after 2 s): the hosts could not be heard meanwhile either. A read
      // merely slowed by load still counts, or a stopped host could hide behind the load.
      if (performance.now() - begun > OUTAGE_READ_MS) watch.pause();
      else watch.advance();
      for (const entry of entries) {
        let beat: Heartbeat;
        try {
          const envelope = system.verify(entry.data ?? new Uint8Array());
          if (system.replayOf(entry, envelope) !== undefined) continue;
          beat = envelope.content as Heartbeat;
        } catch {
          continue; // not a heartbeat of this cluster
        }
        if (typeof beat?.hostId !== "string" || !Array.isArray(beat.engineIds)) continue;
        // A copy of an earlier beat (appended again, with redis-cli say) is not a sign of life.
        if (!(typeof beat.seq === "number" && beat.seq > (lastSeq.get(beat.hostId) ?? 0))) {
          continue;
        }
        lastSeq.set(beat.hostId, beat.seq);
        const owned = ownedBy(beat.hostId, beat.engineIds);
        if (owned.length === 0) continue;
        watch.seen(beat.hostId, owned);
        const { overrun } = beat;
        if (onOverrun && overrun && owned.includes(overrun.engineId)) {
          onOverrun(beat.hostId, overrun.engineId, Number(overrun.overrunMs));
        }
      }
      watch.check();
    };
    this.#heartbeats = setInterval(() => {
      this.#poll ??= poll().finally(() => (this.#poll = undefined));
    }, watch.periodMs);
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
    const ids = this.resolveTargets(targets);
    return typeof targets === "number"
      ? new DirectView<"one">(this, ids, "one")
      : new DirectView<"list">(this, ids);
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
    const ids = this.resolveTargets(targets);
    return typeof targets === "number"
      ? new BroadcastView<"one">(this, ids, options, "one")
      : new BroadcastView<"list">(this, ids, options);
  }

  /**
   * A view whose tasks run on whichever of `targets` (default: every engine) is free first:
   * IPython Parallel's `load_balanced_view()`. Its `map` and `apply` answer per task.
   */
  loadBalancedView(
    targets?: number | readonly number[],
    options: LoadBalancedViewOptions = {},
  ): LoadBalancedView {
    return new LoadBalancedView(this, this.resolveTargets(targets), targets === undefined, options);
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

  /** @internal The id of the host of the broadcast nodes whose engines span several hosts. */
  get hubId(): string {
    return `b-${this.system.id}`;
  }

  /**
   * @internal Starts, once, the Worker that runs this client's broadcast actors; resolves to its
   * host id.
   */
  broadcastHost(): Promise<string> {
    if (this.#closed) return Promise.reject(this.closedError("broadcast"));
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

  /**
   * @internal Whether a call is still being prepared: a new call must then be dispatched after
   * it, with {@linkcode dispatchInOrder}.
   */
  get preparing(): boolean {
    return this.#dispatchTail !== undefined;
  }

  /**
   * @internal Calls `dispatch` with what `prepared` resolves to, once every call made before
   * was dispatched: the calls of one client leave in the order they were made, however long each
   * took to prepare, so that each engine queues them in that order.
   */
  dispatchInOrder<C, R>(prepared: Promise<C>, dispatch: (content: C) => R): Promise<R> {
    const run = (this.#dispatchTail ?? Promise.resolve()).then(() => prepared).then(dispatch);
    const tail = run.then(() => {}, () => {});
    this.#dispatchTail = tail;
    tail.then(() => {
      if (this.#dispatchTail === tail) this.#dispatchTail = undefined;
    });
    return run;
  }

  /**
   * @internal Records call `id` (its targets, in order) in the transport, for
   * {@linkcode getResult}. Not awaited: the record is written before the call's messages.
   */
  recordCall(
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
   * @internal Tells engines `engineIds` to skip their part of call `id` if they have not started
   * it: an `abort` control message straight to each engine's inbox.
   */
  abortCall(id: string, engineIds: readonly number[]): void {
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
    if (this.#closed) throw this.closedError("get result");
    // A call of this client may still be preparing: its record is written when it is sent.
    await this.#dispatchTail;
    const envelope = await this.system.load(callKey(this.namespace, id));
    if (envelope === null) throw new ResultNotFoundError(id);
    const record = envelope.content as CallRecord;
    if (
      envelope.type !== "call" || envelope.id !== id || typeof record !== "object" ||
      record === null || !Array.isArray(record.targets) ||
      !record.targets.every(Number.isInteger) || typeof record.type !== "string" ||
      typeof record.retentionMs !== "number"
    ) {
      throw new InvalidMessageError(
        callKey(this.namespace, id),
        "value",
        "it is not the record of this call",
      );
    }
    const targets = record.targets;
    const expires = envelope.sent + record.retentionMs;
    if (record.tasks) {
      const { length, chunksize, retries } = record.tasks;
      if (![length, chunksize, retries].every(Number.isInteger) || chunksize < 1) {
        throw new InvalidMessageError(
          callKey(this.namespace, id),
          "value",
          "its tasks are malformed",
        );
      }
      const tasks = storedTasks(this, id, record.tasks, expires);
      const result = new AsyncResult(id, [], [], () => {}, envelope.sent);
      return { id, type: record.type, engineIds: targets, submitted: envelope.sent, result, tasks };
    }
    const found = new Set<number>();
    const { tree } = record;
    const pieces = tree
      ? keptPieces(id, targets, tree.hosts, tree.hub, tree.fanout)
      : targets.map((engineId, i) => ({
        id: engineMessageId(id, engineId),
        from: `engine.${engineId}`,
        lo: i,
        hi: i + 1,
      }));
    const outcomes: Promise<Outcome>[] = [];
    for (const piece of pieces) {
      const stored = this.#storedPiece(id, piece, targets, expires);
      for (let i = piece.lo; i < piece.hi; i++) {
        outcomes[i] = stored.then((all) => {
          found.add(targets[i]);
          return all[i - piece.lo];
        });
      }
    }
    const stored = new AsyncResult(
      id,
      targets,
      outcomes,
      () => this.abortCall(id, targets.filter((e) => !found.has(e))),
      envelope.sent,
    );
    const listed = record.single === true ? mapResult(stored, firstOf, envelope.sent) : stored;
    const result = record.one === true && targets.length === 1 ? listed.reshaped("one") : listed;
    return { id, type: record.type, engineIds: targets, submitted: envelope.sent, result };
  }

  /**
   * The stored answer to message `piece.id` of call `id` (an engine's, or a broadcast node's for
   * its range), as the outcomes of the targets at positions `[piece.lo, piece.hi)`; waited for
   * until `expires`.
   */
  async #storedPiece(
    id: string,
    piece: KeptPiece,
    targets: readonly number[],
    expires: number,
  ): Promise<Outcome[]> {
    const engineIds = targets.slice(piece.lo, piece.hi);
    const all = (error: (engineId: number) => Error) =>
      engineIds.map((engineId) => ({ engineId, error: error(engineId) }));
    const key = resultKey(this.namespace, piece.id);
    let pause = 50;
    for (;;) {
      try {
        const envelope = await this.system.load(key);
        if (envelope !== null) {
          if (
            envelope.type !== "reply" || envelope.parent !== piece.id ||
            envelope.from !== piece.from
          ) {
            throw new InvalidMessageError(key, "value", `it is not the answer of ${piece.from}`);
          }
          const reply = envelope.content as Reply;
          if (!reply?.ok) {
            const data = reply?.error ?? { name: "Error", message: "malformed reply" };
            return all((engineId) => new RemoteError(engineId, data, envelope.from));
          }
          if (piece.hi - piece.lo === 1 && envelope.from.startsWith("engine.")) {
            return [{ engineId: engineIds[0], result: reply.value as EngineResult }];
          }
          const parts = reply.value as BroadcastPart[];
          if (!Array.isArray(parts) || parts.length !== engineIds.length) {
            throw new InvalidMessageError(key, "value", "its parts do not match its range");
          }
          return parts.map((part) => toOutcome(part, this));
        }
      } catch (error) {
        return all(() => error as Error);
      }
      const dead = engineIds.map((engineId) => this.deadEngine(engineId));
      if (dead.every(Boolean)) {
        return engineIds.map((engineId, i) => ({ engineId, error: dead[i]! }));
      }
      if (Date.now() >= expires) {
        return all((engineId) => new ResultNotFoundError(id, engineId));
      }
      if (this.#closing.signal.aborted) {
        return all(() => new TransportClosedError("Cannot get result: the client is closed"));
      }
      await pauseFor(Math.min(pause, Math.max(1, expires - Date.now())), this.#closing.signal);
      pause = Math.min(POLL_MAX_MS, pause * 2);
    }
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
    this.#broadcast?.ready.then((hub) => this.system.send(broadcastAddress(hub, 0), "died", died))
      .catch(() => {});
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
   * Marks dead engine `id` alive again: a replacement with the same id runs, on host `hostId` (the
   * `Cluster` calls this once it restarted the engine). Later calls go to it; calls that were pending when it died
   * stay failed. Dispatches `"enginerestarted"`. Resolves once the broadcast actors know too.
   */
  async engineRestarted(id: number, hostId?: string): Promise<void> {
    if (!this.#dead.delete(id)) return;
    if (hostId !== undefined) this.#hosts.set(id, hostId);
    const restarted = { engineIds: [id] };
    const told = [...new Set(this.#hosts.values())].filter((h) => !this.#deadHosts.has(h)).map(
      (h) => this.system.send(broadcastAddress(h, 0), "restarted", restarted).catch(() => {}),
    );
    await Promise.all([
      ...told,
      this.#broadcast?.ready.then((hub) =>
        this.system.send(broadcastAddress(hub, 0), "restarted", restarted)
      ).catch(() => {}),
    ]);
    this.dispatchEvent(
      new CustomEvent<EngineRestartedDetail>("enginerestarted", { detail: { engineId: id } }),
    );
  }

  /** @internal Counts `result` among the outstanding calls until every engine answered. */
  track(result: AsyncResult<unknown>): AsyncResult<unknown> {
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

  /** Whether the client is closed: by {@linkcode close}, or by the stop of its cluster. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * @internal Why `action` cannot be done, when the client is closed: `ClusterStoppedError` when
   * its cluster was stopped, else `TransportClosedError`.
   */
  closedError(action: string): TransportClosedError | undefined {
    if (!this.#closed) return undefined;
    return this.#stoppedCluster !== undefined
      ? new ClusterStoppedError(action, this.#stoppedCluster)
      : new TransportClosedError(`Cannot ${action}: the client is closed`);
  }

  /**
   * @internal Closes the client because its cluster `cluster` is stopping: calls made later, and
   * those still pending, fail with `ClusterStoppedError`.
   */
  async closeForStop(cluster: string): Promise<void> {
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
    await this.system.close(this.closedError("get answer"));
    await this.#onClose?.();
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pauseFor(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
