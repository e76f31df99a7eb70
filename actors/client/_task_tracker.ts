/**
 * A client's side of task farming: the load-balanced calls in flight, their tasks and retries,
 * and what happens to the tasks a dead engine held (claimed from its consumer and sent again).
 *
 * @module
 */
import {
  EngineDiedError,
  RemoteError,
  TaskAbortedError,
  TaskError,
  TimeoutError,
} from "../../errors.ts";
import type { AsyncMapResult } from "./async_map_result.ts";
import type { Outcome } from "./async_result.ts";
import type { ViewHost } from "./_view_host.ts";
import type { FunctionSource, ModuleFunction } from "../protocol/wire_types.ts";
import type { EngineResult, MapItemResult } from "../protocol/results.ts";
import type { Nudge } from "../protocol/messages.ts";
import { TASK_GROUP, taskConsumer, taskReaderAddress } from "../protocol/addresses.ts";
import { taskAttemptId } from "../protocol/addresses.ts";

/** One task of a call: the items it carries and how many times it was sent before. */
interface Task {
  id: string;
  /** Which chunk of the call's items it carries (some of them, for a retry). */
  chunk: number;
  indices: number[];
  attempt: number;
  /** Whether its answer is awaited: it was written, or is being written. */
  expected?: boolean;
}

/** What a load-balanced call is made of. */
export interface TaskCallSpec {
  /** The call's id. */
  id: string;
  /** The address of the view's task stream. */
  address: string;
  /** The view's engines. */
  targets: readonly number[];
  /** The function, as it travels. */
  fn: FunctionSource | ModuleFunction;
  /** Each item's arguments. */
  items: unknown[][];
  /** Items per task. */
  chunksize: number;
  /** How many times a failed task is sent again. */
  retries: number;
  /** How many tasks an engine holds at once. */
  prefetch: number;
  /** The call's timeout, in ms (`Infinity`: none). */
  timeout: number;
  /** Cancels the call. */
  signal?: AbortSignal;
  /** Where the items' outcomes go. */
  result: AsyncMapResult<unknown>;
}

/** When the tasks of a dead engine are claimed, in ms after its death is known. */
const CLAIM_AFTER_MS = [0, 1200, 3000];
/** How often the task streams of calls in flight are trimmed of acknowledged tasks, in ms. */
const TRIM_MS = 2000;

/** Tasks in the first write of a map at least (more with more engines or prefetch). */
const FIRST_BATCH_MIN = 16;

/** Tasks in each later write of a map. */
const LATER_BATCH = 500;

/** One load-balanced call in flight. */
class TaskCall {
  readonly spec: TaskCallSpec;
  readonly tasks = new Map<string, Task>();
  readonly #tracker: TaskTracker;
  #left: number;
  #deadline: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #echo: (outcome: Outcome) => Outcome;

  constructor(tracker: TaskTracker, spec: TaskCallSpec) {
    this.#tracker = tracker;
    this.spec = spec;
    this.#echo = tracker.host.echoOutput();
    this.#left = spec.items.length;
    const { timeout, signal } = spec;
    if (Number.isFinite(timeout)) {
      this.#deadline = Date.now() + timeout;
      this.#timer = setTimeout(() => this.#failAll((task) => this.#timedOut(task)), timeout);
    }
    if (signal) {
      const onAbort = () => this.#failAll(() => signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#cleanups.push(() => signal.removeEventListener("abort", onAbort));
    }
  }

  readonly #cleanups: (() => void)[] = [];

  get host(): ViewHost {
    return this.#tracker.host;
  }

  /** The view's engines not known dead. */
  live(): number[] {
    return this.spec.targets.filter((e) => !this.host.deadEngine(e));
  }

  /** Sends the first task of every chunk. */
  start(): void {
    const { items, chunksize } = this.spec;
    const chunks: number[][] = [];
    for (let lo = 0; lo < items.length; lo += chunksize) {
      const indices = [];
      for (let i = lo; i < Math.min(items.length, lo + chunksize); i++) indices.push(i);
      chunks.push(indices);
    }
    this.send(chunks.map((indices, chunk) => ({ chunk, indices })), 0);
  }

  /** Sends one task per chunk of `chunks` (item indices), `attempt` being its try. */
  send(chunks: { chunk: number; indices: number[] }[], attempt: number): void {
    const { host, spec } = this;
    const live = this.live();
    if (live.length === 0) {
      const dead = host.deadEngine(spec.targets[0]) ??
        new EngineDiedError(spec.targets[0], "no engine of the view is alive");
      for (const { indices } of chunks) this.#settleAll(indices, dead);
      return;
    }
    const { system } = host;
    const tasks = chunks.map(({ chunk, indices }): Task => ({
      id: taskAttemptId(spec.id, chunk, attempt),
      chunk,
      indices,
      attempt,
    }));
    for (const task of tasks) {
      this.tasks.set(task.id, task);
      for (const i of task.indices) spec.result.attempted(i);
    }
    const nudge: Nudge = { stream: spec.address, engineIds: live, prefetch: spec.prefetch };
    const hosts = new Set(live.map((e) => host.hostOf(e)));
    const options = { replyTo: system.replyAddress, deadline: this.#deadline };
    const write = (tasks: Task[]) => {
      // A task failed before its turn (a timeout, an abort) is not sent.
      const batch = tasks.filter((task) => this.tasks.get(task.id) === task);
      if (batch.length === 0) return Promise.resolve();
      for (const task of batch) this.#expect(task);
      return system.sendMany([
        ...batch.map((task) => ({
          to: spec.address,
          type: "map",
          content: { fn: spec.fn, items: task.indices.map((i) => spec.items[i]) },
          options: { ...options, id: task.id },
        })),
        ...[...hosts].map((host) => ({
          to: taskReaderAddress(host),
          type: "nudge",
          content: nudge,
        })),
      ], { uncapped: true }).then(() => {}, (error) => {
        for (const task of batch) system.failReply(task.id, error);
      });
    };
    // The engines start on a first batch, enough for each to take a few, while the rest is
    // signed and written in batches, one after the other, each after a turn of the event loop
    // (on the embedded transport this thread also serves the engines' reads), and each with its
    // nudge, since an engine that found the stream empty reads again only when nudged.
    const first = Math.max(FIRST_BATCH_MIN, 2 * live.length * spec.prefetch);
    let written = write(tasks.slice(0, first));
    for (let lo = first; lo < tasks.length; lo += LATER_BATCH) {
      const batch = tasks.slice(lo, lo + LATER_BATCH);
      written = written.then(yieldTurn).then(() => write(batch));
    }
  }

  /** Waits for the answer to `task`, about to be written. */
  #expect(task: Task): void {
    task.expected = true;
    this.host.system.expectReply<EngineResult>(
      task.id,
      this.spec.address,
      Infinity,
      undefined,
      "map",
    )
      .then((result) => this.#answered(task, result), (error) => this.#failed(task, error));
  }

  /** A task's engine answered. */
  #answered(task: Task, result: EngineResult): void {
    if (this.tasks.get(task.id) !== task) return; // claimed from a dead engine and sent again
    this.tasks.delete(task.id);
    const { spec } = this;
    const { engineId } = result;
    this.#echo({ engineId, result });
    spec.result.output(task.indices[0], result.stdout, result.stderr);
    const again: number[] = [];
    const retry = task.attempt < spec.retries;
    if (result.error) {
      const error = result.error;
      for (const index of task.indices) {
        if (result.cancelled === "abort") {
          this.#settle(index, engineId, new TaskAbortedError(engineId));
        } else if (result.cancelled === "deadline") {
          this.#settle(index, engineId, new TimeoutError(error.message, spec.timeout, [engineId]));
        } else if (retry) again.push(index);
        else this.#settle(index, engineId, new TaskError(index, engineId, error));
      }
    } else {
      const values = result.value as MapItemResult[];
      task.indices.forEach((index, k) => {
        const item = values?.[k];
        if (item && "error" in item) {
          if (retry) again.push(index);
          else this.#settle(index, engineId, new TaskError(index, engineId, item.error));
        } else this.#settle(index, engineId, undefined, item?.value);
      });
    }
    if (again.length > 0) this.send([{ chunk: task.chunk, indices: again }], task.attempt + 1);
  }

  /** The wait for a task's answer failed (timeout, abort, an answer saying it failed, …). */
  #failed(task: Task, error: unknown): void {
    if (this.tasks.get(task.id) !== task) return;
    this.tasks.delete(task.id);
    if (error instanceof RemoteError) {
      // The engine (or its host) refused the task as a whole: a poison message, a bad shape.
      const data = { name: error.remoteName, message: error.remoteMessage };
      for (const index of task.indices) {
        this.#settle(index, error.engineId, new TaskError(index, error.engineId, data));
      }
      return;
    }
    const engineId = (error as { engineId?: number })?.engineId ?? -1;
    this.#settleAll(task.indices, error as Error, engineId);
  }

  /** Engine `engineId` died holding task `id` (claimed back from its consumer). */
  lost(id: string, engineId: number, reason: string): void {
    const task = this.tasks.get(id);
    if (!task) return;
    this.tasks.delete(id);
    this.host.system.failReply(id, new Error("sent again")); // ends the wait; dropped above
    if (task.attempt < this.spec.retries) {
      this.send([{ chunk: task.chunk, indices: task.indices }], task.attempt + 1);
      return;
    }
    const tries = task.attempt + 1;
    const error = new EngineDiedError(
      engineId,
      `${reason}, while it ran task ${task.indices.join(", ")} of call ${this.spec.id}` +
        ` (engines died under it ${tries} time${tries === 1 ? "" : "s"}; retries: ` +
        `${this.spec.retries})`,
    );
    this.#settleAll(task.indices, error, engineId);
  }

  /** No engine of the view is left: every task still out fails with `error`. */
  orphaned(error: EngineDiedError): void {
    if (this.live().length > 0) return;
    this.#failAll(() => error);
  }

  #timedOut(task: Task): Error {
    return new TimeoutError(
      `Cannot get result of task ${task.indices[0]}: no answer within ${this.spec.timeout} ms`,
      this.spec.timeout,
      [],
    );
  }

  /** Fails every task still out, each with `errorOf(task)`. */
  #failAll(errorOf: (task: Task) => Error): void {
    for (const task of [...this.tasks.values()]) {
      if (task.expected) this.host.system.failReply(task.id, errorOf(task));
      else this.#failed(task, errorOf(task));
    }
  }

  #settleAll(indices: number[], error: Error, engineId = -1): void {
    for (const index of indices) this.#settle(index, engineId, error);
  }

  #settle(index: number, engineId: number, error?: Error, value?: unknown): void {
    const { result } = this.spec;
    if (result.settled(index)) return;
    result.settle(error ? { index, engineId, error } : { index, engineId, value });
    if (--this.#left === 0) this.#done();
  }

  #done(): void {
    clearTimeout(this.#timer);
    for (const cleanup of this.#cleanups) cleanup();
    this.#tracker.finished(this);
  }

  /** Tells the engines of the view to skip this call's tasks they have not started. */
  abort(): void {
    const live = this.live();
    if (live.length === 0) return;
    this.host.system.sendMany(live.map((engineId) => ({
      to: `engine.${engineId}`,
      type: "abort",
      content: { id: this.spec.id },
    }))).catch(() => {});
  }
}

/** The load-balanced calls in flight on one client. */
export class TaskTracker {
  readonly host: ViewHost;
  readonly #calls = new Map<string, TaskCall>();
  /** Task streams (keys) written to since they were last trimmed. */
  readonly #streams = new Set<string>();
  #trim: ReturnType<typeof setInterval> | undefined;

  constructor(host: ViewHost) {
    this.host = host;
    host.events.addEventListener("enginedied", (event) => {
      const { engineId, reason } = (event as CustomEvent<{ engineId: number; reason: string }>)
        .detail;
      this.#engineDied(engineId, reason);
    });
  }

  /** Starts a call; returns a function that aborts it. */
  submit(spec: TaskCallSpec): () => void {
    const call = new TaskCall(this, spec);
    if (spec.items.length === 0) return () => {};
    this.#calls.set(spec.id, call);
    this.#streams.add(this.host.system.inboxOf(spec.address));
    if (!this.#trim) {
      this.#trim = setInterval(() => this.#trimStreams(), TRIM_MS);
      Deno.unrefTimer(this.#trim);
    }
    call.start();
    return () => call.abort();
  }

  /** @internal A call got every answer. */
  finished(call: TaskCall): void {
    this.#calls.delete(call.spec.id);
    if (this.#calls.size === 0) {
      clearInterval(this.#trim);
      this.#trim = undefined;
      this.#trimStreams();
    }
  }

  /** Deletes the acknowledged tasks of the streams written to. */
  #trimStreams(): void {
    const { transport } = this.host;
    for (const stream of this.#streams) {
      if (this.#calls.size === 0) this.#streams.delete(stream);
      transport.trimAcknowledged(stream, 0).catch(() => {/* trimmed at the next one */});
    }
  }

  /**
   * Engine `engineId` died: the tasks it held stay pending under its consumer. Claims them (now,
   * and again a little later, in case a read of the dead engine was still on its way) and hands
   * each to its call, which sends it again or fails it.
   */
  #engineDied(engineId: number, reason: string): void {
    if (this.#calls.size === 0) return;
    let hostId: string;
    try {
      hostId = this.host.hostOf(engineId);
    } catch {
      return;
    }
    const consumer = taskConsumer(hostId, engineId);
    const addresses = new Set([...this.#calls.values()].map((c) => c.spec.address));
    for (const after of CLAIM_AFTER_MS) {
      const timer = setTimeout(() => {
        for (const address of addresses) this.#claim(address, consumer, engineId, reason);
      }, after);
      if (after > 0) Deno.unrefTimer(timer);
    }
    const error = this.host.deadEngine(engineId) ?? new EngineDiedError(engineId, reason);
    for (const call of [...this.#calls.values()]) {
      if (call.spec.targets.includes(engineId)) call.orphaned(error);
    }
  }

  async #claim(address: string, consumer: string, engineId: number, reason: string) {
    const { system, transport } = this.host;
    const stream = system.inboxOf(address);
    let entries;
    try {
      entries = await transport.claimFrom(stream, TASK_GROUP, consumer, system.id, 1000);
      if (entries.length === 0) return;
      await transport.ack(stream, TASK_GROUP, entries.map((e) => e.id));
    } catch (error) {
      system.dispatchEvent(
        new ErrorEvent("error", { error, message: String((error as Error)?.message ?? error) }),
      );
      return;
    }
    for (const entry of entries) {
      let id: string;
      try {
        id = system.verify(entry.data!).id;
      } catch {
        continue; // not a task of this cluster
      }
      const call = this.#calls.get(id.slice(0, id.lastIndexOf("~")));
      call?.lost(id, engineId, reason);
    }
  }
}

/**
 * Resolves after the event loop's pending I/O and messages from other threads were handled. A
 * timer, not `setImmediate`: in Deno 2.9 a chain of immediates holds back `MessagePort` messages
 * (a host's reads waited 20–40 ms behind a map's writes); a timer of 0 lets them in, for about a
 * millisecond per batch.
 */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

const trackers = new WeakMap<ViewHost, TaskTracker>();

/** The task tracker of `client`, made on first use. */
export function taskTracker(host: ViewHost): TaskTracker {
  let tracker = trackers.get(host);
  if (!tracker) trackers.set(host, tracker = new TaskTracker(host));
  return tracker;
}
