/**
 * Broadcast actors: a tree of actors that takes one message from the client, fans it out to the
 * target engines with at most `fanout` children per node, and answers once with every engine's
 * result merged in target order.
 *
 * Node addresses: a node splits its range `[lo, hi)` of target positions into at most `fanout`
 * contiguous chunks; it is named after the first boundary of that split, `lo + size of its first
 * chunk`. Every boundary between two adjacent targets belongs to exactly one node, so each node
 * of one broadcast gets its own actor, and no inbox gets more than `fanout` replies of one
 * broadcast. A one-target broadcast is handled by node 0.
 *
 * @module
 */
import type { RemoteErrorData } from "../errors.ts";
import { type ActorContext, type ActorDefinition, defineActor } from "./actor.ts";
import type { EngineResult } from "./engine.ts";
import { partitionBounds } from "./partition.ts";
import { errorData, type Reply } from "./system.ts";
import { chunkFor, type Operation } from "./view.ts";

/** What a broadcast node is asked to do. */
export interface BroadcastRequest {
  /** The operation every target engine runs. */
  operation: Operation;
  /** All the broadcast's target engines, in order. */
  targets: number[];
  /** The first position (in `targets`) of this node's range. */
  lo: number;
  /** The end (exclusive) of this node's range. */
  hi: number;
  /** The most children per node. */
  fanout: number;
}

/** One engine's part of a broadcast's merged answer. */
export type BroadcastPart =
  | { engineId: number; result: EngineResult }
  | { engineId: number; error: RemoteErrorData & { kind: "engine" | "died" | "transport" } };

/** The address of broadcast node `node` of the broadcast host `hostId`. */
export function broadcastAddress(hostId: string, node: number): string {
  return `bcast.${hostId}.${node}`;
}

/** The size of the first chunk when `size` targets split into at most `fanout` chunks. */
function firstChunk(size: number, fanout: number): number {
  const [start, end] = partitionBounds(size, 0, Math.min(fanout, size));
  return end - start;
}

/** The node that handles the range `[lo, hi)`. */
export function nodeFor(lo: number, hi: number, fanout: number): number {
  return hi - lo > 1 ? lo + firstChunk(hi - lo, fanout) : 0;
}

interface Pending {
  request: BroadcastRequest;
  parts: (BroadcastPart | undefined)[];
  waiting: number;
  replies: number;
  reply: (result: { value: unknown }) => Promise<void>;
  /** Child message id → [first, end) positions it covers, relative to `lo`. */
  children: Map<string, [number, number]>;
}

/** The broadcast nodes of one host, sharing their bookkeeping. */
export class BroadcastNodes {
  readonly #hostId: string;
  readonly #pending = new Map<string, Pending>();
  readonly #byChild = new Map<string, string>();
  readonly #dead = new Map<number, string>();
  /** The most replies any node received for one broadcast. */
  maxRepliesPerBroadcast = 0;

  constructor(hostId: string) {
    this.#hostId = hostId;
  }

  /** The actor of node `node`. */
  actor(node: number): ActorDefinition {
    return defineActor({
      handlers: {
        broadcast: (request: BroadcastRequest, ctx) => this.#forward(request, ctx),
        reply: (reply: Reply, ctx) => this.#collect(reply, ctx),
      },
      control: {
        died: (content: { engineIds: number[]; reason: string }) => this.#died(content),
        stats: () => ({ maxRepliesPerBroadcast: this.maxRepliesPerBroadcast, node }),
      },
    });
  }

  async #forward(request: BroadcastRequest, ctx: ActorContext): Promise<void> {
    const { lo, hi, fanout, targets, operation } = request;
    const size = hi - lo;
    const reply = ctx.deferReply();
    const pending: Pending = {
      request,
      parts: new Array(size),
      waiting: 0,
      replies: 0,
      reply,
      children: new Map(),
    };
    const id = ctx.envelope.id;
    this.#pending.set(id, pending);
    const messages = [];
    const chunks = Math.min(fanout, size);
    for (let c = 0; c < chunks; c++) {
      const [a, b] = partitionBounds(size, c, chunks);
      const childId = `${id}.${c}`;
      if (b - a === 1) {
        const position = lo + a;
        const engineId = targets[position];
        const died = this.#dead.get(engineId);
        if (died) {
          pending.parts[a] = diedPart(engineId, died);
          continue;
        }
        messages.push({
          to: `engine.${engineId}`,
          type: operation.type,
          content: operation.scatter
            ? {
              ...operation.content,
              values: chunkFor(operation.scatter, position, targets.length),
            }
            : operation.content,
          options: { id: childId, replyTo: ctx.self, from: ctx.self },
        });
      } else {
        const child = { ...request, lo: lo + a, hi: lo + b };
        messages.push({
          to: broadcastAddress(this.#hostId, nodeFor(child.lo, child.hi, fanout)),
          type: "broadcast",
          content: child,
          options: { id: childId, replyTo: ctx.self, from: ctx.self },
        });
      }
      pending.children.set(childId, [a, b]);
      this.#byChild.set(childId, id);
      pending.waiting++;
    }
    if (pending.waiting === 0) return this.#finish(id, pending);
    try {
      await ctx.system.sendMany(messages);
    } catch (error) {
      for (const m of messages) {
        this.#fill(m.options.id, { ok: false, error: errorData(error) }, "transport");
      }
    }
  }

  #collect(reply: Reply, ctx: ActorContext): void {
    const childId = ctx.envelope.parent;
    const pending = this.#pending.get(this.#byChild.get(childId ?? "") ?? "");
    if (!childId || !pending) return;
    pending.replies++;
    this.maxRepliesPerBroadcast = Math.max(this.maxRepliesPerBroadcast, pending.replies);
    this.#fill(childId, reply, "engine");
  }

  #fill(childId: string, reply: Reply, kind: "engine" | "transport" | "died"): void {
    const id = this.#byChild.get(childId);
    if (id === undefined) return; // late answer of a child already failed
    this.#byChild.delete(childId);
    const pending = this.#pending.get(id)!;
    const [a, b] = pending.children.get(childId)!;
    pending.children.delete(childId);
    const { lo, targets } = pending.request;
    if (reply.ok && b - a === 1 && !Array.isArray(reply.value)) {
      pending.parts[a] = { engineId: targets[lo + a], result: reply.value as EngineResult };
    } else if (reply.ok) {
      (reply.value as BroadcastPart[]).forEach((part, i) => (pending.parts[a + i] = part));
    } else {
      for (let i = a; i < b; i++) {
        pending.parts[i] = { engineId: targets[lo + i], error: { ...reply.error, kind } };
      }
    }
    if (--pending.waiting === 0) this.#finish(id, pending);
  }

  #finish(id: string, pending: Pending): Promise<void> {
    this.#pending.delete(id);
    return pending.reply({ value: pending.parts });
  }

  #died(content: { engineIds: number[]; reason: string }): void {
    for (const engineId of content.engineIds) this.#dead.set(engineId, content.reason);
    for (const [childId, id] of [...this.#byChild]) {
      const pending = this.#pending.get(id);
      if (!pending) continue;
      const [a, b] = pending.children.get(childId) ?? [0, 0];
      const engineId = pending.request.targets[pending.request.lo + a];
      if (b - a === 1 && content.engineIds.includes(engineId)) {
        const reason = this.#dead.get(engineId)!;
        this.#fill(childId, {
          ok: false,
          error: { name: "EngineDiedError", message: `Engine ${engineId} died: ${reason}` },
        }, "died");
      }
    }
  }
}

function diedPart(engineId: number, reason: string): BroadcastPart {
  return {
    engineId,
    error: { name: "EngineDiedError", message: `Engine ${engineId} died: ${reason}`, kind: "died" },
  };
}
