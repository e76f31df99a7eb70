/**
 * The contents of the messages a client sends engine hosts for a call (and what comes back from
 * broadcast nodes): the operation, how a host's dispatcher, broadcast nodes and task reader get
 * it, and an engine's place in a reduction tree.
 *
 * @module
 */
import type { RemoteErrorData } from "../../errors.ts";
import type { Sequence } from "./partition.ts";
import type { EngineResult } from "./results.ts";
import type { FunctionSource, ModuleFunction } from "./wire_types.ts";

/**
 * One operation for the engines of a view.
 *
 * @example An apply, as views send it
 * ```ts
 * import type { Operation } from "../../mod.ts";
 *
 * const operation: Operation = { type: "execute", content: { code: "a = 1" } };
 * ```
 */
export interface Operation {
  /** The engine message type. */
  type: "apply" | "execute" | "push" | "pull" | "clear" | "map";
  /** The content every engine gets. */
  content: Record<string, unknown>;
  /**
   * For `scatter`: each engine also gets its chunk of `sequence` pushed under `name`; for `map`
   * (`into: "items"`), its chunk of the items as the message's `items`.
   */
  scatter?: { name: string; sequence: Sequence; flatten: boolean; into?: "items" };
}

/**
 * The shape of a view's broadcast tree, as `client.getResult` needs it to find the answers.
 *
 * @example The tree of a broadcast on two engines of one host
 * ```ts
 * import type { BroadcastTree } from "../../mod.ts";
 *
 * const tree: BroadcastTree = { fanout: 2, hosts: [["h0", 2]], hub: "b-client" };
 * ```
 */
export interface BroadcastTree {
  /** The most children per node. */
  fanout: number;
  /** The host of each target, as runs of `[hostId, count]`. */
  hosts: [string, number][];
  /** The host of the nodes of ranges spanning hosts. */
  hub: string;
}

/** The content of an `apply` message. */
export interface ApplyContent {
  fn: FunctionSource | ModuleFunction;
  args: unknown[];
}

/**
 * The content of a `map` message: `fn` called once per item of `items`, in order, each item being
 * the list of arguments of one call.
 */
export interface MapContent {
  fn: FunctionSource | ModuleFunction;
  items: unknown[][];
}

/** What a host's dispatcher is sent: one DirectView call, for the targets on its host. */
export interface DispatchRequest {
  /** The call's id. Engine `e`'s task has message id `engineMessageId(call, e)`. */
  call: string;
  /** The type of the engines' messages: the operation (`execute`, `apply`, `push`…). */
  type: string;
  /** The call's targets on this host, in the view's order. */
  engineIds: number[];
  /** The content every target gets; absent when `contents` is given. */
  content?: unknown;
  /** Each target's own content (a scatter's chunks), in `engineIds` order. */
  contents?: unknown[];
  /** Where the engines send their answers. */
  replyTo: string;
}

/** What a broadcast node is asked to do. */
export interface BroadcastRequest {
  /** The operation every target engine runs. */
  operation: Operation;
  /** The target engines of this node's range, in order. */
  targets: number[];
  /** The host of each engine of the range, as runs of `[hostId, count]`. */
  hosts: [string, number][];
  /** The host of the nodes of ranges that span several hosts. */
  hub: string;
  /**
   * How long (ms) a node on an engine host that got this request through the transport keeps its
   * answer for `client.getResult` (see `keptPieces`); 0 or absent: not at all.
   */
  keepMs?: number;
  /** How many targets the whole broadcast has. */
  size: number;
  /** The first position (in the whole broadcast's targets) of this node's range. */
  lo: number;
  /** The end (exclusive) of this node's range. */
  hi: number;
  /** The most children per node. */
  fanout: number;
  /**
   * For a scatter: the length of the whole sequence, and the index in it of the first item of
   * `operation.scatter.sequence`, which holds only the items of this node's range. Absent at the
   * root, which gets the whole sequence.
   */
  scatterSpan?: { length: number; offset: number };
  /** Engines the sender knows to be dead, with why: they get no message and fail at once. */
  dead?: Record<number, string>;
}

/** One engine's part of a broadcast's merged answer. */
export type BroadcastPart =
  | { engineId: number; result: EngineResult }
  | {
    engineId: number;
    error: RemoteErrorData & { kind: "engine" | "died" | "transport" | "lost" };
  };

/** What a broadcast node answers to a `stats` control message. */
export interface BroadcastNodeStats {
  /** The most replies one node's inbox received for one broadcast, on this host. */
  maxRepliesPerBroadcast: number;
  /** The node asked. */
  node: number;
  /** Broadcast ranges waiting for answers on this host (0 when no broadcast is in flight). */
  inFlight: number;
  /** Sub-broadcasts and engine messages of those ranges not yet answered. */
  children: number;
  /** The host the node runs on. */
  hostId: string;
}

/** The content of a `died` message: engines (and the hosts they ran on) found dead. */
export interface Died {
  /** The engines that died. */
  engineIds: number[];
  /** The hosts that died with them. */
  hostIds?: string[];
  /** How they were found dead. */
  reason: string;
}

/** What `wireTree` sends each engine: its place in the tree. */
export interface TreeWiring {
  /** The id of this wiring; messages of other wirings are ignored. */
  wiring: string;
  /** The engines in rank order (the tree's pre-order). */
  ids: number[];
  /** `[id, parent]` for every engine. */
  tree: [number, number | null][];
  /** See `WireTreeOptions.heartbeatMs`. */
  heartbeatMs: number;
  /** See `WireTreeOptions.livenessMs`. */
  livenessMs: number;
  /** See `WireTreeOptions.measureBacklog`. */
  measureBacklog: boolean;
}

/** What a `nudge` says: tasks were appended to the stream of `stream` (an address). */
export interface Nudge {
  /** The address of the task stream (see `taskAddress`). */
  stream: string;
  /** The engines that serve it (the reader keeps those it runs). */
  engineIds: number[];
  /** The most tasks an engine holds at once (running or waiting), at least 1. */
  prefetch: number;
}

/** What the record of a call holds. */
export interface CallRecord {
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

/** What the record of a load-balanced call says of its tasks. */
export interface TaskRecord {
  /** How many items the call has. */
  length: number;
  /** Items per task. */
  chunksize: number;
  /** How many times a failed task is sent again. */
  retries: number;
}
