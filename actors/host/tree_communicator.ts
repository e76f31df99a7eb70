/**
 * Reductions between engines over a binary tree (IPython Parallel's `BinaryTreeCommunicator`).
 *
 * {@linkcode wireTree} lays a view's engines out with `bintree` and gives each engine a
 * {@linkcode TreeCommunicator}, `com` in its namespace. The communicator owns an actor,
 * `tree.<engineId>`, on the engine's host: its inbox is a stream of its own, apart from the task
 * inbox, and its handler only files what arrives. So an engine busy running the task that called
 * `com.reduce` still receives its children's values.
 *
 * One reduction moves at most one message into each inbox per child (on the way up) and one from
 * the parent (on the way down), and a parent's message only comes after the engine sent its own
 * value up: no inbox ever holds more than two unconsumed messages. `reduce` sends a small "done"
 * token down where `allreduce` sends the total, and the next reduction on an engine starts after
 * it: back-to-back reductions keep the bound too.
 *
 * Why this file is over 500 lines: a reduction's steps (gather, send down, wait, the peer watch
 * that pings the engines it waits for, failure and abort) all read and change the same
 * per-reduction slots of one communicator. What stands alone is split off: the messages
 * (`../protocol/tree_messages.ts`), the arithmetic (`_reduce.ts`), the timer wheel
 * (`_wake_after.ts`).
 *
 * @module
 */
import { EngineDiedError, TimeoutError, TransportClosedError } from "../../errors.ts";
import { type Bintree, childrenOf, rootOf } from "../protocol/topology.ts";
import { setImmediate } from "node:timers";
import { cloneValue } from "../../transport/codec.ts";
import { type ActorRuntime, defineActor } from "../core/actor.ts";
import { aliveAddress } from "../protocol/addresses.ts";
import type { TreeWiring } from "../protocol/messages.ts";
import type { AbortMessage, Carried, Cause, ValueMessage } from "../protocol/tree_messages.ts";
import { causeError, causeOf, combine, fold, type Reducer, unwrap } from "./_reduce.ts";
import { wakeAfter } from "./_wake_after.ts";
import { GROUP } from "../core/system_types.ts";

/**
 * Options of {@linkcode TreeCommunicator.reduce} and {@linkcode TreeCommunicator.allreduce}.
 *
 * @example An ordered sum of each engine's list
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.view().wireTree();
 * await client.view().execute(
 *   "total = await com.allreduce((a, b) => a + b, [rank, rank], { flat: false, ordered: true })",
 * );
 * assert.deepEqual(await client.view().pull("total"), [2, 2]);
 * ```
 */
export interface ReduceOptions {
  /**
   * `true`: `value` is one element. `false`: `value` is a list (an array, typed array or other
   * iterable), folded locally with `f` first; an empty list contributes nothing.
   * @default {true}
   */
  flat?: boolean;
  /**
   * Combine in rank order (the order of the wired view's engines), so that a non-commutative `f`
   * (string concatenation, matrix product) gives the sequential fold's answer. Without it values
   * are combined as they arrive, and `f` must be commutative as well as associative.
   * @default {false}
   */
  ordered?: boolean;
  /** How long the reduction may take on this engine, in ms. @default {30000} */
  timeout?: number;
}

/**
 * What a communicator measured about its inbox.
 *
 * @example What each communicator's inbox held
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.view().wireTree();
 * await client.view().execute("await com.allreduce((a, b) => a + b, 1); held = com.stats.maxHeld");
 * for (const held of await client.view().pull("held") as number[]) assert.ok(held <= 2);
 * ```
 */
export interface TreeStats {
  /** Tree messages (values, tokens, aborts) that arrived. */
  received: number;
  /**
   * The most messages ever held at once: those filed and not yet consumed by a reduction, plus the
   * one arriving.
   */
  maxHeld: number;
  /**
   * The most messages ever held at once counting the stream itself: the stream's backlog (entries
   * not yet handled) plus those filed and not yet consumed. `-1` unless wired with
   * `measureBacklog`.
   */
  maxBacklog: number;
}

/** What has arrived for one reduction. */
interface Slot {
  ups: Map<number, Carried>;
  down?: Carried;
  waiter?: { check: () => void; fail: (error: Error) => void; peers: readonly number[] };
}

const DEFAULT_TIMEOUT = 30_000;
/** The period of the liveness clock of {@linkcode TreeCommunicator}. */
const TICK_MS = 100;
const communicators = new WeakMap<ActorRuntime, Map<number, TreeCommunicator>>();

/**
 * One engine's end of a binary-tree interconnect: `com` in the namespace of every engine a
 * {@linkcode wireTree} call wired. Call `reduce` and `allreduce` from tasks, on every engine of the
 * tree, in the same order.
 *
 * @example The sum of every engine's rank, on every engine
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.view().wireTree();
 * await client.view().execute("total = await com.allreduce((a, b) => a + b, rank)");
 * assert.deepEqual(await client.view().pull("total"), [1, 1]);
 * ```
 */
export class TreeCommunicator {
  /** This engine's id. */
  readonly id: number;
  /** The parent's id, `null` on the root. */
  readonly parent: number | null;
  /** The children's ids, left first (zero, one or two). */
  readonly children: readonly number[];
  /** The root's id. */
  readonly root: number;
  /** The whole tree: the parent of every engine. */
  readonly tree: Bintree;
  /** This engine's position in rank order. */
  readonly rank: number;
  /** How many engines the tree has. */
  readonly size: number;
  /** The address of this engine's tree actor, `tree.<id>`. */
  readonly address: string;
  readonly #system: ActorRuntime;
  readonly #wiring: TreeWiring;
  readonly #stream: string;
  readonly #slots = new Map<number, Slot>();
  readonly #failures = new Map<number, Error>();
  readonly #dead = new Map<number, EngineDiedError>();
  readonly #stats: TreeStats;
  #seq = 0;
  #finished = 0;
  /** The last reduction started here: the next one starts once it is done on this engine. */
  #previous: { done: boolean; promise: Promise<void> } = {
    done: true,
    promise: Promise.resolve(),
  };
  #unconsumed = 0;
  #closed = false;
  /** Whether entries came through this engine's tree inbox since it was last trimmed. */
  #streamUsed = true;

  private constructor(system: ActorRuntime, id: number, wiring: TreeWiring) {
    this.id = id;
    this.tree = new Map(wiring.tree);
    if (!this.tree.has(id)) throw new RangeError(`Cannot wire engine ${id}: it is not in the tree`);
    this.parent = this.tree.get(id) ?? null;
    this.children = childrenOf(this.tree, id);
    this.root = rootOf(this.tree);
    this.rank = wiring.ids.indexOf(id);
    this.size = wiring.ids.length;
    this.address = `tree.${id}`;
    this.#system = system;
    this.#wiring = wiring;
    this.#stream = system.inboxOf(this.address);
    this.#stats = { received: 0, maxHeld: 0, maxBacklog: wiring.measureBacklog ? 0 : -1 };
  }

  /**
   * @internal Makes engine `id`'s communicator for `wiring` and starts its actor on `system`,
   * replacing the one an earlier wiring made.
   */
  static async wire(
    system: ActorRuntime,
    id: number,
    wiring: TreeWiring,
  ): Promise<TreeCommunicator> {
    let mine = communicators.get(system);
    if (!mine) communicators.set(system, mine = new Map());
    await mine.get(id)?.close();
    const com = new TreeCommunicator(system, id, wiring);
    // No tree traffic flows before every engine is wired: what is left is an old wiring's.
    await system.transport.trim(com.#stream, 0);
    system.spawn(com.address, com.#actor());
    mine.set(id, com);
    return com;
  }

  /** Whether this engine is the root. */
  get isRoot(): boolean {
    return this.parent === null;
  }

  /** What this communicator measured about its inbox so far. */
  get stats(): TreeStats {
    return { ...this.#stats };
  }

  /**
   * Reduces `value` over the tree with `f`: each engine combines its own value with its
   * children's and sends the result to its parent. Resolves, on the root, to the total; on any
   * other engine, to its subtree's partial value.
   *
   * @throws {TimeoutError} when a peer's value does not come within `timeout`.
   * @throws {EngineDiedError} when an engine of the tree died, naming it.
   * @throws {RemoteError} when `f` threw on another engine, naming it.
   */
  reduce<T>(f: (a: T, b: T) => T, value: unknown, options: ReduceOptions = {}): Promise<T> {
    return this.#reduce(f as Reducer, value, options, false) as Promise<T>;
  }

  /**
   * Reduces like {@linkcode reduce}, then sends the root's total back down the tree: resolves to
   * the total on every engine, each engine's its own copy. On the way up, a typed array `f`
   * returned (a new one, not an argument a variable still holds) goes to a parent on the same
   * host without a copy: `f` must not change a result after returning it.
   *
   * @throws {TimeoutError} when a peer's value does not come within `timeout`.
   * @throws {EngineDiedError} when an engine of the tree died, naming it.
   * @throws {RemoteError} when `f` threw on another engine, naming it.
   */
  allreduce<T>(f: (a: T, b: T) => T, value: unknown, options: ReduceOptions = {}): Promise<T> {
    return this.#reduce(f as Reducer, value, options, true) as Promise<T>;
  }

  /** Stops the tree actor; reductions still waiting fail with `TransportClosedError`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new TransportClosedError(`Cannot reduce on engine ${this.id}: com was closed`);
    for (const slot of this.#slots.values()) slot.waiter?.fail(error);
    if (communicators.get(this.#system)?.get(this.id) === this) {
      communicators.get(this.#system)!.delete(this.id);
    }
    await this.#system.stopActor(this.address);
  }

  async #reduce(
    f: Reducer,
    value: unknown,
    options: ReduceOptions,
    all: boolean,
  ): Promise<unknown> {
    if (typeof f !== "function") throw new TypeError("Cannot reduce: f must be a function");
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    if (!(timeout > 0)) {
      throw new RangeError(`Cannot reduce: timeout must be positive, got ${timeout}`);
    }
    if (this.#closed) {
      throw new TransportClosedError(`Cannot reduce on engine ${this.id}: com was closed`);
    }
    const deadline = Date.now() + timeout;
    const seq = ++this.#seq;
    const previous = this.#previous;
    let finished!: () => void;
    const current = {
      done: false,
      promise: new Promise<void>((resolve) => finished = resolve).then(() => {
        current.done = true;
      }),
    };
    this.#previous = current;
    let background = false;
    try {
      if (!previous.done) await this.#untilPrevious(previous.promise, deadline, timeout);
      const failed = this.#failures.get(seq);
      if (failed) throw failed;
      const dead = await this.#stillDead();
      if (dead) throw dead;
      const own: Carried = options.flat === false
        ? await fold(f, value, this.id)
        : { empty: false, value };
      const ordered = options.ordered ?? false;
      const partial = await this.#gather(seq, f, own, ordered, deadline, timeout);
      if (this.isRoot) {
        if (partial.empty && all) {
          throw new TypeError("Cannot reduce: every engine's list was empty");
        }
        this.#sendDown(seq, all ? partial : { empty: true });
        this.#finish(seq);
        return unwrap(partial);
      }
      // allreduce never returns the partial: one the reduction owns goes up without a copy.
      await this.#send(`tree.${this.parent}`, "up", seq, partial, all && partial.owned === true);
      const down = this.#receiveDown(seq, deadline, timeout);
      if (all) return unwrap(await down);
      background = true;
      down.catch(() => {}).finally(finished);
      return unwrap(partial);
    } catch (error) {
      this.#fail(seq, error as Error);
      this.#finish(seq);
      throw error;
    } finally {
      if (!background) finished();
    }
  }

  async #untilPrevious(previous: Promise<void>, deadline: number, timeout: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() =>
        reject(
          new TimeoutError(
            `Cannot reduce on engine ${this.id}: the previous reduction did not finish ` +
              `within ${timeout} ms`,
            timeout,
          ),
        ), Math.max(0, deadline - Date.now()));
    });
    try {
      await Promise.race([previous, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Combines `own` with the children's values as they come (in order when `ordered`). */
  async #gather(
    seq: number,
    f: Reducer,
    own: Carried,
    ordered: boolean,
    deadline: number,
    timeout: number,
  ): Promise<Carried> {
    let acc = own;
    const pending = [...this.children];
    while (pending.length > 0) {
      const waitingFor = ordered ? [pending[0]] : pending;
      await this.#wait(
        seq,
        (slot) => waitingFor.some((c) => slot.ups.has(c)),
        waitingFor,
        deadline,
        timeout,
      );
      const slot = this.#slots.get(seq)!;
      for (const child of [...waitingFor]) {
        const got = slot.ups.get(child);
        if (!got) continue;
        slot.ups.delete(child);
        this.#unconsumed--;
        pending.splice(pending.indexOf(child), 1);
        acc = await combine(f, acc, got);
      }
    }
    return acc;
  }

  /** Waits for the parent's message, then passes it on to the children. */
  async #receiveDown(seq: number, deadline: number, timeout: number): Promise<Carried> {
    try {
      await this.#wait(seq, (slot) => slot.down !== undefined, [this.parent!], deadline, timeout);
      const slot = this.#slots.get(seq)!;
      const down = slot.down!;
      slot.down = undefined;
      this.#unconsumed--;
      this.#sendDown(seq, down);
      return down;
    } catch (error) {
      this.#fail(seq, error as Error);
      throw error;
    } finally {
      this.#finish(seq);
    }
  }

  /**
   * Sends `carried` to the children, without waiting for the writes: this engine is done with the
   * reduction, and a write that fails fails the reduction on the children (they are told). First
   * drops the consumed entries of this engine's inbox, if any came through the transport: nothing
   * new can arrive for this tree until the children have it (one newer entry is kept: an abort
   * the parent may have sent meanwhile).
   */
  #sendDown(seq: number, carried: Carried): void {
    if (this.#streamUsed) {
      this.#streamUsed = false;
      this.#system.transport.trim(this.#stream, 1).catch(() => {});
    }
    if (this.children.length === 0) return;
    const content = this.#message(seq, carried); // one object: encoded once for both children
    const remote = this.children.filter((c) => !this.#system.deliversLocally(`tree.${c}`));
    const local = this.children.filter((c) => this.#system.deliversLocally(`tree.${c}`));
    const send = (children: readonly number[], content: ValueMessage, handOver: boolean) =>
      this.#system.sendMany(children.map((child) => ({
        to: `tree.${child}`,
        type: "down",
        content,
        options: { from: this.address, handOver },
      }))).catch((error) =>
        this.#fail(seq, error, causeOf(error, this.id), this.parent ?? undefined)
      );
    if (remote.length === 0 || local.length === 0) return void send(this.children, content, false);
    send(remote, content, false);
    // The local child goes on down its subtree in this thread, one engine after another, before
    // the transport's client gets the turn of the event loop it writes in (both the port and the
    // Redis client write in a later turn): the remote child would wait for the whole subtree.
    // So the local child gets its copy now, and the copy once the write is out.
    let copy: ValueMessage;
    try {
      copy = cloneValue(content) as ValueMessage;
    } catch {
      return void send(local, content, false); // fails as the remote send does
    }
    setImmediate(() => send(local, copy, true));
  }

  async #send(
    to: string,
    type: string,
    seq: number,
    carried: Carried,
    handOver = false,
  ): Promise<void> {
    await this.#system.send(to, type, this.#message(seq, carried), {
      from: this.address,
      handOver,
    });
  }

  #message(seq: number, carried: Carried): ValueMessage {
    return carried.empty
      ? { wiring: this.#wiring.wiring, seq, from: this.id, empty: true }
      : { wiring: this.#wiring.wiring, seq, from: this.id, empty: false, value: carried.value };
  }

  /**
   * Waits until `ready(slot)` holds for reduction `seq`. Fails at `deadline` with
   * `TimeoutError`, when a peer in `peers` stops answering pings with `EngineDiedError`, and when
   * an abort for `seq` arrives with its error. Sends the failure on to the neighbours.
   */
  #wait(
    seq: number,
    ready: (slot: Slot) => boolean,
    peers: readonly number[],
    deadline: number,
    timeout: number,
  ): Promise<void> {
    const slot = this.#slot(seq);
    const failure = this.#failures.get(seq);
    if (failure) return Promise.reject(failure);
    if (this.#closed) {
      return Promise.reject(
        new TransportClosedError(`Cannot reduce on engine ${this.id}: com was closed`),
      );
    }
    if (ready(slot)) return Promise.resolve();
    for (const peer of peers) {
      const dead = this.#dead.get(peer);
      if (dead) return Promise.reject(dead);
    }
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        cancelWake();
        clearTimeout(timer);
        unwatch();
        slot.waiter = undefined;
        if (error) reject(error);
        else resolve();
      };
      slot.waiter = { check: () => ready(slot) && settle(), fail: settle, peers };
      const timeUp = () => {
        const missing = [...peers];
        const message = `Cannot reduce on engine ${this.id}: no value from engine${
          missing.length === 1 ? "" : "s"
        } ${missing.join(", ")} within ${timeout} ms`;
        settle(new TimeoutError(message, timeout, missing));
      };
      const died = (dead: number) => {
        const error = new EngineDiedError(
          dead,
          `it did not answer a ping within ${this.#wiring.livenessMs} ms while engine ` +
            `${this.id} waited for it in reduction ${seq}`,
        );
        this.#dead.set(dead, error);
        settle(error);
      };
      // Most waits end within milliseconds: no timer of their own until the first heartbeat,
      // and only then the deadline timer and the liveness watch.
      let unwatch = () => {};
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cancelWake = wakeAfter(
        Math.max(0, Math.min(this.#wiring.heartbeatMs, deadline - Date.now())),
        () => {
          if (Date.now() >= deadline) return timeUp();
          timer = setTimeout(timeUp, deadline - Date.now());
          unwatch = this.#watch(peers, 0, died);
        },
      );
    });
  }

  /**
   * The error of an engine taken for dead by an earlier reduction that still does not answer a
   * ping. One that answers was only slow (its host was busy longer than `livenessMs`): it is
   * forgiven, so that a false alarm does not break the tree for good.
   */
  async #stillDead(): Promise<EngineDiedError | undefined> {
    if (this.#dead.size === 0) return undefined;
    const suspects = [...this.#dead.keys()];
    const silent = await new Promise<number | undefined>((resolve) => {
      const unwatch = this.#watch(suspects, 0, (peer) => {
        unwatch();
        resolve(peer);
      }, () => {
        unwatch();
        resolve(undefined);
      });
    });
    if (silent === undefined) this.#dead.clear();
    return silent === undefined ? undefined : this.#dead.get(silent);
  }

  /**
   * Watches `peers`: after `afterMs` it pings them, and again `heartbeatMs` after each round is
   * fully answered (then `onAnswered` is called); `onDead` gets the first peer whose ping stays
   * unanswered for `livenessMs`. Both durations run on a clock that advances only while this
   * event loop is responsive (ticks of `TICK_MS`, each counted at most twice) and the transport
   * answers (a tick counts when a probe, a read of a key nobody writes, came back since the one
   * before): a host starved by load or by long synchronous work, or a transport that stalls (the
   * embedded transport's thread blocked, Redis paused), is not taken for a peer's death.
   * Returns the function that stops watching.
   */
  #watch(
    peers: readonly number[],
    afterMs: number,
    onDead: (peer: number) => void,
    onAnswered?: () => void,
  ): () => void {
    const { heartbeatMs, livenessMs } = this.#wiring;
    let waited = 0;
    let last = performance.now();
    let nextPing = afterMs;
    let sentAt: number | undefined;
    let unanswered = new Set<number>();
    let stopped = false;
    let probing = false;
    let probed = true;
    const probe = () => {
      if (probing) return;
      probing = true;
      this.#system.transport.getBlob(`${this.#stream}:probe`).then(() => {
        probed = true;
      }, () => {}).finally(() => probing = false);
    };
    const ping = () => {
      sentAt = waited;
      const round = unanswered = new Set(peers);
      for (const peer of peers) {
        this.#system.ask(aliveAddress(peer), "ping", undefined, {
          timeout: livenessMs * 10,
          from: this.address,
        }).then(() => {
          round.delete(peer);
          if (round.size > 0 || round !== unanswered || stopped) return;
          sentAt = undefined;
          nextPing = waited + heartbeatMs;
          onAnswered?.();
        }, () => {});
      }
    };
    const timer = setInterval(() => {
      const now = performance.now();
      if (probed) waited += Math.min(now - last, 2 * TICK_MS);
      probed = false;
      last = now;
      probe();
      if (sentAt === undefined) {
        if (waited >= nextPing) ping();
      } else if (waited - sentAt >= livenessMs && unanswered.size > 0) {
        onDead(unanswered.values().next().value!);
      }
    }, TICK_MS);
    if (afterMs === 0) ping();
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }

  /**
   * Records that reduction `seq` failed here with `error` and tells the neighbours (but not
   * `except`, the one the failure came from) so they fail at once instead of at their deadline.
   */
  #fail(seq: number, error: Error, cause: Cause = causeOf(error, this.id), except?: number): void {
    if (this.#failures.has(seq)) return;
    this.#failures.set(seq, error);
    // Engines taken for dead are told too: one that was only slow then stops waiting at once.
    const neighbours = [...(this.parent === null ? [] : [this.parent]), ...this.children]
      .filter((n) => n !== except);
    if (neighbours.length === 0) return;
    const content: AbortMessage = { wiring: this.#wiring.wiring, seq, from: this.id, cause };
    this.#system.sendMany(neighbours.map((n) => ({
      to: `tree.${n}`,
      type: "abort",
      content,
      options: { from: this.address },
    }))).catch(() => {});
  }

  /** Marks reduction `seq` finished here: what still arrives for it is dropped. */
  #finish(seq: number): void {
    this.#finished = Math.max(this.#finished, seq);
    const slot = this.#slots.get(seq);
    if (slot) {
      this.#unconsumed -= slot.ups.size + (slot.down ? 1 : 0);
      this.#slots.delete(seq);
    }
    for (const s of this.#failures.keys()) if (s < seq) this.#failures.delete(s);
  }

  #slot(seq: number): Slot {
    let slot = this.#slots.get(seq);
    if (!slot) this.#slots.set(seq, slot = { ups: new Map() });
    return slot;
  }

  /** The tree actor: files values and tokens for the reductions, handles aborts at once. */
  #actor() {
    const file = async (message: ValueMessage, direction: "up" | "down", local: boolean) => {
      this.#stats.received++;
      if (!local) this.#streamUsed = true;
      const held = this.#unconsumed;
      this.#stats.maxHeld = Math.max(this.#stats.maxHeld, held + 1);
      if (message?.wiring === this.#wiring.wiring && message.seq > this.#finished) {
        const slot = this.#slot(message.seq);
        const carried: Carried = message.empty
          ? { empty: true }
          : { empty: false, value: message.value, owned: true };
        if (
          direction === "up" && this.children.includes(message.from) && !slot.ups.has(message.from)
        ) {
          slot.ups.set(message.from, carried);
          this.#unconsumed++;
        } else if (direction === "down" && message.from === this.parent && !slot.down) {
          slot.down = carried;
          this.#unconsumed++;
        }
        slot.waiter?.check();
      }
      if (this.#wiring.measureBacklog) {
        // An entry read from the stream is still pending (acknowledged after the handler), so
        // it is counted in the backlog; one handed over locally is not in the stream.
        const backlog = await this.#system.transport.backlog(this.#stream, GROUP);
        this.#stats.maxBacklog = Math.max(
          this.#stats.maxBacklog,
          backlog + held + (local ? 1 : 0),
        );
      }
    };
    return defineActor({
      handlers: {
        up: (message: ValueMessage, ctx) => file(message, "up", ctx.local),
        down: (message: ValueMessage, ctx) => file(message, "down", ctx.local),
      },
      control: {
        // The client found an engine of this tree dead (its host crashed, stopped or got stuck):
        // waits on it fail at once, and the failure travels on as an abort.
        died: (message: { wiring: string; engineId: number; reason: string }) => {
          if (message?.wiring !== this.#wiring.wiring || !this.tree.has(message.engineId)) return;
          const error = new EngineDiedError(message.engineId, String(message.reason));
          this.#dead.set(message.engineId, error);
          for (const slot of this.#slots.values()) {
            if (slot.waiter?.peers.includes(message.engineId)) slot.waiter.fail(error);
          }
        },
        abort: (message: AbortMessage) => {
          this.#stats.received++;
          if (message?.wiring !== this.#wiring.wiring || message.seq <= this.#finished) return;
          if (this.#failures.has(message.seq)) return;
          const error = causeError(message);
          if (error instanceof EngineDiedError) this.#dead.set(error.engineId, error);
          this.#fail(message.seq, error, message.cause, message.from);
          this.#slots.get(message.seq)?.waiter?.fail(error);
        },
      },
    });
  }
}
