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
 * A scatter's sequence travels whole only to the root: each node passes on to a subtree only the
 * items of that subtree's targets. Engines known to be dead (from the request, or a `died`
 * control message) get nothing and fail with their death at once.
 *
 * @module
 */
import type { RemoteErrorData } from "../errors.ts";
import { type ActorContext, type ActorDefinition, defineActor } from "./actor.ts";
import type { EngineResult } from "./engine.ts";
import { partitionBounds, type Sequence } from "./partition.ts";
import { errorData, type Reply } from "./system.ts";
import type { Operation } from "./view.ts";

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
  | { engineId: number; error: RemoteErrorData & { kind: "engine" | "died" | "transport" } };

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
  /** Per node and broadcast reply counters in use. */
  inboxes: number;
}

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
  /** The key of this node and broadcast in `BroadcastNodes.#inbox`. */
  inbox: string;
  request: BroadcastRequest;
  parts: (BroadcastPart | undefined)[];
  waiting: number;
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
  /** Per node inbox and broadcast in flight (`"<node> <root message id>"`): replies received. */
  readonly #inbox = new Map<string, { ranges: number; replies: number }>();
  /** The most replies one node's inbox received for one broadcast. */
  maxRepliesPerBroadcast = 0;

  constructor(hostId: string) {
    this.#hostId = hostId;
  }

  /** The actor of node `node`. */
  actor(node: number): ActorDefinition {
    return defineActor({
      handlers: {
        broadcast: (request: BroadcastRequest, ctx) => this.#forward(node, request, ctx),
        reply: (reply: Reply, ctx) => this.#collect(reply, ctx),
      },
      control: {
        died: (content: { engineIds: number[]; reason: string }) => this.#died(content),
        stats: (): BroadcastNodeStats => ({
          maxRepliesPerBroadcast: this.maxRepliesPerBroadcast,
          node,
          inFlight: this.#pending.size,
          children: this.#byChild.size,
          inboxes: this.#inbox.size,
        }),
      },
    });
  }

  async #forward(node: number, request: BroadcastRequest, ctx: ActorContext): Promise<void> {
    // Thrown before the reply is deferred, a bad request is answered with the error at once.
    checkRequest(request);
    const { lo, hi, fanout, targets, operation } = request;
    for (const [engineId, reason] of Object.entries(request.dead ?? {})) {
      if (!this.#dead.has(Number(engineId))) this.#dead.set(Number(engineId), reason);
    }
    const size = hi - lo;
    const reply = ctx.deferReply();
    const id = ctx.envelope.id;
    // Sub-broadcast ids extend their parent's: the root's id names the whole broadcast.
    const inbox = `${node} ${id.split(".")[0]}`;
    const counts = this.#inbox.get(inbox) ?? { ranges: 0, replies: 0 };
    counts.ranges++;
    this.#inbox.set(inbox, counts);
    const pending: Pending = {
      inbox,
      request,
      parts: new Array(size),
      waiting: 0,
      reply,
      children: new Map(),
    };
    this.#pending.set(id, pending);
    const scatter = operation.scatter;
    const span = request.scatterSpan ??
      (scatter ? { length: scatter.sequence.length, offset: 0 } : undefined);
    // The items of the scatter that go to the targets at positions [from, to).
    const items = (from: number, to: number) => {
      const start = partitionBounds(span!.length, from, targets.length)[0] - span!.offset;
      const end = partitionBounds(span!.length, to, targets.length)[0] - span!.offset;
      return (scatter!.sequence as unknown as { slice(a: number, b: number): Sequence }).slice(
        start,
        end,
      );
    };
    const messages = [];
    const chunks = Math.min(fanout, size);
    for (let c = 0; c < chunks; c++) {
      const [a, b] = partitionBounds(size, c, chunks);
      const childId = `${id}.${c}`;
      if (b - a === 1) {
        const position = lo + a;
        const engineId = targets[position];
        const died = this.#dead.get(engineId);
        if (died !== undefined) {
          pending.parts[a] = diedPart(engineId, died);
          continue;
        }
        let content = operation.content;
        if (scatter) {
          const chunk = items(position, position + 1);
          const value = scatter.flatten && chunk.length === 1 ? chunk[0] : chunk;
          content = { ...content, values: { [scatter.name]: value } };
        }
        messages.push({
          to: `engine.${engineId}`,
          type: operation.type,
          content,
          options: { id: childId, replyTo: ctx.self, from: ctx.self },
        });
      } else {
        const child: BroadcastRequest = { ...request, lo: lo + a, hi: lo + b };
        if (scatter) {
          child.operation = {
            ...operation,
            scatter: { ...scatter, sequence: items(lo + a, lo + b) },
          };
          child.scatterSpan = {
            length: span!.length,
            offset: partitionBounds(span!.length, lo + a, targets.length)[0],
          };
        }
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
    const counts = this.#inbox.get(pending.inbox)!;
    counts.replies++;
    this.maxRepliesPerBroadcast = Math.max(this.maxRepliesPerBroadcast, counts.replies);
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
    if (reply.ok && !isAnswer(reply.value, b - a)) {
      reply = {
        ok: false,
        error: { name: "TypeError", message: `Malformed answer to broadcast part ${childId}` },
      };
    }
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
    const counts = this.#inbox.get(pending.inbox)!;
    if (--counts.ranges === 0) this.#inbox.delete(pending.inbox);
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

/** Whether `value` is the answer of an engine (`size` 1) or of a node covering `size` targets. */
function isAnswer(value: unknown, size: number): boolean {
  if (size > 1) return Array.isArray(value) && value.length === size;
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Throws `TypeError` unless `request` is a request a node can carry out. */
function checkRequest(request: BroadcastRequest): void {
  const fail = (what: string): never => {
    throw new TypeError(`Cannot broadcast: malformed request: ${what}`);
  };
  if (typeof request !== "object" || request === null) fail("not an object");
  const { lo, hi, fanout, targets, operation, scatterSpan } = request;
  if (!Array.isArray(targets) || !targets.every(Number.isInteger)) fail("bad targets");
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > targets.length || lo >= hi) {
    fail(`bad range [${lo}, ${hi}) of ${targets.length} targets`);
  }
  if (!Number.isInteger(fanout) || fanout < 2) fail(`bad fanout ${fanout}`);
  if (typeof operation !== "object" || operation === null || typeof operation.type !== "string") {
    fail("bad operation");
  }
  const sequence = operation.scatter?.sequence as { length?: unknown; slice?: unknown } | undefined;
  if (
    operation.scatter &&
    (typeof sequence?.slice !== "function" || typeof sequence.length !== "number")
  ) fail("bad scatter sequence");
  if (
    scatterSpan && (!Number.isInteger(scatterSpan.length) || !Number.isInteger(scatterSpan.offset))
  ) {
    fail("bad scatter span");
  }
}

function diedPart(engineId: number, reason: string): BroadcastPart {
  return {
    engineId,
    error: { name: "EngineDiedError", message: `Engine ${engineId} died: ${reason}`, kind: "died" },
  };
}
