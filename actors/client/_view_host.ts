/**
 * What views (and `wireTree`) need of the client they belong to: its actor system, what it
 * knows of the engines, and the bookkeeping of its calls. A `Client` makes one and hands it to
 * the views it makes; it is not part of the client's public surface.
 *
 * @module
 */
import type { CallPaths } from "./_call_paths.ts";
import type { EngineDiedError, TransportClosedError } from "../../errors.ts";
import type { AsyncResult, Outcome } from "./async_result.ts";
import type { BroadcastTree, TaskRecord } from "../protocol/messages.ts";
import type { Transport } from "../../transport/types.ts";
import type { ActorSystem } from "../core/system.ts";

/** A client's plumbing, as its views use it. */
export interface ViewHost {
  /** The actor system the client speaks through. */
  readonly system: ActorSystem;
  /** The cluster's namespace (stream key prefix). */
  readonly namespace: string;
  /** The transport the cluster runs on. */
  readonly transport: Transport;
  /** Where the client dispatches `"enginedied"` and `"enginerestarted"`: the client itself. */
  readonly events: EventTarget;
  /** The id of the host of the broadcast nodes whose engines span several hosts. */
  readonly hubId: string;
  /** How long (ms) the answers of the client's calls are kept. */
  readonly retentionMs: number;
  /**
   * Whether a call is still being prepared: a new call must then be dispatched after it, with
   * {@linkcode ViewHost.dispatchInOrder}.
   */
  readonly preparing: boolean;
  /** What a call must wait for so that it reaches each engine after the calls made before it. */
  readonly paths: CallPaths;
  /** The id of the host that runs engine `engineId`. */
  hostOf(engineId: number): string;
  /** The error of engine `engineId` if it is known to be dead. */
  deadEngine(engineId: number): EngineDiedError | undefined;
  /**
   * Starts the client's broadcast nodes `nodes` (of ranges spanning hosts) where they do not run
   * yet; resolves to their host id.
   */
  broadcastHost(nodes: readonly number[]): Promise<string>;
  /**
   * With `streamOutput`, what writes what an engine printed for the call made now, each line
   * prefixed with `[engine N]`, as its result arrives (and returns the outcome). Called when the
   * call is made: in Deno's Jupyter kernel, the lines go to the cell that made it.
   */
  echoOutput(): (outcome: Outcome) => Outcome;
  /**
   * Calls `dispatch` with what `prepared` resolves to, once every call made before was
   * dispatched: the calls of one client leave in the order they were made.
   */
  dispatchInOrder<C, R>(prepared: Promise<C>, dispatch: (content: C) => R): Promise<R>;
  /**
   * Records call `id` (its targets, in order) in the transport, for `client.getResult`. Not
   * awaited: the record is written before the call's messages.
   */
  recordCall(
    id: string,
    targets: readonly number[],
    type: string,
    single?: boolean,
    tree?: BroadcastTree,
    one?: boolean,
    tasks?: TaskRecord,
  ): void;
  /** Tells engines `engineIds` to skip their part of call `id` if they have not started it. */
  abortCall(id: string, engineIds: readonly number[]): void;
  /** Records that `wireTree` wired engines `ids` into tree `wiring`. */
  treeWired(wiring: string, ids: readonly number[]): void;
  /** Counts `result` among the client's outstanding calls until every engine answered. */
  track(result: AsyncResult<unknown>): AsyncResult<unknown>;
  /** Why `action` cannot be done, when the client is closed. */
  closedError(action: string): TransportClosedError | undefined;
}
