/**
 * The handle on a call in flight on several engines.
 *
 * @module
 */
import { checkTimerRange } from "./_timer_range.ts";
import { CompositeError, RemoteError, TaskAbortedError, TimeoutError } from "../errors.ts";
import type { EngineResult } from "./engine.ts";

/** One engine's outcome as the client sees it: its result record, or why there is none. */
export type Outcome =
  | { engineId: number; result: EngineResult }
  | { engineId: number; error: Error };

/** Options of {@linkcode AsyncResult.get}. */
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

/** One engine's timing for a call. */
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
 */
export class AsyncResult<T = unknown> implements PromiseLike<T[]> {
  /** The engines the call went to, in target order. */
  readonly engineIds: readonly number[];
  /**
   * The id of the call: pass it to `client.getResult(id)` (on this client or another one
   * connected to the cluster) to fetch the results again while they are retained.
   */
  readonly id: string;
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
  ) {
    this.id = id;
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

  /** @internal The outcome of the engine at position `index` of the targets. */
  outcome(index: number): Promise<Outcome> {
    return this.#outcomes[index];
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

  /** The engines' values in target order (or their errors, with `returnExceptions`). */
  get(options: GetOptions & { returnExceptions: true }): Promise<(T | Error)[]>;
  /**
   * The engines' values in target order; throws the engine's error, or a `CompositeError`. When
   * every failure is a `TimeoutError` (the call's deadline), throws one `TimeoutError` naming all
   * their engines; when they all are the same error (the reason of an aborted `signal`), that one.
   */
  get(options?: GetOptions): Promise<T[]>;
  async get(options: GetOptions = {}): Promise<(T | Error)[]> {
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
    const values = await this.get(options);
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

  /** Same as `get().then(…)`: awaiting an AsyncResult gives the values in target order. */
  then<R1 = T[], R2 = never>(
    onfulfilled?: ((value: T[]) => R1 | PromiseLike<R1>) | null,
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

/** The error of an engine's failed result: typed when the engine cancelled the task. */
function errorOf(result: EngineResult): Error {
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
