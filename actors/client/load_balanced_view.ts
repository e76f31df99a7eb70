/**
 * The load-balanced view (IPython Parallel's `load_balanced_view`): tasks go into one shared
 * stream of the view, read through a consumer group by the view's engines, each taking the next
 * task only when it is free.
 *
 * @module
 */
import { checkValue } from "../../transport/codec.ts";
import { AsyncApplyResult, AsyncMapResult } from "./async_map_result.ts";
import type { ViewHost } from "./_view_host.ts";
import { checkInteger, checkMapFunction, splitMapArgs, zipItems } from "./_map_input.ts";
import { taskTracker } from "./_task_tracker.ts";
import { displayView } from "./_jupyter_display.ts";
import type { AnyFunction, CallOptions } from "./view.ts";
import { FunctionSource, ModuleFunction } from "../protocol/wire_types.ts";
import { taskAddress } from "../protocol/addresses.ts";

/**
 * Options of a load-balanced view, defaults for its calls.
 *
 * @example Send a failed task again once
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const lview = client.loadBalancedView(undefined, { retries: 1 });
 * assert.equal(await lview.apply(() => "ran"), "ran");
 * ```
 */
export interface LoadBalancedViewOptions {
  /**
   * How many times a task is sent again after it failed: it threw, or its engine died while it
   * held it (IPython Parallel's `retries`). A task that fails `retries + 1` times fails for good:
   * with the `TaskError` of its last try, or `EngineDiedError` when it killed (or lost) an engine
   * each time. Default 0.
   */
  retries?: number;
  /**
   * The most tasks an engine holds at once, the one running included. 1 (the default) means an
   * engine takes its next task only when it is free, so no task waits behind a long one while
   * another engine idles; more saves a round trip per task for tiny tasks.
   */
  prefetch?: number;
}

/**
 * Options of a load-balanced `map`.
 *
 * @example Two items per task
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const doubled = await client.loadBalancedView().map((x: number) => 2 * x, [1, 2, 3, 4], {
 *   chunksize: 2,
 * });
 * assert.deepEqual(doubled, [2, 4, 6, 8]);
 * ```
 */
export interface MapOptions extends CallOptions, LoadBalancedViewOptions {
  /** Items per task. Default 1. */
  chunksize?: number;
  /** Whether iterating the result yields in input order (default) or as items complete. */
  ordered?: boolean;
}

/**
 * A view whose tasks run on whichever of its engines is free first (IPython Parallel's
 * `LoadBalancedView`). Make one with `client.loadBalancedView(targets?)`.
 *
 * Each call's tasks are appended to the view's task stream (one per set of engines) and the
 * engines' hosts are nudged; every engine of the view is a consumer of the stream's group and
 * reads a task only when it holds fewer than `prefetch`. A task an engine took stays pending
 * under that engine until it answers: when the engine dies, the client claims it back and sends
 * it again (`retries`).
 *
 * @example
 * ```ts ignore
 * const lview = client.loadBalancedView();
 * const squares = await lview.map((x: number) => x * x, [1, 2, 3, 4], { chunksize: 2 });
 * const sum = await lview.apply((a: number, b: number) => a + b, 1, 2); // 3
 * ```
 */
export class LoadBalancedView {
  readonly #host: ViewHost;
  /** The engines that may take the view's tasks. */
  readonly targets: readonly number[];
  readonly #address: string;
  readonly #retries: number;
  readonly #prefetch: number;

  /** Makes a view; use `client.loadBalancedView()`. `all`: the view is on every engine. */
  constructor(
    host: ViewHost,
    targets: readonly number[],
    all: boolean,
    options: LoadBalancedViewOptions = {},
  ) {
    checkOptions("make a load-balanced view", options);
    this.#host = host;
    this.targets = targets;
    this.#address = taskAddress(all ? undefined : targets);
    this.#retries = options.retries ?? 0;
    this.#prefetch = options.prefetch ?? 1;
  }

  /** The notebook's rich display of the view (Deno's Jupyter kernel calls it). */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return displayView(this);
  }

  /** Runs `fn(...args)` on the first engine free; awaiting the result gives its value. */
  apply<F extends AnyFunction>(
    fn: F | ModuleFunction,
    ...args: unknown[]
  ): AsyncApplyResult<Awaited<ReturnType<F>>> {
    return this.applyWith({}, fn, ...args);
  }

  /** {@linkcode apply} with options (timeout, signal, retries). */
  applyWith<F extends AnyFunction>(
    options: Omit<MapOptions, "chunksize" | "ordered">,
    fn: F | ModuleFunction,
    ...args: unknown[]
  ): AsyncApplyResult<Awaited<ReturnType<F>>> {
    checkMapFunction("apply", fn);
    return new AsyncApplyResult(this.#submit("apply", fn, [args], options));
  }

  /**
   * Calls `fn(a[i], b[i], …)` for every index `i` of the iterables `a`, `b`, …, each call a task
   * for the first engine free (`chunksize` items per task), and returns their results in input
   * order. The last argument may be the options (`{ chunksize, ordered, retries, timeout,
   * signal }`). Throws, before anything is sent, `TypeError` for a `fn` that is not a function or
   * cannot be shipped, no iterable or one that is not iterable, `RangeError` for iterables of
   * different lengths or a `chunksize` that is not a whole number ≥ 1, and
   * `SerializationError` for an item that cannot be sent.
   */
  map<F extends AnyFunction>(
    fn: F | ModuleFunction,
    ...args: [...Iterable<unknown>[], MapOptions] | Iterable<unknown>[]
  ): AsyncMapResult<Awaited<ReturnType<F>>> {
    const { iterables, options } = splitMapArgs<MapOptions>(args);
    return this.mapWith(options, fn, ...(iterables as Iterable<unknown>[]));
  }

  /** {@linkcode map} with its options first. */
  mapWith<F extends AnyFunction>(
    options: MapOptions,
    fn: F | ModuleFunction,
    ...iterables: Iterable<unknown>[]
  ): AsyncMapResult<Awaited<ReturnType<F>>> {
    checkMapFunction("map", fn);
    const items = zipItems("map", iterables);
    return this.#submit("map", fn, items, options);
  }

  #submit<T>(
    what: string,
    fn: AnyFunction | ModuleFunction,
    items: unknown[][],
    options: MapOptions,
  ): AsyncMapResult<T> {
    checkOptions(what, options);
    const shipped = fn instanceof ModuleFunction ? fn : FunctionSource.of(fn);
    const shippedItems = items.map((args) =>
      args.map((a) => (typeof a === "function" ? FunctionSource.of(a as AnyFunction) : a))
    );
    checkValue({ fn: shipped, items: shippedItems });
    const id = crypto.randomUUID();
    const { signal } = options;
    let abort = () => {};
    const result = new AsyncMapResult<T>(
      id,
      items.length,
      options.ordered ?? true,
      () => abort(),
    );
    if (signal?.aborted) {
      items.forEach((_, index) => result.settle({ index, engineId: -1, error: signal.reason }));
      return result;
    }
    this.#host.recordCall(id, this.targets, what, false, undefined, false, {
      length: items.length,
      chunksize: options.chunksize ?? 1,
      retries: options.retries ?? this.#retries,
    });
    abort = taskTracker(this.#host).submit({
      id,
      address: this.#address,
      targets: this.targets,
      fn: shipped,
      items: shippedItems,
      chunksize: options.chunksize ?? 1,
      retries: options.retries ?? this.#retries,
      prefetch: options.prefetch ?? this.#prefetch,
      timeout: options.timeout ?? Infinity,
      signal,
      result: result as AsyncMapResult<unknown>,
    });
    return result;
  }
}

/** Throws `TypeError`/`RangeError` for options that are not options. */
function checkOptions(what: string, options: MapOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Cannot ${what}: options must be an object`);
  }
  const { timeout, signal, ordered } = options;
  checkInteger(what, "chunksize", options.chunksize, 1);
  checkInteger(what, "retries", options.retries, 0);
  checkInteger(what, "prefetch", options.prefetch, 1);
  if (timeout !== undefined && (typeof timeout !== "number" || !(timeout > 0))) {
    throw new RangeError(`Cannot ${what}: timeout must be a positive number of ms, got ${timeout}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`Cannot ${what}: signal must be an AbortSignal`);
  }
  if (ordered !== undefined && typeof ordered !== "boolean") {
    throw new TypeError(`Cannot ${what}: ordered must be a boolean`);
  }
}
