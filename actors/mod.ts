/**
 * The actor core of deno-parallel, for writing actors of your own: an {@linkcode ActorSystem}
 * runs actors ({@linkcode defineActor}) whose inboxes are streams of a `Transport`, with signed
 * messages, asks with deadlines, acknowledgements and dead letters. The engines, views and
 * `Cluster` of `mod.ts` are built on it.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActorSystem, defineActor } from "./mod.ts";
 * import { MemoryTransport } from "../transport/memory.ts";
 * import { generateKey } from "../transport/envelope.ts";
 *
 * const system = new ActorSystem({
 *   transport: new MemoryTransport(),
 *   key: generateKey(),
 *   namespace: "example",
 * });
 * system.spawn("greeter", defineActor({ handlers: { greet: (name: string) => `hello ${name}` } }));
 * assert.equal(await system.ask("greeter", "greet", "engine"), "hello engine");
 * await system.close();
 * ```
 *
 * @module
 */

export {
  type ActorContext,
  type ActorDefinition,
  type ActorRuntime,
  type AskOptions,
  defineActor,
  type Handler,
  type OutgoingMessage,
  type SendOptions,
} from "./core/actor.ts";
export { ActorSystem } from "./core/system.ts";
export {
  type ActorSystemOptions,
  type ActorSystemStats,
  type DataLostDetail,
  type DeadLetterDetail,
  type DeadLetterReason,
  type Reply,
} from "./core/system_types.ts";
