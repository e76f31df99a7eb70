/**
 * Binary-tree topology math for tree reductions: who is whose parent, pure and without I/O.
 *
 * The layout is IPython Parallel's `bintree`: the first id is the root, the remaining ids are split
 * into two halves (the left one the smaller when they differ), and each half is laid out the same
 * way under its first id. Every subtree is therefore a contiguous run of the id list, laid out in
 * pre-order, which is what makes an ordered reduction possible: `self ⊕ left ⊕ right` at every
 * node is the sequential fold over the list.
 *
 * @module
 */

/**
 * The parent of every id; the root's parent is `null`. Keys are in pre-order.
 *
 * @example The parent of each engine
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Bintree, bintree } from "../../mod.ts";
 *
 * const tree: Bintree = bintree([0, 1, 2]);
 * assert.deepEqual([...tree], [[0, null], [1, 0], [2, 0]]);
 * ```
 */
export type Bintree = Map<number, number | null>;

/**
 * Builds a binary tree over `ids`: the parent of every id, the first id being the root (parent
 * `null`). Each node has at most two children and the tree has ⌈log2(n+1)⌉ levels. The map's
 * keys come in pre-order, which for a sorted id list is the list's order.
 *
 * @throws {TypeError} when an id is not a safe integer.
 * @throws {RangeError} when an id is listed twice.
 *
 * @example Seven engines, three levels
 * ```ts
 * import assert from "node:assert/strict";
 * import { bintree } from "../../mod.ts";
 *
 * const tree = bintree([0, 1, 2, 3, 4, 5, 6]);
 * assert.equal(tree.get(0), null);
 * assert.equal(tree.size, 7);
 * ```
 */
export function bintree(ids: readonly number[]): Bintree {
  const seen = new Set<number>();
  for (const id of ids) {
    if (!Number.isSafeInteger(id)) {
      throw new TypeError(`Cannot build tree: id ${id} is not an integer`);
    }
    if (seen.has(id)) throw new RangeError(`Cannot build tree: id ${id} is listed twice`);
    seen.add(id);
  }
  const tree: Bintree = new Map();
  layout(ids, 0, ids.length, null, tree);
  return tree;
}

/** Lays out `ids[start, end)` under `parent`; iterative over the right spine, recursive left. */
function layout(
  ids: readonly number[],
  start: number,
  end: number,
  parent: number | null,
  tree: Bintree,
): void {
  if (end <= start) return;
  const root = ids[start];
  tree.set(root, parent);
  const rest = end - start - 1;
  const middle = start + 1 + Math.floor(rest / 2);
  layout(ids, start + 1, middle, root, tree);
  layout(ids, middle, end, root, tree);
}

/** The root of `tree` (the id whose parent is `null`). */
export function rootOf(tree: Bintree): number {
  for (const [id, parent] of tree) if (parent === null) return id;
  throw new RangeError("Cannot find root: the tree is empty");
}

/** The children of `id` in `tree`, left first (in the order `bintree` laid them out). */
export function childrenOf(tree: Bintree, id: number): number[] {
  const children: number[] = [];
  for (const [child, parent] of tree) if (parent === id) children.push(child);
  return children;
}

/**
 * How many edges separate `id` from the root (the root is at depth 0).
 *
 * @throws {RangeError} when `id` is not in the tree or the parent chain loops.
 */
export function depthOf(tree: Bintree, id: number): number {
  if (!tree.has(id)) throw new RangeError(`Cannot measure depth: ${id} is not in the tree`);
  let depth = 0;
  for (let parent = tree.get(id); parent !== null && parent !== undefined; depth++) {
    if (depth > tree.size) {
      throw new RangeError(`Cannot measure depth of ${id}: the tree has a cycle`);
    }
    parent = tree.get(parent);
  }
  return depth;
}

/** How many levels `tree` has: 0 when empty, ⌈log2(n+1)⌉ for a tree `bintree` built. */
export function levelsOf(tree: Bintree): number {
  let levels = 0;
  for (const id of tree.keys()) levels = Math.max(levels, depthOf(tree, id) + 1);
  return levels;
}

/**
 * Draws `tree` as IPython Parallel's `print_bintree` does: one id per line in pre-order, indented
 * by `indent` once per level below the root.
 *
 * @example Seven engines
 * ```ts
 * import { bintree, printBintree } from "./topology.ts";
 * console.log(printBintree(bintree([0, 1, 2, 3, 4, 5, 6])));
 * // 0
 * //   1
 * //     2
 * //     3
 * //   4
 * //     5
 * //     6
 * ```
 */
export function printBintree(tree: Bintree, indent = "  "): string {
  const lines: string[] = [];
  const visit = (id: number, depth: number) => {
    lines.push(`${indent.repeat(depth)}${id}`);
    for (const child of childrenOf(tree, id)) visit(child, depth + 1);
  };
  for (const [id, parent] of tree) if (parent === null) visit(id, 0);
  return lines.join("\n");
}
