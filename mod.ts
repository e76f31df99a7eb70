/**
 * deno-parallel: IPython Parallel's engine model for Deno. Start a cluster of engines, then run
 * SPMD work on all of them with one call. Engines are actors whose inboxes are streams: in this
 * process's memory by default, or in Redis to span machines.
 *
 * ```ts
 * import { Cluster, Reference } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 4, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.broadcastView();
 * await view.scatter("chunk", [1, 2, 3, 4, 5, 6, 7, 8]);
 * const sums = await view.apply((xs: number[]) => xs.reduce((a, b) => a + b, 0), new Reference("chunk"));
 * // sums: [3, 7, 11, 15], in engine order
 * ```
 *
 * @module
 */

export {
  Cluster,
  type ClusterOptions,
  type EngineRestartFailedDetail,
} from "./actors/client/cluster.ts";
export {
  Client,
  type ClientOptions,
  type EngineDiedDetail,
  type EngineRestartedDetail,
} from "./actors/client/client.ts";
export { type FetchedCall } from "./actors/client/fetch_result.ts";

export {
  type AnyFunction,
  type CallOptions,
  type ScatterOptions,
  type View,
  type ViewMapOptions,
} from "./actors/client/view.ts";
export { DirectView } from "./actors/client/direct_view.ts";
export { BroadcastView, type BroadcastViewOptions } from "./actors/client/broadcast_view.ts";
export {
  LoadBalancedView,
  type LoadBalancedViewOptions,
  type MapOptions,
} from "./actors/client/load_balanced_view.ts";

export {
  AsyncResult,
  type EngineTiming,
  type GetOptions,
  type Outcome,
  type Shape,
  type Shaped,
} from "./actors/client/async_result.ts";
export {
  AsyncApplyResult,
  AsyncMapResult,
  type MapItem,
} from "./actors/client/async_map_result.ts";
export { type EngineResult } from "./actors/protocol/results.ts";
export type { EngineQueueStatus } from "./actors/protocol/queue_status.ts";
export type { WaitInteractiveOptions } from "./actors/client/wait_interactive.ts";
// The wire shapes the views' protected `dispatch()` and `tree()` take and give.
export { type BroadcastTree, type Operation } from "./actors/protocol/messages.ts";

export { ModuleFunction, Reference } from "./actors/protocol/wire_types.ts";
export { partitionBounds, type Sequence } from "./actors/protocol/partition.ts";

export {
  type ReduceOptions,
  type TreeCommunicator,
  type TreeStats,
} from "./actors/host/tree_communicator.ts";
export { type WireTreeOptions } from "./actors/client/wire_tree.ts";
export { type Bintree, bintree, printBintree } from "./actors/protocol/topology.ts";

export { readKeyFile, writeKeyFile } from "./transport/key.ts";
export { type ClusterKey, type Envelope, generateKey } from "./transport/envelope.ts";
export { createTransport } from "./transport/mod.ts";
export { MemoryTransport } from "./transport/memory.ts";
export type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./transport/types.ts";

export {
  ClusterStateError,
  ClusterStoppedError,
  CompositeError,
  EngineDiedError,
  InvalidMessageError,
  NamespaceInUseError,
  RemoteError,
  type RemoteErrorData,
  ResultNotFoundError,
  SerializationError,
  TaskAbortedError,
  TaskError,
  TimeoutError,
  TransportClosedError,
  TransportDataLostError,
  TransportRefusedError,
} from "./errors.ts";
