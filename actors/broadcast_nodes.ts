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
 * Placement: the node of a range whose engines all run on one host runs on that host, where its
 * tasks, its engines' replies and the hops to the nodes below it are handed over without the
 * transport. The node of a range spanning several hosts runs in the client, on its hub, and splits
 * its range at host boundaries. A node thus never outlives its engines' answers: if its host
 * dies, so did every engine below it. Engines on one host have neighbouring ids, so a broadcast
 * over a range of ids crosses the transport only from the hub to one node per host and back.
 *
 * A scatter's sequence travels whole only to the root: each node passes on to a subtree only the
 * items of that subtree's targets. Engines known to be dead (from the request, or a `died`
 * control message) get nothing and fail with their death at once, until a `restarted` control
 * message says a replacement runs.
 *
 * @module
 */
import { type ActorContext, type ActorDefinition, defineActor } from "./core/actor.ts";
import { chunkContent, partitionBounds, type Sequence } from "./protocol/partition.ts";
import { errorData } from "./core/system.ts";
import type { EngineResult } from "./protocol/results.ts";
import { broadcastAddress, resultKey } from "./protocol/addresses.ts";
import type {
  BroadcastNodeStats,
  BroadcastPart,
  BroadcastRequest,
  Died,
} from "./protocol/messages.ts";
import { chunkBounds, nodeFor, placeRange, sliceRuns } from "./protocol/placement.ts";
import type { Reply } from "./core/system_types.ts";

/** The content of a `restarted` control message. */
type Restarted = { engineIds: number[]; hostIds?: string[] };

/** One node's part of one broadcast, while it waits for its children. */
interface Pending {
  request: BroadcastRequest;
  parts: (BroadcastPart | undefined)[];
  waiting: number;
  /** Replies received: what this node's inbox got of this broadcast. */
  replies: number;
  reply: (result: { value: unknown }) => Promise<void>;
}

/** A message a node sent to a child and awaits the answer of. */
interface Child {
  pending: Pending;
  /** The first position it covers, relative to the node's `lo`. */
  a: number;
  /** The end of the positions it covers. */
  b: number;
  /** Whether its message went through the transport (not handed over on this host). */
  remote: boolean;
  /** Whether its message was written. */
  written: boolean;
}

/** The broadcast nodes of one host, sharing their bookkeeping. */
export class BroadcastNodes {
  readonly #hostId: string;
  /** Child message id → what it is awaited for. */
  readonly #children = new Map<string, Child>();
  readonly #dead = new Map<number, string>();
  /** Hosts known to be dead: nodes placed there never answer. */
  readonly #deadHosts = new Map<string, string>();
  /** The most replies one node's inbox received for one broadcast. */
  maxRepliesPerBroadcast = 0;

  constructor(hostId: string) {
    this.#hostId = hostId;
  }

  /** The actor of node `node`. */
  actor(node: number): ActorDefinition {
    return defineActor({
      sharesContent: true,
      handlers: {
        broadcast: (request: BroadcastRequest, ctx) => this.#forward(request, ctx),
        reply: (reply: Reply, ctx) => this.#collect(reply, ctx),
      },
      control: {
        died: (content: Died) => this.died(content),
        restarted: (content: Restarted) => this.restarted(content),
        stats: (): BroadcastNodeStats => ({
          maxRepliesPerBroadcast: this.maxRepliesPerBroadcast,
          node,
          inFlight: new Set([...this.#children.values()].map((c) => c.pending)).size,
          children: this.#children.size,
          hostId: this.#hostId,
        }),
      },
      dataLost: (reason) => this.#lost(reason),
    });
  }

  /**
   * The transport lost what its server held: what this host's nodes wrote to it, and the
   * answers they await through it, may be gone. Those parts fail, with `kind: "lost"` and the
   * reason as the message; parts handed over on this host, and those still being written, are
   * still coming. The nodes of one host share their bookkeeping, so the first call does it all.
   */
  #lost(reason: string): void {
    const error = { name: "TransportDataLostError", message: reason };
    for (const [childId, child] of [...this.#children]) {
      if (child.remote && child.written) this.#fill(childId, { ok: false, error }, "lost");
    }
  }

  async #forward(request: BroadcastRequest, ctx: ActorContext): Promise<void> {
    // Thrown before the reply is deferred, a bad request is answered with the error at once.
    checkRequest(request);
    const { lo, hi, fanout, targets, hosts, operation } = request;
    for (const [engineId, reason] of Object.entries(request.dead ?? {})) {
      if (!this.#dead.has(Number(engineId))) this.#dead.set(Number(engineId), reason);
    }
    const size = hi - lo;
    if (request.keepMs && !ctx.local && this.#hostId !== request.hub) {
      ctx.keepReply(resultKey(ctx.system.namespace, ctx.envelope.id), request.keepMs);
    }
    const reply = ctx.deferReply();
    const { id, deadline } = ctx.envelope;
    // Sub-broadcast ids extend their parent's: the root's id names the whole broadcast (the call).
    const call = id.split(".")[0];
    // A node handles one range of a broadcast (see the module's doc), so the replies of one
    // pending range are all its inbox gets of that broadcast.
    const pending: Pending = { request, parts: new Array(size), waiting: 0, replies: 0, reply };
    const scatter = operation.scatter;
    const span = request.scatterSpan ??
      (scatter ? { length: scatter.sequence.length, offset: 0 } : undefined);
    // The items of the scatter that go to the targets at positions [from, to).
    const items = (from: number, to: number) => {
      const start = partitionBounds(span!.length, from, request.size)[0] - span!.offset;
      const end = partitionBounds(span!.length, to, request.size)[0] - span!.offset;
      return (scatter!.sequence as unknown as { slice(a: number, b: number): Sequence }).slice(
        start,
        end,
      );
    };
    const messages = [];
    for (const [c, [a, b]] of chunkBounds(size, fanout, hosts).entries()) {
      // A sub-broadcast's id extends its parent's. An engine's message is named after the call
      // (the root's id) and the engine, as a DirectView names it (`engineMessageId`), so that the
      // client can abort it and fetch its result without knowing the tree.
      const childId = b - a === 1 ? `${call}_${targets[a]}` : `${id}.${c}`;
      if (b - a === 1) {
        const position = lo + a;
        const engineId = targets[a];
        const died = this.#dead.get(engineId);
        if (died !== undefined) {
          pending.parts[a] = diedPart(engineId, died);
          continue;
        }
        const content = scatter
          ? chunkContent(operation.content, scatter, items(position, position + 1))
          : operation.content;
        messages.push({
          to: `engine.${engineId}`,
          type: operation.type,
          content,
          options: { id: childId, replyTo: ctx.self, from: ctx.self, deadline },
        });
      } else if (this.#rangeDead(targets.slice(a, b), sliceRuns(hosts, a, b), request.hub)) {
        // Every engine of a range on a dead host is dead.
        const on = sliceRuns(hosts, a, b);
        for (let i = a; i < b; i++) pending.parts[i] = this.#diedOnHost(targets[i], on);
        continue;
      } else {
        const child: BroadcastRequest = {
          ...request,
          targets: targets.slice(a, b),
          hosts: sliceRuns(hosts, a, b),
          lo: lo + a,
          hi: lo + b,
        };
        if (scatter) {
          child.operation = {
            ...operation,
            scatter: { ...scatter, sequence: items(lo + a, lo + b) },
          };
          child.scatterSpan = {
            length: span!.length,
            offset: partitionBounds(span!.length, lo + a, request.size)[0],
          };
        }
        messages.push({
          to: broadcastAddress(
            placeRange(child.hosts, request.hub),
            nodeFor(child.lo, child.hi, fanout, child.hosts),
          ),
          type: "broadcast",
          content: child,
          options: { id: childId, replyTo: ctx.self, from: ctx.self, deadline },
        });
      }
      const remote = !ctx.system.deliversLocally(messages[messages.length - 1].to);
      this.#children.set(childId, { pending, a, b, remote, written: false });
      pending.waiting++;
    }
    if (pending.waiting === 0) return this.#finish(pending);
    try {
      await ctx.system.sendMany(messages);
      for (const m of messages) {
        const child = this.#children.get(m.options.id);
        if (child) child.written = true;
      }
    } catch (error) {
      for (const m of messages) {
        this.#fill(m.options.id, { ok: false, error: errorData(error) }, "transport");
      }
    }
  }

  #collect(reply: Reply, ctx: ActorContext): void {
    const childId = ctx.envelope.parent;
    const child = this.#children.get(childId ?? "");
    if (!childId || !child) return;
    const replies = ++child.pending.replies;
    if (replies > this.maxRepliesPerBroadcast) this.maxRepliesPerBroadcast = replies;
    this.#fill(childId, reply, "engine");
  }

  #fill(childId: string, reply: Reply, kind: "engine" | "transport" | "died" | "lost"): void {
    const child = this.#children.get(childId);
    if (child === undefined) return; // late answer of a child already failed
    this.#children.delete(childId);
    const { pending, a, b } = child;
    const { targets } = pending.request;
    if (reply.ok && !isAnswer(reply.value, b - a)) {
      reply = {
        ok: false,
        error: { name: "TypeError", message: `Malformed answer to broadcast part ${childId}` },
      };
    }
    if (reply.ok && b - a === 1 && !Array.isArray(reply.value)) {
      pending.parts[a] = { engineId: targets[a], result: reply.value as EngineResult };
    } else if (reply.ok) {
      (reply.value as BroadcastPart[]).forEach((part, i) => (pending.parts[a + i] = part));
    } else {
      for (let i = a; i < b; i++) {
        pending.parts[i] = { engineId: targets[i], error: { ...reply.error, kind } };
      }
    }
    if (--pending.waiting === 0) this.#finish(pending);
  }

  #finish(pending: Pending): Promise<void> {
    return pending.reply({ value: pending.parts });
  }

  /**
   * Whether the node of a range would never answer: its host is known dead, or every engine of
   * the range is (a hub started after a host died knows of it only from the request's `dead`).
   */
  #rangeDead(targets: readonly number[], hosts: readonly [string, number][], hub: string): boolean {
    const place = placeRange(hosts, hub);
    if (this.#deadHosts.has(place)) return true;
    return place !== hub && targets.every((engineId) => this.#dead.has(engineId));
  }

  /** The part of an engine of a range on a host that died. */
  #diedOnHost(engineId: number, hosts: readonly [string, number][]): BroadcastPart {
    const reason = this.#dead.get(engineId) ?? this.#deadHosts.get(hosts[0][0]) ?? "its host died";
    return diedPart(engineId, reason);
  }

  /** Engines `content.engineIds` (and hosts `content.hostIds`) run again. */
  restarted(content: Restarted): void {
    for (const engineId of content.engineIds) this.#dead.delete(engineId);
    // A host taken for dead whose heartbeats resumed: its nodes answer again.
    for (const hostId of content.hostIds ?? []) this.#deadHosts.delete(hostId);
  }

  /** Engines (and hosts) died: their parts, now and in later broadcasts, fail with it. */
  died(content: Died): void {
    for (const engineId of content.engineIds) this.#dead.set(engineId, content.reason);
    for (const hostId of content.hostIds ?? []) this.#deadHosts.set(hostId, content.reason);
    for (const [childId, { pending, a, b }] of [...this.#children]) {
      const { targets, hosts } = pending.request;
      const engineId = targets[a];
      if (b - a === 1 && content.engineIds.includes(engineId)) {
        const reason = this.#dead.get(engineId)!;
        this.#fill(childId, {
          ok: false,
          error: { name: "EngineDiedError", message: `Engine ${engineId} died: ${reason}` },
        }, "died");
      } else if (
        b - a > 1 && this.#deadHosts.has(placeRange(sliceRuns(hosts, a, b), pending.request.hub))
      ) {
        // The node of a range on one host died with it, and so did the range's engines.
        const on = sliceRuns(hosts, a, b);
        const parts = targets.slice(a, b).map((engineId) => this.#diedOnHost(engineId, on));
        this.#fill(childId, { ok: true, value: parts }, "died");
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
  const { lo, hi, size, fanout, targets, hosts, operation, scatterSpan } = request;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > size || lo >= hi) {
    fail(`bad range [${lo}, ${hi}) of ${size} targets`);
  }
  if (
    !Array.isArray(targets) || targets.length !== hi - lo || !targets.every(Number.isInteger)
  ) fail("bad targets");
  if (new Set(targets).size !== targets.length) fail("a target is listed twice");
  if (
    !Array.isArray(hosts) ||
    !hosts.every((run) =>
      Array.isArray(run) && typeof run[0] === "string" && Number.isInteger(run[1]) && run[1] > 0
    ) ||
    hosts.reduce((n, run) => n + run[1], 0) !== targets.length
  ) fail("bad hosts");
  if (typeof request.hub !== "string") fail("bad hub");
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
