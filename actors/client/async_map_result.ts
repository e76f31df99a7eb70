/**
 * The handle on a load-balanced call: per-task results, in input order or as they complete.
 *
 * @module
 */
import { CompositeError, TimeoutError } from "../../errors.ts";
import type { GetOptions } from "./async_result.ts";
import { waitInteractive, type WaitInteractiveOptions } from "./wait_interactive.ts";

/**
 * One item of a map as it came back: where it ran and its value, or why there is none.
 *
 * @example Items as they come, with the engine that ran them
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const items = client.loadBalancedView().map((x: number) => x + 1, [1, 2]);
 * for await (const item of items.items()) {
 *   if ("value" in item) assert.equal(item.value, [1, 2][item.index] + 1);
 * }
 * ```
 */
export type MapItem<T> =
  | { index: number; engineId: number; value: T }
  | { index: number; engineId: number; error: Error };

/**
 * The results of a load-balanced `map` (IPython Parallel's `AsyncMapResult`): one per input item,
 * each from whichever engine took its task. Awaiting it is the same as `get()`: the values in
 * input order. Iterating it (`for await`) yields the values as they come: in input order when
 * the map is `ordered` (the default), else in the order they complete; an item that failed throws
 * its error there. {@linkcode items} yields them without throwing.
 *
 * @example
 * ```ts ignore
 * const ar = client.loadBalancedView().map((x: number) => x * x, [1, 2, 3], { ordered: false });
 * for await (const square of ar) console.log(square); // as each completes
 * console.log(await ar, ar.engineIds); // [1, 4, 9], and where each ran
 * ```
 */
export class AsyncMapResult<T = unknown> implements PromiseLike<T[]> {
  /** The id of the call (the tasks' message ids begin with it). */
  readonly id: string;
  /** How many items the map has. */
  readonly length: number;
  /** Whether iteration yields in input order (else in completion order). */
  readonly ordered: boolean;
  readonly #items: (MapItem<T> | undefined)[];
  readonly #order: number[] = [];
  readonly #stdout: string[];
  readonly #stderr: string[];
  readonly #attempts: number[];
  readonly #submitted = Date.now();
  readonly #onAbort: () => void;
  #finished: number | undefined;
  #wake: (() => void)[] = [];

  /** @internal Made by load-balanced views; they call {@linkcode settle} once per item. */
  constructor(id: string, length: number, ordered: boolean, onAbort: () => void = () => {}) {
    this.id = id;
    this.length = length;
    this.ordered = ordered;
    this.#items = new Array(length).fill(undefined);
    this.#stdout = new Array(length).fill("");
    this.#stderr = new Array(length).fill("");
    this.#attempts = new Array(length).fill(0);
    this.#onAbort = onAbort;
    if (length === 0) this.#finished = this.#submitted;
  }

  /** @internal Records item `index`'s outcome; later outcomes of the same item are dropped. */
  settle(item: MapItem<T>): void {
    if (this.#items[item.index] !== undefined) return;
    this.#items[item.index] = item;
    this.#order.push(item.index);
    if (this.#order.length === this.length) this.#finished = Date.now();
    for (const wake of this.#wake.splice(0)) wake();
  }

  /** @internal Whether item `index` has its outcome. */
  settled(index: number): boolean {
    return this.#items[index] !== undefined;
  }

  /** @internal Records what the task whose first item is `index` printed. */
  output(index: number, stdout: string, stderr: string): void {
    this.#stdout[index] += stdout;
    this.#stderr[index] += stderr;
  }

  /** @internal Counts one more send of item `index`'s task. */
  attempted(index: number): void {
    this.#attempts[index]++;
  }

  /** Whether every item has its outcome. */
  ready(): boolean {
    return this.#finished !== undefined;
  }

  /** How many items have their outcome so far (IPython Parallel's `progress`). */
  get progress(): number {
    return this.#order.length;
  }

  /**
   * {@linkcode wait} with a progress line, `"  37/100 tasks finished after    3 s"` (one task per
   * item), redrawn every `interval` ms on stderr (or `output`) until every item came back or
   * `timeout` ms passed (IPython Parallel's `wait_interactive`). Resolves to whether all did.
   *
   * @example
   * ```ts ignore
   * const ar = client.loadBalancedView().map(simulate, runs);
   * await ar.waitInteractive(); // " 100/100 tasks finished after   42 s"
   * ```
   */
  waitInteractive(options?: WaitInteractiveOptions): Promise<boolean> {
    return waitInteractive(this, this.length, options);
  }

  /** Resolves once `done()` holds (checked after each item comes back). */
  async #until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.#wake.push(resolve));
  }

  /** Waits until every item came back or `timeout` ms passed; returns whether all did. */
  async wait(timeout = Infinity): Promise<boolean> {
    if (this.ready()) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      if (Number.isFinite(timeout)) timer = setTimeout(resolve, timeout);
    });
    await Promise.race([this.#until(() => this.ready()), late]);
    clearTimeout(timer);
    return this.ready();
  }

  /** The values in input order, each failed item's error in its place. */
  get(options: GetOptions & { returnExceptions: true }): Promise<(T | Error)[]>;
  /**
   * The values in input order; throws the error of the one item that failed (a `TaskError`
   * naming its index and engine, `EngineDiedError`, `TimeoutError`, `TaskAbortedError`), or a
   * `CompositeError` of several; when all failures are one error (an aborted signal's reason),
   * that one.
   */
  get(options?: GetOptions): Promise<T[]>;
  async get(options: GetOptions = {}): Promise<(T | Error)[]> {
    const { timeout = Infinity, signal } = options;
    if (!this.ready()) {
      if (signal?.aborted) {
        this.abort();
        throw signal.reason;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      let onAbort: (() => void) | undefined;
      const stop = new Promise<never>((_, reject) => {
        if (Number.isFinite(timeout)) {
          timer = setTimeout(() => {
            const missing = this.#items.flatMap((item, i) => (item ? [] : [i]));
            reject(
              new TimeoutError(
                `Cannot get result: ${missing.length} of ${this.length} tasks did not answer ` +
                  `within ${timeout} ms`,
                timeout,
                [],
              ),
            );
          }, timeout);
        }
        if (signal) {
          onAbort = () => {
            this.abort();
            reject(signal.reason);
          };
          signal.addEventListener("abort", onAbort, { once: true });
        }
      });
      try {
        await Promise.race([this.#until(() => this.ready()), stop]);
      } finally {
        clearTimeout(timer);
        if (onAbort) signal!.removeEventListener("abort", onAbort);
      }
    }
    const values = this.#items.map((item) => valueOf(item!));
    if (options.returnExceptions) return values;
    const errors = [...new Set(values.filter((v): v is Error => v instanceof Error))];
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new CompositeError(errors);
    return values as T[];
  }

  /** Same as `get().then(…)`: awaiting it gives the values in input order. */
  then<R1 = T[], R2 = never>(
    onfulfilled?: ((value: T[]) => R1 | PromiseLike<R1>) | null,
    // deno-lint-ignore no-explicit-any
    onrejected?: ((reason: any) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.get().then(onfulfilled, onrejected);
  }

  /**
   * Yields every item's outcome, never throwing: in input order when `ordered`, else as they
   * complete (by default, the map's `ordered`).
   */
  async *items(ordered: boolean = this.ordered): AsyncGenerator<MapItem<T>> {
    for (let k = 0; k < this.length; k++) {
      if (ordered) {
        await this.#until(() => this.#items[k] !== undefined);
        yield this.#items[k]!;
      } else {
        await this.#until(() => this.#order.length > k);
        yield this.#items[this.#order[k]]!;
      }
    }
  }

  /** Yields the values as {@linkcode items} does; an item that failed throws its error. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for await (const item of this.items()) {
      if ("error" in item) throw item.error;
      yield item.value;
    }
  }

  /**
   * Cancels the tasks no engine has started yet: they fail with `TaskAbortedError`. Tasks already
   * running finish (JavaScript has no preemption), and their results come back as usual.
   */
  abort(): void {
    if (!this.ready()) this.#onAbort();
  }

  /** The engine each item ran on, in input order (-1 for an item without an answer yet). */
  get engineIds(): number[] {
    return this.#items.map((item) => item?.engineId ?? -1);
  }

  /**
   * How many times each item's task was sent: 1, plus one per retry (its engine died under it,
   * or it threw and `retries` allowed another try).
   */
  get attempts(): number[] {
    return [...this.#attempts];
  }

  /**
   * What the tasks printed to stdout, by item: a task of several items (`chunksize`) shows under
   * its first item (`""` where none, or not yet).
   */
  get stdout(): string[] {
    return [...this.#stdout];
  }

  /** What the tasks printed to stderr, by item, as {@linkcode stdout}. */
  get stderr(): string[] {
    return [...this.#stderr];
  }

  /** Ms from submission until the last item came back, or until now if some have not. */
  get elapsed(): number {
    return (this.#finished ?? Date.now()) - this.#submitted;
  }
}

/**
 * The result of a load-balanced `apply`: one task, run by whichever engine took it first.
 * Awaiting it gives the task's value itself (not a list).
 *
 * @example
 * ```ts ignore
 * const ar = client.loadBalancedView().apply((a: number, b: number) => a + b, 1, 2);
 * console.log(await ar, ar.engineId); // 3, and the engine it ran on
 * ```
 */
export class AsyncApplyResult<T = unknown> implements PromiseLike<T> {
  readonly #map: AsyncMapResult<T>;

  /** @internal Wraps the one-item map of a load-balanced `apply`. */
  constructor(map: AsyncMapResult<T>) {
    this.#map = map;
  }

  /** The id of the call. */
  get id(): string {
    return this.#map.id;
  }

  /** The engine the task ran on (-1 until it answered). */
  get engineId(): number {
    return this.#map.engineIds[0];
  }

  /** The engine the task ran on, as a list (as `AsyncResult.engineIds`). */
  get engineIds(): number[] {
    return this.#map.engineIds;
  }

  /** The task's value, or its error with `returnExceptions`. */
  get(options: GetOptions & { returnExceptions: true }): Promise<T | Error>;
  /** The task's value; throws its error (`TaskError`, `EngineDiedError`, `TimeoutError`, …). */
  get(options?: GetOptions): Promise<T>;
  async get(options: GetOptions = {}): Promise<T | Error> {
    return (await this.#map.get(options))[0];
  }

  /** Same as `get().then(…)`. */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    // deno-lint-ignore no-explicit-any
    onrejected?: ((reason: any) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.get().then(onfulfilled, onrejected);
  }

  /** Whether the task answered. */
  ready(): boolean {
    return this.#map.ready();
  }

  /** Waits until the task answered or `timeout` ms passed; returns whether it did. */
  wait(timeout = Infinity): Promise<boolean> {
    return this.#map.wait(timeout);
  }

  /** Cancels the task if no engine has started it: it fails with `TaskAbortedError`. */
  abort(): void {
    this.#map.abort();
  }

  /** How many times the task was sent (1 plus its retries). */
  get attempts(): number {
    return this.#map.attempts[0];
  }

  /** What the task printed to stdout. */
  get stdout(): string {
    return this.#map.stdout[0];
  }

  /** What the task printed to stderr. */
  get stderr(): string {
    return this.#map.stderr[0];
  }

  /** Ms from submission until the answer, or until now. */
  get elapsed(): number {
    return this.#map.elapsed;
  }
}

function valueOf<T>(item: MapItem<T>): T | Error {
  return "error" in item ? item.error : item.value;
}
