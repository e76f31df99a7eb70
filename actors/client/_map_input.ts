/**
 * The checks and shaping that every view's `map` does to its input before anything is sent: the
 * trailing options, the iterables zipped into argument lists.
 *
 * @module
 */
import { ModuleFunction } from "../protocol/wire_types.ts";

/** Whether `value` is an options object rather than one more iterable. */
function isOptions(value: unknown): boolean {
  return typeof value === "object" && value !== null && !(Symbol.iterator in value);
}

/** Splits `map(f, ...iterables, options?)`'s rest arguments into the iterables and the options. */
export function splitMapArgs<O extends object>(
  args: readonly unknown[],
): { iterables: unknown[]; options: O } {
  if (args.length > 0 && isOptions(args[args.length - 1])) {
    return { iterables: args.slice(0, -1), options: args[args.length - 1] as O };
  }
  return { iterables: [...args], options: {} as O };
}

/** Throws `TypeError` unless `fn` is a function or a `ModuleFunction`. */
export function checkMapFunction(what: string, fn: unknown): void {
  if (typeof fn !== "function" && !(fn instanceof ModuleFunction)) {
    throw new TypeError(`Cannot ${what}: the first argument must be a function or ModuleFunction`);
  }
}

/**
 * The argument lists of a map over `iterables`: item `i` is `[a[i], b[i], …]`. Throws `TypeError`
 * when there is no iterable or one is not iterable, and `RangeError` when their lengths differ (as
 * IPython Parallel's `map` does; Python's `zip` would truncate silently).
 */
export function zipItems(what: string, iterables: readonly unknown[]): unknown[][] {
  if (iterables.length === 0) throw new TypeError(`Cannot ${what}: no iterable given`);
  const lists = iterables.map((it, i) => {
    if (
      it === null || it === undefined ||
      typeof (it as Iterable<unknown>)[Symbol.iterator] !== "function"
    ) {
      throw new TypeError(`Cannot ${what}: argument ${i + 2} is not iterable (${typeName(it)})`);
    }
    return Array.isArray(it) ? it : [...(it as Iterable<unknown>)];
  });
  const n = lists[0].length;
  lists.forEach((list, i) => {
    if (list.length !== n) {
      throw new RangeError(
        `Cannot ${what}: the iterables differ in length (argument 2 has ${n} items, ` +
          `argument ${i + 2} has ${list.length})`,
      );
    }
  });
  const items: unknown[][] = new Array(n);
  for (let i = 0; i < n; i++) items[i] = lists.map((list) => list[i]);
  return items;
}

/** Throws `TypeError`/`RangeError` unless `value`, when given, is an integer of at least `min`. */
export function checkInteger(what: string, name: string, value: unknown, min: number): void {
  if (value === undefined) return;
  if (typeof value !== "number") {
    throw new TypeError(`Cannot ${what}: ${name} must be a number, got ${typeName(value)}`);
  }
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`Cannot ${what}: ${name} must be an integer ≥ ${min}, got ${value}`);
  }
}

function typeName(value: unknown): string {
  return value === null ? "null" : typeof value;
}
