/**
 * How `scatter` splits a sequence over engines, as IPython Parallel does: contiguous chunks in
 * engine order whose sizes differ by at most one, the first chunks the larger.
 *
 * @module
 */

/**
 * A sequence `scatter` can split: an array or a typed array.
 *
 * @example Arrays and typed arrays scatter alike
 * ```ts
 * import type { Sequence } from "../../mod.ts";
 *
 * const items: Sequence<number> = [1, 2, 3];
 * const samples: Sequence<number> = new Float64Array([0.5, 1.5]);
 * ```
 */
export type Sequence<T = unknown> = readonly T[] | ArrayBufferView & ArrayLike<T>;

/**
 * Throws a TypeError unless `sequence` is an array or a typed array, the two kinds `scatter` can
 * split; `what` names the call, e.g. `scatter("x")`.
 */
export function checkSequence(what: string, sequence: unknown): asserts sequence is Sequence {
  if (Array.isArray(sequence)) return;
  if (ArrayBuffer.isView(sequence) && !(sequence instanceof DataView)) return;
  const got = sequence === null ? "null" : Array.isArray(sequence) ? "array" : typeof sequence;
  throw new TypeError(
    `Cannot ${what}: the sequence must be an array or a typed array, got ${
      got === "object" ? `an object (${Object.prototype.toString.call(sequence)})` : got
    }`,
  );
}

/**
 * The `[start, end)` bounds of chunk `index` of `length` items split into `count` chunks.
 *
 * @example Ten items over three engines
 * ```ts
 * import assert from "node:assert/strict";
 * import { partitionBounds } from "../../mod.ts";
 *
 * assert.deepEqual([0, 1, 2].map((i) => partitionBounds(10, i, 3)), [[0, 4], [4, 7], [7, 10]]);
 * ```
 */
export function partitionBounds(length: number, index: number, count: number): [number, number] {
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`Cannot partition: count must be a positive integer, got ${count}`);
  }
  const base = Math.floor(length / count);
  const remainder = length % count;
  const start = index * base + Math.min(index, remainder);
  return [start, start + base + (index < remainder ? 1 : 0)];
}

/** Chunk `index` of `sequence` split into `count` chunks (a copy, of the same kind). */
export function partition<S extends Sequence>(sequence: S, index: number, count: number): S {
  const [start, end] = partitionBounds(sequence.length, index, count);
  return (sequence as unknown as { slice(a: number, b: number): S }).slice(start, end);
}

/** How a call's sequence is split over its engines (see `Operation.scatter`). */
export interface ScatterSpec {
  /** The name each engine's chunk is pushed under. */
  name: string;
  /** The whole sequence. */
  sequence: Sequence;
  /** Push a one-item chunk as the item itself. */
  flatten: boolean;
  /** `"items"`: the chunk is the `items` of a `map` message, not a value to push. */
  into?: "items";
}

/** The content an engine gets for its `chunk` of a scatter: `content`, with the chunk in it. */
export function chunkContent(
  content: Record<string, unknown>,
  scatter: Omit<ScatterSpec, "sequence">,
  chunk: Sequence,
): Record<string, unknown> {
  if (scatter.into === "items") return { ...content, items: chunk };
  const value = scatter.flatten && chunk.length === 1 ? chunk[0] : chunk;
  return { ...content, values: { [scatter.name]: value } };
}

/** Concatenates chunks as `gather` does: arrays into an array, typed arrays into their kind. */
export function concatenate(chunks: readonly unknown[]): unknown[] | ArrayBufferView {
  const first = chunks.find((c) => c !== undefined);
  if (ArrayBuffer.isView(first) && !(first instanceof DataView)) {
    const C = first.constructor as new (n: number) => ArrayBufferView & {
      set(a: ArrayLike<unknown>, o: number): void;
      length: number;
    };
    const typed = chunks as (ArrayBufferView & { length: number })[];
    const out = new C(typed.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of typed) {
      out.set(c as unknown as ArrayLike<unknown>, offset);
      offset += c.length;
    }
    return out;
  }
  return chunks.flatMap((c) => (Array.isArray(c) ? c : [c]));
}
