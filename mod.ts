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

export { Cluster, type ClusterOptions, type EngineRestartFailedDetail } from "./actors/cluster.ts";
export { readKeyFile, writeKeyFile } from "./actors/key_file.ts";
export {
  Client,
  type ClientOptions,
  type EngineDiedDetail,
  type EngineRestartedDetail,
  type FetchedCall,
} from "./actors/client.ts";
export {
  type AnyFunction,
  type BroadcastTree,
  type CallOptions,
  DirectView,
  type Operation,
  type ScatterOptions,
  View,
  type ViewMapOptions,
} from "./actors/view.ts";
export { BroadcastView, type BroadcastViewOptions } from "./actors/broadcast_view.ts";
export {
  LoadBalancedView,
  type LoadBalancedViewOptions,
  type MapOptions,
} from "./actors/load_balanced_view.ts";
export { AsyncApplyResult, AsyncMapResult, type MapItem } from "./actors/async_map_result.ts";
export {
  AsyncResult,
  type EngineTiming,
  type GetOptions,
  type Outcome,
  type Shape,
  type Shaped,
} from "./actors/async_result.ts";
export type { EngineResult } from "./actors/engine.ts";
export type { EngineQueueStatus } from "./actors/queue_status.ts";
export type { WaitInteractiveOptions } from "./actors/wait_interactive.ts";
export { ModuleFunction, Reference } from "./actors/wire_types.ts";
export {
  type Bintree,
  bintree,
  printBintree,
  type ReduceOptions,
  TreeCommunicator,
  type TreeStats,
  wireTree,
  type WireTreeOptions,
} from "./actors/tree.ts";
export { partitionBounds, type Sequence } from "./actors/partition.ts";

export { defineActor } from "./actors/actor.ts";
export type { ActorContext, ActorDefinition, Handler } from "./actors/actor.ts";
export { ActorSystem } from "./actors/system.ts";
export type {
  ActorSystemOptions,
  ActorSystemStats,
  AskOptions,
  DataLostDetail,
  DeadLetterDetail,
  DeadLetterReason,
  Reply,
  SendOptions,
} from "./actors/system.ts";

export { createTransport } from "./transport/mod.ts";
export { MemoryTransport } from "./transport/memory.ts";
export type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./transport/types.ts";
export { type ClusterKey, type Envelope, generateKey } from "./transport/envelope.ts";

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
