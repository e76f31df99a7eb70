/**
 * Views: the operations a client runs on a set of engines (IPython Parallel's `rc[:]`).
 * `DirectView` sends one message per host (each engine answers on its own); `BroadcastView` sends
 * one in all and gets one answer.
 *
 * Why this file is over 500 lines: `View` holds every operation both views share (its public
 * surface, each with its documentation) and the one `#run` that orders, prepares and sends them.
 *
 * @module
 */
import { TimeoutError, TransportDataLostError } from "../../errors.ts";
import { encodeValue, propertyPath } from "../../transport/codec.ts";
import type { AsyncMapResult } from "./async_map_result.ts";
import { AsyncResult, type Outcome, type Shape } from "./async_result.ts";
import type { ViewHost } from "./_view_host.ts";
import { checkSequence, concatenate, type Sequence } from "../protocol/partition.ts";
import { wireTreeOn, type WireTreeOptions } from "./wire_tree.ts";
import { checkTimerRange } from "./_timer_range.ts";
import { storeBlob } from "../blob.ts";
import { FunctionSource, ModuleFunction } from "../protocol/wire_types.ts";
import { displayView } from "./_jupyter_display.ts";
import { splitMapArgs } from "./_map_input.ts";
import { readScript } from "./_script_file.ts";
import { mapOperation, partitionedMap } from "./_partitioned_map.ts";
import type { BroadcastTree, Operation } from "../protocol/messages.ts";

/** Values pushed or passed at least this large (encoded) are stored once as blobs. */
export const BLOB_THRESHOLD = 64 * 1024;
const BLOB_TTL_MS = 10 * 60_000;

/**
 * Options every call takes.
 *
 * @example Give up after 5 s, or when the signal aborts
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const options = { timeout: 5_000, signal: AbortSignal.timeout(10_000) };
 * assert.deepEqual(await client.view().applyWith(options, () => "done"), ["done", "done"]);
 * ```
 */
export interface CallOptions {
  /**
   * Fail engines that have not answered after this many ms with a `TimeoutError` naming them.
   * The deadline travels with the call: an engine does not start the task once it has passed,
   * and stops waiting for an asynchronous task that runs past it (the task itself cannot be
   * stopped: it goes on in the background, its result dropped) and moves on to its next task. A
   * synchronous task that never returns holds its engine until the engine is restarted.
   */
  timeout?: number;
  /**
   * Cancel the call when this signal aborts: the call's `AsyncResult` rejects at once with the
   * signal's reason, and the engines skip the call if they have not started it. A task already
   * running cannot be stopped (JavaScript has no preemption): it finishes, and its result is
   * dropped.
   */
  signal?: AbortSignal;
}

/**
 * Options of `map` on a `DirectView` or `BroadcastView`.
 *
 * @example Items as they complete
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const squares = await client.view().map((x: number) => x * x, [1, 2, 3], { ordered: false });
 * assert.deepEqual([...squares].sort((a, b) => a - b), [1, 4, 9]);
 * ```
 */
export interface ViewMapOptions extends CallOptions {
  /** Whether iterating the result yields in input order (default) or as items complete. */
  ordered?: boolean;
}

/**
 * Options of `scatter`.
 *
 * @example One item per engine, as the item itself
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.view().scatter("x", [10, 20], { flatten: true });
 * assert.deepEqual(await client.view().pull("x"), [10, 20]);
 * ```
 */
export interface ScatterOptions extends CallOptions {
  /** Push a one-item chunk as the item itself (IPython Parallel's `flatten`). */
  flatten?: boolean;
}

/**
 * Any function: what `apply` takes.
 *
 * @example Any function can be applied
 * ```ts
 * import type { AnyFunction } from "../../mod.ts";
 *
 * const add: AnyFunction = (a: number, b: number) => a + b;
 * ```
 */
// deno-lint-ignore no-explicit-any
export type AnyFunction = (...args: any[]) => any;

/**
 * The operations common to every view. A view made from one integer id (`client.view(2)`) has
 * the shape `"one"`: its calls resolve to that engine's bare value, as IPython Parallel's
 * `rc[2]` does; a view made from a list of ids (even of one) resolves to lists.
 *
 * @example What every view can do
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.view();
 * await view.push({ a: 1 });
 * await view.execute("b = a + 1");
 * assert.deepEqual(await view.pull("b"), [2, 2]);
 * ```
 */
export abstract class View<S extends Shape = "list"> {
  readonly #host: ViewHost;
  /** The engines of the view, in the order results come back. */
  readonly targets: readonly number[];
  /** `"one"` when the view's calls give one engine's bare value, `"list"` when they give lists. */
  readonly shape: S;

  /**
   * Makes a view of `client` on `targets`, of shape `shape` (`"one"` needs one target); use
   * `client.view()` or `client.broadcastView()`.
   */
  constructor(host: ViewHost, targets: readonly number[], shape: S = "list" as S) {
    if (shape === "one" && targets.length !== 1) {
      throw new RangeError(`Cannot make a one-engine view on ${targets.length} engines`);
    }
    this.#host = host;
    this.targets = targets;
    this.shape = shape;
  }

  /** The notebook's rich display of the view (Deno's Jupyter kernel calls it). */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return displayView(this);
  }

  /** `result` in the shape of the view's calls. */
  #shaped<T>(result: AsyncResult<unknown>): AsyncResult<T, S> {
    return (this.shape === "one" ? result.reshaped("one") : result) as AsyncResult<T, S>;
  }

  /**
   * The first hop of the view's calls: calls with the same first hop reach each engine in the
   * order they were sent. Through the hosts' dispatchers by default.
   */
  protected route(): string {
    return "dispatchers";
  }

  /** How the view's calls reach their engines, when through a broadcast tree. */
  protected tree(): BroadcastTree | undefined {
    return undefined;
  }

  /**
   * Sends `operation` to the view's engines as call `id`; resolves each engine's outcome in
   * target order. The message to engine `e` has id `engineMessageId(id, e)`.
   */
  protected abstract dispatch(
    operation: Operation,
    options: CallOptions,
    id: string,
  ): AsyncResult<unknown>;

  /**
   * Calls `fn(...args)` on every engine. `fn` travels as its source (its free variables resolve
   * in the engine's namespace) or is a {@linkcode ModuleFunction}; `Reference` arguments resolve
   * to the engine's value of that name. JavaScript cannot read a closure: a variable of the
   * client's scope that `fn` uses fails on the engine with a `ReferenceError` naming it
   * (`factor is not defined in the engine's namespace: functions ship as their source, without
   * their closure; …`): push it first, or pass it as an argument.
   */
  apply<F extends AnyFunction>(
    fn: F | ModuleFunction,
    ...args: unknown[]
  ): AsyncResult<Awaited<ReturnType<F>>, S> {
    return this.applyWith({}, fn, ...args);
  }

  /** {@linkcode apply} with call options (timeout, signal). */
  applyWith<F extends AnyFunction>(
    options: CallOptions,
    fn: F | ModuleFunction,
    ...args: unknown[]
  ): AsyncResult<Awaited<ReturnType<F>>, S> {
    const shipped = fn instanceof ModuleFunction ? fn : FunctionSource.of(fn);
    return this.#shaped(
      this.#run({ type: "apply", content: { fn: shipped, args: [] } }, options, async (blobs) => ({
        fn: shipped,
        args: await Promise.all(args.map((a, i) => this.#ship(a, blobs, `$.args[${i}]`))),
      })),
    );
  }

  /**
   * Calls `fn(a[i], b[i], …)` for every index `i` of the iterables `a`, `b`, … (IPython
   * Parallel's `DirectView.map`: scatter, apply and gather in one call): the items are split into
   * one contiguous partition per engine, as `scatter` splits, every engine maps its partition in
   * one message, and the result gives the values as one flat list in input order. The last
   * argument may be the options (`{ ordered, timeout, signal }`). An item that throws fails alone
   * (a `TaskError` naming its index and engine); an engine that dies fails its partition.
   *
   * Throws, before anything is sent, `TypeError` for a `fn` that is not a function or cannot be
   * shipped, no iterable or one that is not iterable, or a `chunksize` (a load-balanced view's
   * option), `RangeError` for iterables of different lengths, and `SerializationError` for an
   * item that cannot be sent.
   */
  map<F extends AnyFunction>(
    fn: F | ModuleFunction,
    ...args: [...Iterable<unknown>[], ViewMapOptions] | Iterable<unknown>[]
  ): AsyncMapResult<Awaited<ReturnType<F>>> {
    const { iterables, options } = splitMapArgs<ViewMapOptions>(args);
    return this.mapWith(options, fn, ...(iterables as Iterable<unknown>[]));
  }

  /** {@linkcode map} with its options first. */
  mapWith<F extends AnyFunction>(
    options: ViewMapOptions,
    fn: F | ModuleFunction,
    ...iterables: Iterable<unknown>[]
  ): AsyncMapResult<Awaited<ReturnType<F>>> {
    const operation = mapOperation(fn, iterables, options);
    const result = this.#run(operation, options);
    const length = operation.scatter.sequence.length;
    return partitionedMap(result, length, options.ordered ?? true);
  }

  /**
   * Runs `code` on every engine as a notebook cell: top-level `await` works and top-level
   * declarations and assignments persist in the engine's namespace.
   */
  execute(code: string, options: CallOptions = {}): AsyncResult<void, S> {
    return this.#shaped(this.#run({ type: "execute", content: { code } }, options));
  }

  /**
   * Runs the script file at `path`, read here on the client, on every engine as
   * {@linkcode execute} runs code (IPython Parallel's `run`): its top-level declarations stay in
   * each engine's namespace. The script is JavaScript; its imports are resolved on the engines, so
   * name modules by URL or `node:`/`npm:` specifier. A missing file fails with
   * `Deno.errors.NotFound` naming it.
   *
   * @example
   * ```ts ignore
   * await client.view().run("./setup.js"); // then: view.apply(() => helperFromSetup())
   * ```
   */
  run(path: string | URL, options: CallOptions = {}): AsyncResult<void, S> {
    return this.#shaped(
      this.#run(
        { type: "execute", content: { code: "" } },
        options,
        async () => ({ code: await readScript(path) }),
      ),
    );
  }

  /** Sets names in every engine's namespace. Functions travel as their source. */
  push(values: Record<string, unknown>, options: CallOptions = {}): AsyncResult<void, S> {
    return this.#shaped(this.#run({ type: "push", content: {} }, options, async (blobs) => {
      const shipped: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(values)) {
        shipped[name] = await this.#ship(value, blobs, `$.values${propertyPath(name)}`);
      }
      return { values: shipped };
    }));
  }

  /**
   * Each engine's value of `name` (or, for a list of names, the list of values); the engine's
   * bare value on a view of shape `"one"`.
   */
  pull(name: string, options?: CallOptions): AsyncResult<unknown, S>;
  /** Each engine's values of `names`, as a list per engine. */
  pull(names: string[], options?: CallOptions): AsyncResult<unknown[], S>;
  pull(names: string | string[], options: CallOptions = {}): AsyncResult<unknown, S> {
    return this.#shaped(this.#pull(names, options));
  }

  /** {@linkcode pull}, in shape `"list"`. */
  #pull(names: string | string[], options: CallOptions): AsyncResult<unknown> {
    const single = typeof names === "string";
    const result = this.#run(
      { type: "pull", content: { names: single ? [names] : names } },
      options,
      undefined,
      single,
    );
    return single ? mapResult(result, firstOf) : result;
  }

  /** Splits `sequence` into contiguous chunks, one per engine in target order, under `name`. */
  scatter(name: string, sequence: Sequence, options: ScatterOptions = {}): AsyncResult<void, S> {
    checkSequence(`scatter "${name}"`, sequence);
    return this.#shaped(this.#run(
      {
        type: "push",
        content: { values: {} },
        scatter: { name, sequence, flatten: options.flatten ?? false },
      },
      options,
    ));
  }

  /** Pulls `name` from every engine and concatenates the values in target order. */
  async gather(name: string, options: CallOptions = {}): Promise<unknown[] | ArrayBufferView> {
    return concatenate(await this.#pull(name, options));
  }

  /**
   * Wires the view's engines into a binary tree (the first target is the root) and puts a tree
   * communicator, `com`, in each engine's namespace, for `com.reduce` and `com.allreduce`.
   * Resolves to the parent of every engine (`null` for the root).
   */
  wireTree(options?: WireTreeOptions): Promise<Map<number, number | null>> {
    return wireTreeOn(this.#host, this.targets, options);
  }

  /** Clears every engine's namespace (back to `id`, `rank`, `size`). */
  clear(options: CallOptions = {}): AsyncResult<void, S> {
    return this.#shaped(this.#run({ type: "clear", content: {} }, options));
  }

  /**
   * Records call `operation` (for `client.getResult`) and dispatches it, once it is prepared and
   * the calls made before it were dispatched. `single`: a `pull` of one name, whose values are
   * each engine's list's first item.
   */
  #run(
    operation: Operation,
    options: CallOptions,
    prepare?: (blobs: string[]) => Promise<Record<string, unknown>>,
    single = false,
  ): AsyncResult<unknown> {
    checkCallOptions(operation.type, options);
    const host = this.#host;
    const { targets } = this;
    const { signal } = options;
    const id = crypto.randomUUID();
    const closed = host.closedError(operation.type);
    if (closed) {
      // The client (or its cluster) is closed: nothing can go out.
      const outcomes = targets.map((engineId) =>
        Promise.resolve<Outcome>({ engineId, error: closed })
      );
      return new AsyncResult(id, targets, outcomes);
    }
    const timeout = options.timeout ?? Infinity;
    const deadline = Date.now() + timeout;
    const route = this.route();
    const before = host.paths.before(route, targets);
    const send = (operation: Operation) => {
      if (signal?.aborted) {
        // Cancelled before it was sent: nothing goes out.
        const outcomes = targets.map((engineId) =>
          Promise.resolve<Outcome>({ engineId, error: signal.reason })
        );
        return new AsyncResult(id, targets, outcomes);
      }
      // Written before the call's messages, and only for a call that is sent.
      host.recordCall(id, targets, operation.type, single, this.tree(), this.shape === "one");
      // Held back behind other calls, it keeps the deadline it was made with: sent past it, the
      // engines do not start it (and say so in its kept results).
      const left = before && Number.isFinite(timeout)
        ? { ...options, timeout: Math.max(1, deadline - Date.now()) }
        : options;
      return this.dispatch(operation, left, id);
    };
    if (!prepare && !host.preparing && !before) {
      const result = send(operation);
      host.paths.note(route, targets, targets.map((_, i) => result.outcome(i)));
      return host.track(result);
    }
    // Preparing may store blobs (async); the AsyncResult is returned at once all the same. The
    // call is dispatched after the calls made before it, however long they take to prepare.
    // Wrapped: an AsyncResult is thenable, and a promise would unwrap it.
    // The blobs the call stored: deleted once every engine answered (or the call failed), as no
    // engine reads them after that.
    const blobs: string[] = [];
    const content = prepare ? prepare(blobs) : Promise.resolve(operation.content);
    const prepared = host.dispatchInOrder(
      before ? Promise.all([content, before]).then(([c]) => c) : content,
      (content) => ({ result: send({ ...operation, content }) }),
    );
    // A signal that aborts before the call is dispatched fails it at once (and it is not sent).
    const cancelled = new Promise<void>((resolve) => abortOnSignal(signal, prepared, resolve));
    // Held back behind other calls, it still fails at its deadline.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = before && Number.isFinite(timeout)
      ? new Promise<void>((resolve) => (timer = setTimeout(resolve, timeout)))
      : new Promise<void>(() => {});
    const outcomes = targets.map((engineId, i) =>
      Promise.race([
        prepared.then(
          ({ result }) => result.outcome(i),
          (error): Outcome => ({ engineId, error }),
        ),
        cancelled.then((): Outcome => ({ engineId, error: signal!.reason })),
        expired.then((): Outcome => ({
          engineId,
          error: engineTimeout(new TimeoutError("", timeout, []), engineId, timeout) as Error,
        })),
      ])
    );
    host.paths.note(route, targets, outcomes);
    Promise.allSettled([prepared, ...outcomes]).then(() => {
      clearTimeout(timer);
      if (blobs.length > 0) host.transport.deleteBlobs(blobs).catch(() => {});
    });
    return host.track(
      new AsyncResult(id, this.targets, outcomes, () => {
        prepared.then(({ result }) => result.abort(), () => {});
      }),
    );
  }

  /**
   * `value` as it crosses the wire: functions as source, large values as blobs (their keys added
   * to `blobs`). `path` is its place in the message, for the `SerializationError` of a value that
   * cannot be sent.
   */
  async #ship(value: unknown, blobs: string[], path: string): Promise<unknown> {
    if (typeof value === "function") return FunctionSource.of(value as AnyFunction);
    if (value === null || typeof value !== "object") return value;
    if (ArrayBuffer.isView(value) && value.byteLength < BLOB_THRESHOLD) return value;
    const bytes = encodeValue(value, path);
    if (bytes.byteLength < BLOB_THRESHOLD) return value;
    const key = `${this.#host.namespace}:blob:${crypto.randomUUID()}`;
    blobs.push(key);
    return await storeBlob(this.#host.transport, key, bytes, BLOB_TTL_MS);
  }
}

/** Throws `TypeError`/`RangeError` for call options that are not options. */
function checkCallOptions(what: string, options: CallOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Cannot ${what}: options must be an object`);
  }
  const { timeout, signal } = options;
  if (timeout !== undefined && (typeof timeout !== "number" || !(timeout > 0))) {
    throw new RangeError(`Cannot ${what}: timeout must be a positive number of ms, got ${timeout}`);
  }
  checkTimerRange(what, "timeout", timeout);
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`Cannot ${what}: signal must be an AbortSignal`);
  }
}

/**
 * Calls `abort` when `signal` aborts before `done` settles (at once when it already has aborted).
 */
export function abortOnSignal(
  signal: AbortSignal | undefined,
  done: Promise<unknown>,
  abort: () => void,
): void {
  if (!signal) return;
  if (signal.aborted) return abort();
  signal.addEventListener("abort", abort, { once: true });
  const remove = () => signal.removeEventListener("abort", abort);
  done.then(remove, remove);
}

/**
 * The error of engine `engineId` when the wait for its answer failed with `error`: a
 * `TimeoutError` (answer not in within the call's `timeout`) or a `TransportDataLostError` naming
 * the engine, when the wait was for another actor (a broadcast node) and its error says only
 * which actor; any other error as it is.
 */
export function engineTimeout(error: unknown, engineId: number, timeout: number): unknown {
  if (error instanceof TransportDataLostError && error.engineId < 0) {
    return new TransportDataLostError(engineId, error.reason, undefined, { cause: error });
  }
  if (!(error instanceof TimeoutError) || error.engineIds.length > 0) return error;
  return new TimeoutError(
    `Cannot get result from engine ${engineId}: no answer within ${timeout} ms`,
    timeout,
    [engineId],
    { cause: error },
  );
}

/** The first item of a list: an engine's value of `pull` of one name. */
export function firstOf(list: unknown): unknown {
  return (list as unknown[])[0];
}

/**
 * @internal An AsyncResult whose values are `map`ped from another's; `submitted` is when the
 * call was sent (default: now).
 */
export function mapResult(
  result: AsyncResult<unknown>,
  map: (v: unknown) => unknown,
  submitted?: number,
): AsyncResult<unknown> {
  const outcomes = result.engineIds.map((_, i) =>
    result.outcome(i).then((o): Outcome =>
      "result" in o && !o.result.error
        ? { engineId: o.engineId, result: { ...o.result, value: map(o.result.value) } }
        : o
    )
  );
  return new AsyncResult(
    result.id,
    result.engineIds,
    outcomes,
    () => result.abort(),
    submitted,
  );
}

/**
 * Wires the engines of `view` into a binary tree (`bintree(view.targets)`, the first target the
 * root) and puts a `TreeCommunicator` in each one's namespace as `com`: the same as
 * `view.wireTree(options)`. Returns the tree: the parent of every engine.
 *
 * @throws {EngineDiedError} when an engine of the view is dead.
 * @throws {CompositeError} when several engines failed to wire.
 */
export function wireTree(
  view: View<Shape>,
  options?: WireTreeOptions,
): Promise<Map<number, number | null>> {
  return view.wireTree(options);
}
