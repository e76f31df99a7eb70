/**
 * `map` on a `DirectView` or `BroadcastView`: the items split into one contiguous partition per
 * engine (as `scatter` splits a sequence), every engine maps its partition in one `map` message,
 * and the answers come back as one flat list in input order.
 *
 * @module
 */
import { TaskError } from "../../errors.ts";
import { checkValue } from "../../transport/codec.ts";
import { AsyncMapResult } from "./async_map_result.ts";
import { type AsyncResult, errorOf, type Outcome } from "./async_result.ts";
import { checkMapFunction, zipItems } from "./_map_input.ts";
import { partitionBounds, type ScatterSpec } from "../protocol/partition.ts";
import { FunctionSource, ModuleFunction } from "../protocol/wire_types.ts";
import type { MapItemResult } from "../protocol/results.ts";

/** The operation of a partitioned map, ready for a view's engines. */
export interface MapOperation {
  type: "map";
  content: Record<string, unknown>;
  scatter: ScatterSpec;
}

/**
 * The operation that maps `fn` over `iterables` on a view's engines. Throws, before anything is
 * sent, as a load-balanced map does: `TypeError` for a `fn` that is not a function or cannot be
 * shipped, no iterable or one that is not iterable, an `ordered` that is not a boolean or a
 * `chunksize` (the partitions are the chunks here); `RangeError` for iterables of different
 * lengths; `SerializationError` for an item that cannot be sent.
 */
export function mapOperation(
  fn: unknown,
  iterables: readonly unknown[],
  options: { ordered?: unknown; chunksize?: unknown },
): MapOperation {
  checkMapFunction("map", fn);
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Cannot map: options must be an object");
  }
  if (options.chunksize !== undefined) {
    throw new TypeError(
      "Cannot map: chunksize is an option of load-balanced views; a DirectView or BroadcastView " +
        "map gives each engine one contiguous partition of the items",
    );
  }
  if (options.ordered !== undefined && typeof options.ordered !== "boolean") {
    throw new TypeError("Cannot map: ordered must be a boolean");
  }
  const items = zipItems("map", iterables);
  const shipped = fn instanceof ModuleFunction
    ? fn
    : FunctionSource.of(fn as (...args: unknown[]) => unknown);
  const shippedItems = items.map((args) =>
    args.map((a) => (typeof a === "function" ? FunctionSource.of(a as () => unknown) : a))
  );
  checkValue({ fn: shipped, items: shippedItems });
  return {
    type: "map",
    content: { fn: shipped, items: [] },
    scatter: { name: "items", sequence: shippedItems, flatten: false, into: "items" },
  };
}

/**
 * The per-item results of partitioned map `result` (one outcome per engine, each the list of its
 * partition's item outcomes) over `length` items.
 */
export function partitionedMap<T>(
  result: AsyncResult<unknown>,
  length: number,
  ordered: boolean,
): AsyncMapResult<T> {
  const map = new AsyncMapResult<T>(result.id, length, ordered, () => result.abort());
  const count = result.engineIds.length;
  for (let i = 0; i < length; i++) map.attempted(i);
  result.engineIds.forEach((_, i) => {
    const [lo, hi] = partitionBounds(length, i, count);
    result.outcome(i).then((outcome) => settlePartition(map, outcome, lo, hi));
  });
  return map;
}

/** Settles items `[lo, hi)` of `map` from the outcome of the engine that mapped them. */
export function settlePartition<T>(
  map: AsyncMapResult<T>,
  outcome: Outcome,
  lo: number,
  hi: number,
): void {
  const { engineId } = outcome;
  const failAll = (error: (index: number) => Error) => {
    for (let index = lo; index < hi; index++) map.settle({ index, engineId, error: error(index) });
  };
  if ("error" in outcome) return failAll(() => outcome.error);
  const { result } = outcome;
  if (hi > lo) map.output(lo, result.stdout, result.stderr);
  if (result.error) {
    const error = result.error;
    const cancelled = result.cancelled ? errorOf(result) : undefined;
    return failAll((index) => cancelled ?? new TaskError(index, engineId, error));
  }
  const values = result.value as MapItemResult[];
  if (!Array.isArray(values) || values.length !== hi - lo) {
    const data = {
      name: "Error",
      message: `engine ${engineId} answered ${
        Array.isArray(values) ? values.length : "no list of"
      } items for a partition of ${hi - lo}`,
    };
    return failAll((index) => new TaskError(index, engineId, data));
  }
  values.forEach((item, k) => {
    const index = lo + k;
    if (item !== null && typeof item === "object" && "error" in item) {
      map.settle({ index, engineId, error: new TaskError(index, engineId, item.error) });
    } else map.settle({ index, engineId, value: (item as { value: T })?.value });
  });
}
