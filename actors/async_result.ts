/**
 * The handle on a call in flight on several engines.
 *
 * @module
 */
import { CompositeError, RemoteError, TimeoutError } from "../errors.ts";
import type { EngineResult } from "./engine.ts";

/** One engine's outcome as the client sees it: its result record, or why there is none. */
export type Outcome =
  | { engineId: number; result: EngineResult }
  | { engineId: number; error: Error };

/** Options of {@linkcode AsyncResult.get}. */
export interface GetOptions {
  /** Give up after this many ms with a `TimeoutError`; the call goes on on the engines. */
  timeout?: number;
  /** Give up when this signal aborts. */
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
 * (several did).
 */
export class AsyncResult<T = unknown> implements PromiseLike<T[]> {
  /** The engines the call went to, in target order. */
  readonly engineIds: readonly number[];
  /** The id of the call. */
  readonly id: string;
  readonly #outcomes: Promise<Outcome>[];
  readonly #settled: (Outcome | undefined)[];
  readonly #submitted: number;
  readonly #all: Promise<Outcome[]>;
  readonly #onAbort: () => void;
  #finished: number | undefined;

  /** @internal Built by views; `outcomes` resolve (never reject) in target order. */
  constructor(
    id: string,
    engineIds: readonly number[],
    outcomes: Promise<Outcome>[],
    onAbort: () => void = () => {},
  ) {
    this.id = id;
    this.engineIds = engineIds;
    this.#submitted = Date.now();
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
    if (this.ready()) return true;
    await withDeadline(this.#all, timeout, undefined).catch(() => {});
    return this.ready();
  }

  /** The engines' values in target order (or their errors, with `returnExceptions`). */
  get(options: GetOptions & { returnExceptions: true }): Promise<(T | Error)[]>;
  /** The engines' values in target order; throws the engine's error, or a `CompositeError`. */
  get(options?: GetOptions): Promise<T[]>;
  async get(options: GetOptions = {}): Promise<(T | Error)[]> {
    const outcomes = await withDeadline(
      this.#all,
      options.timeout ?? Infinity,
      options.signal,
      () => this.engineIds.filter((_, i) => this.#settled[i] === undefined),
    );
    const values = outcomes.map(valueOf);
    if (options.returnExceptions) return values as (T | Error)[];
    const errors = values.filter((v): v is Error => v instanceof Error);
    if (errors.length === 1) throw errors[0];
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

  /** Cancels the call on engines that have not started it yet. */
  abort(): void {
    this.#onAbort();
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
  return result.error ? new RemoteError(result.engineId, result.error) : result.value;
}

function withDeadline<T>(
  promise: Promise<T>,
  timeout: number,
  signal: AbortSignal | undefined,
  missing: () => number[] = () => [],
): Promise<T> {
  if (!Number.isFinite(timeout) && !signal) return promise;
  if (signal?.aborted) return Promise.reject(signal.reason);
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
    const onAbort = () => done(() => reject(signal!.reason));
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    promise.then((v) => done(() => resolve(v)), (e) => done(() => reject(e)));
  });
}
