/**
 * The handle on a call in flight on several engines.
 *
 * @module
 */
import { checkTimerRange } from "./_timer_range.ts";
import { CompositeError, RemoteError, TaskAbortedError, TimeoutError } from "../../errors.ts";
import type { EngineResult } from "../protocol/results.ts";
import { waitInteractive, type WaitInteractiveOptions } from "./wait_interactive.ts";
import { displayAsyncResult } from "./_jupyter_display.ts";

/**
 * One engine's outcome as the client sees it: its result record, or why there is none.
 *
 * @example A value or an error, per engine
 * ```ts
 * import type { Outcome } from "../../mod.ts";
 *
 * function describe(outcome: Outcome): string {
 *   return "result" in outcome
 *     ? `engine ${outcome.engineId} printed ${outcome.result.stdout.length} characters`
 *     : `engine ${outcome.engineId} failed: ${outcome.error.message}`;
 * }
 * ```
 */
export type Outcome =
  | { engineId: number; result: EngineResult }
  | { engineId: number; error: Error };

/**
 * Options of {@linkcode AsyncResult.get}.
 *
 * @example Errors in place of values
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const ar = client.view().apply(() => {
 *   throw new Error("no");
 * });
 * const values = await ar.get({ timeout: 10_000, returnExceptions: true });
 * assert.ok(values.every((v) => v instanceof Error));
 * ```
 */
export interface GetOptions {
  /** Give up after this many ms with a `TimeoutError`; the call goes on on the engines. */
  timeout?: number;
  /**
   * Cancel the call when this signal aborts before every engine answered: `get` rejects with the
   * signal's reason at once, and the engines skip the call if it has not started (as with
   * {@linkcode AsyncResult.abort}).
   */
  signal?: AbortSignal;
  /** Return each engine's error in place of its result instead of throwing. */
  returnExceptions?: boolean;
}

/**
 * What a view's calls resolve to: `"list"`, the values of its engines in target order, or
 * `"one"`, the one engine's bare value (a view made from one integer id, IPython Parallel's
 * `rc[2]`).
 *
 * @example A view on one id resolves to a bare value
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const one = client.view(0).apply(() => 1);
 * const shape: "one" = one.shape;
 * assert.equal(shape, "one");
 * assert.equal(await one, 1);
 * ```
 */
export type Shape = "list" | "one";

/**
 * The values of a call of shape `S` whose engines each give a `T`.
 *
 * @example The value type of a call of each shape
 * ```ts
 * import type { Shaped } from "../../mod.ts";
 *
 * const one: Shaped<"one", number> = 1;
 * const list: Shaped<"list", number> = [1, 2];
 * ```
 */
export type Shaped<S extends Shape, T> = S extends "one" ? T : T[];

/**
 * One engine's timing for a call.
 *
 * @example When each engine ran a call
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const ar = client.view().apply(() => 1);
 * await ar.get();
 * for (const timing of ar.timings) assert.ok(timing.completed! >= timing.started!);
 * ```
 */
export interface EngineTiming {
  /** The engine. */
  engineId: number;
  /** When the client sent the call (ms since the epoch). */
  submitted: number;
  /** When the engine started it, if it did. */
  started?: number;
  /** When the engine finished it, if it did. */
  completed?: number;
}

/**
 * The results of a call on several engines, in the order of its targets. Awaiting it is the same
 * as `get()`: the engines' values, or a `RemoteError` (one engine failed) or `CompositeError`
 * (several did). A task aborted before it started fails with `TaskAbortedError`, one that missed
 * the call's deadline with `TimeoutError`, each naming its engine.
 *
 * A call of a view made from one integer id (`client.view(2)`) has the shape `"one"`: `get()`
 * and awaiting give that engine's bare value (IPython Parallel's `rc[2].apply(f)` gives `42`, not
 * `[42]`); `getDict()`, `stdout`, `stderr`, `timings` and async iteration keep their per-engine
 * shape. A view made from a list of ids, even of one, gives lists.
 *
 * @example One engine's value, bare
 * ```ts ignore
 * const answer = await client.view(2).apply(() => 42); // 42
 * const listed = await client.view([2]).apply(() => 42); // [42]
 * ```
 */
export class AsyncResult<T = unknown, S extends Shape = "list">
  implements PromiseLike<Shaped<S, T>> {
  /** The engines the call went to, in target order. */
  readonly engineIds: readonly number[];
  /**
   * The id of the call: pass it to `client.getResult(id)` (on this client or another one
   * connected to the cluster) to fetch the results again while they are retained.
   */
  readonly id: string;
  /** `"one"` when `get()` gives one engine's bare value, `"list"` when it gives a list. */
  readonly shape: S;
  readonly #outcomes: Promise<Outcome>[];
  readonly #settled: (Outcome | undefined)[];
  readonly #submitted: number;
  readonly #all: Promise<Outcome[]>;
  readonly #onAbort: () => void;
  #finished: number | undefined;

  /**
   * @internal Built by views; `outcomes` resolve (never reject) in target order. `submitted` is
   * when the call was sent (default: now).
   */
  constructor(
    id: string,
    engineIds: readonly number[],
    outcomes: Promise<Outcome>[],
    onAbort: () => void = () => {},
    submitted: number = Date.now(),
    shape: S = "list" as S,
  ) {
    if (shape === "one" && engineIds.length !== 1) {
      throw new RangeError(`Cannot make a one-engine result on ${engineIds.length} engines`);
    }
    this.id = id;
    this.shape = shape;
    this.engineIds = engineIds;
    this.#submitted = submitted;
    this.#settled = engineIds.map(() => undefined);
    this.#onAbort = onAbort;
    this.#outcomes = outcomes.map((p, i) =>
      p.then((outcome) => {
        this.#settled[i] = outcome;
        return outcome;
      })
    );
    this.#all = Promise.all(this.#outcomes).then((all) => {
      this.#finished = Date.now();
      return all;
    });
  }

  /** @internal The same call, its values in shape `shape`. */
  reshaped<S2 extends Shape>(shape: S2): AsyncResult<T, S2> {
    return new AsyncResult<T, S2>(
      this.id,
      this.engineIds,
      this.#outcomes,
      this.#onAbort,
      this.#submitted,
      shape,
    );
  }

  /** @internal The outcome of the engine at position `index` of the targets. */
  outcome(index: number): Promise<Outcome> {
    return this.#outcomes[index];
  }

  /** The notebook's rich display of the call's progress (Deno's Jupyter kernel calls it). */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return displayAsyncResult(this);
  }

  /** Whether every engine has answered. */
  ready(): boolean {
    return this.#finished !== undefined;
  }

  /** Waits until every engine answered or `timeout` ms passed; returns whether all answered. */
  async wait(timeout = Infinity): Promise<boolean> {
    checkTimerRange("wait for result", "timeout", timeout);
    if (this.ready()) return true;
    await withDeadline(this.#all, timeout, undefined).catch(() => {});
    return this.ready();
  }

  /**
   * {@linkcode wait} with a progress line, `"   2/8 tasks finished after    3 s"`, redrawn every
   * `interval` ms on stderr (or `output`) until the call is done or `timeout` ms passed
   * (IPython Parallel's `wait_interactive`). Resolves to whether the call is done.
   *
   * @example
   * ```ts ignore
   * const ar = client.view().apply(longTask);
   * await ar.waitInteractive(); // "   8/8 tasks finished after   12 s"
   * ```
   */
  waitInteractive(options?: WaitInteractiveOptions): Promise<boolean> {
    return waitInteractive(this, this.engineIds.length, options);
  }

  /**
   * The engines' values in target order (or their errors, with `returnExceptions`); the bare
   * value (or error) for shape `"one"`.
   */
  get(options: GetOptions & { returnExceptions: true }): Promise<Shaped<S, T | Error>>;
  /**
   * The engines' values in target order (the bare value for shape `"one"`); throws the engine's
   * error, or a `CompositeError`. When every failure is a `TimeoutError` (the call's deadline),
   * throws one `TimeoutError` naming all their engines; when they all are the same error (the
   * reason of an aborted `signal`), that one.
   */
  get(options?: GetOptions): Promise<Shaped<S, T>>;
  async get(options: GetOptions = {}): Promise<Shaped<S, T | Error>> {
    const values = await this.#values(options);
    return (this.shape === "one" ? values[0] : values) as Shaped<S, T | Error>;
  }

  /** The values in target order, as {@linkcode get} gives them for shape `"list"`. */
  async #values(options: GetOptions): Promise<(T | Error)[]> {
    checkTimerRange("get result", "timeout", options.timeout);
    const outcomes = await withDeadline(
      this.#all,
      options.timeout ?? Infinity,
      options.signal,
      () => this.engineIds.filter((_, i) => this.#settled[i] === undefined),
      () => this.abort(),
    );
    const values = outcomes.map(valueOf);
    if (options.returnExceptions) return values as (T | Error)[];
    const errors = [...new Set(values.filter((v): v is Error => v instanceof Error))];
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1 && errors.every((e) => e instanceof TimeoutError)) {
      const engines = errors.flatMap((e) => (e as TimeoutError).engineIds);
      const timeoutMs = Math.max(...errors.map((e) => (e as TimeoutError).timeoutMs));
      throw new TimeoutError(
        `Cannot get result: engines ${engines.join(", ")} did not finish within ${timeoutMs} ms`,
        timeoutMs,
        engines,
        { cause: new CompositeError(errors) },
      );
    }
    if (errors.length > 1) throw new CompositeError(errors);
    return values as T[];
  }

  /** The engines' values keyed by engine id. */
  async getDict(options: GetOptions = {}): Promise<Record<number, T>> {
    const values = await this.#values(options) as T[];
    return Object.fromEntries(this.engineIds.map((id, i) => [id, values[i]]));
  }

  /** Yields each engine's value (or error) as it arrives. */
  async *[Symbol.asyncIterator](): AsyncIterator<{ engineId: number; value: T | Error }> {
    const pending = new Map(this.#outcomes.map((p, i) => [i, p.then(() => i)]));
    while (pending.size > 0) {
      const i = await Promise.race(pending.values());
      pending.delete(i);
      const outcome = this.#settled[i]!;
      yield { engineId: outcome.engineId, value: valueOf(outcome) as T | Error };
    }
  }

  /**
   * Same as `get().then(…)`: awaiting an AsyncResult gives the values in target order (the bare
   * value for shape `"one"`).
   */
  then<R1 = Shaped<S, T>, R2 = never>(
    onfulfilled?: ((value: Shaped<S, T>) => R1 | PromiseLike<R1>) | null,
    // deno-lint-ignore no-explicit-any
    onrejected?: ((reason: any) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.get().then(onfulfilled, onrejected);
  }

  /**
   * Cancels the call on the engines that have not started it yet: they skip it, and their part
   * fails with `TaskAbortedError`. An engine already running it cannot be stopped (JavaScript has
   * no preemption): it finishes, and its result comes back as usual. To stop waiting at once, pass
   * a `signal` to the call or to `get()`.
   */
  abort(): void {
    if (!this.ready()) this.#onAbort();
  }

  /** What each engine printed to stdout, in target order (`""` where none, or not yet). */
  get stdout(): string[] {
    return this.#settled.map((o) => (o && "result" in o ? o.result.stdout : ""));
  }

  /** What each engine printed to stderr, in target order. */
  get stderr(): string[] {
    return this.#settled.map((o) => (o && "result" in o ? o.result.stderr : ""));
  }

  /** Each engine's timing, in target order. */
  get timings(): EngineTiming[] {
    return this.engineIds.map((engineId, i) => {
      const o = this.#settled[i];
      if (!o || !("result" in o)) return { engineId, submitted: this.#submitted };
      const { submitted, started, completed } = o.result;
      return { engineId, submitted, started, completed };
    });
  }

  /** How many engines have answered so far (IPython Parallel's `progress`). */
  get progress(): number {
    return this.#settled.filter((o) => o !== undefined).length;
  }

  /**
   * Whether every engine answered with a value, no error (IPython Parallel's `successful()`).
   *
   * @throws {RangeError} when the call is not ready yet: wait for it first.
   */
  successful(): boolean {
    if (!this.ready()) {
      throw new RangeError(`Cannot tell whether call ${this.id} succeeded: it is not ready`);
    }
    return this.#settled.every((o) => o !== undefined && "result" in o && !o.result.error);
  }

  /**
   * Ms from the first submission to the last completion over the engines that ran the call
   * (IPython Parallel's `wall_time`, in ms); `undefined` until every engine answered with a
   * timing. Compares the client's and the engines' clocks.
   */
  get wallTime(): number | undefined {
    const timings = this.#finishedTimings();
    if (!timings) return undefined;
    return Math.max(...timings.map((t) => t.completed)) -
      Math.min(...timings.map((t) => t.submitted));
  }

  /**
   * The ms the engines spent running the call, added up (IPython Parallel's `serial_time`, in
   * ms); `undefined` until every engine answered with a timing.
   */
  get serialTime(): number | undefined {
    const timings = this.#finishedTimings();
    if (!timings) return undefined;
    return timings.reduce((sum, t) => sum + (t.completed - t.started), 0);
  }

  /** Every engine's timing, once each answered with one. */
  #finishedTimings(): { submitted: number; started: number; completed: number }[] | undefined {
    if (!this.ready()) return undefined;
    const timings = [];
    for (const o of this.#settled) {
      if (!o || !("result" in o)) return undefined;
      timings.push(o.result);
    }
    return timings;
  }

  /** Ms from submission until the last engine answered, or until now if some have not. */
  get elapsed(): number {
    return (this.#finished ?? Date.now()) - this.#submitted;
  }
}

function valueOf(outcome: Outcome): unknown {
  if ("error" in outcome) return outcome.error;
  const { result } = outcome;
  return result.error ? errorOf(result) : result.value;
}

/**
 * @internal The error of an engine's failed result: typed when the engine cancelled the task.
 */
export function errorOf(result: EngineResult): Error {
  const { engineId, error } = result;
  if (result.cancelled === "abort") return new TaskAbortedError(engineId);
  if (result.cancelled === "deadline") {
    const timeoutMs = Math.max(0, (result.deadline ?? result.submitted) - result.submitted);
    return new TimeoutError(error!.message, timeoutMs, [engineId]);
  }
  return new RemoteError(engineId, error!);
}

function withDeadline<T>(
  promise: Promise<T>,
  timeout: number,
  signal: AbortSignal | undefined,
  missing: () => number[] = () => [],
  onAbort: () => void = () => {},
): Promise<T> {
  if (!Number.isFinite(timeout) && !signal) return promise;
  if (signal?.aborted) {
    onAbort();
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const timer = Number.isFinite(timeout)
      ? setTimeout(() => {
        const engines = missing();
        done(() =>
          reject(
            new TimeoutError(
              `Cannot get result: engines ${
                engines.join(", ")
              } did not answer within ${timeout} ms`,
              timeout,
              engines,
            ),
          )
        );
      }, timeout)
      : undefined;
    const aborted = () => {
      onAbort();
      done(() => reject(signal!.reason));
    };
    signal?.addEventListener("abort", aborted, { once: true });
    const done = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
      settle();
    };
    promise.then((v) => done(() => resolve(v)), (e) => done(() => reject(e)));
  });
}
