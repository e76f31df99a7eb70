/**
 * The pure tree math of `actors/_topology.ts`: shape invariants for n = 1, 2, 3, 7, 8, 100 and
 * for non-contiguous id lists, and the drawing of IPython Parallel's `print_bintree`.
 */
import assert from "node:assert/strict";
import {
  type Bintree,
  bintree,
  childrenOf,
  depthOf,
  levelsOf,
  printBintree,
  rootOf,
} from "../actors/protocol/topology.ts";

function range(n: number, start = 0, step = 1): number[] {
  return Array.from({ length: n }, (_, i) => start + i * step);
}

/** Every invariant a tree `bintree(ids)` built must satisfy. */
function assertWellFormed(ids: readonly number[], tree: Bintree): void {
  assert.deepEqual([...tree.keys()].sort((a, b) => a - b), [...ids].sort((a, b) => a - b));
  const roots = [...tree].filter(([, parent]) => parent === null).map(([id]) => id);
  assert.deepEqual(roots, [ids[0]], "exactly one root, the first id");
  assert.equal(rootOf(tree), ids[0]);
  for (const id of ids) {
    assert.ok(childrenOf(tree, id).length <= 2, `node ${id} has at most two children`);
    const parent = tree.get(id)!;
    if (parent !== null) assert.ok(tree.has(parent), `parent ${parent} of ${id} is in the tree`);
    // The parent chain ends at the root: depthOf throws on a cycle.
    let top = id;
    for (let p = tree.get(top); p !== null && p !== undefined; p = tree.get(top)) top = p;
    assert.equal(top, ids[0], `${id} reaches the root`);
    assert.ok(depthOf(tree, id) < ids.length);
  }
  assert.equal(levelsOf(tree), Math.ceil(Math.log2(ids.length + 1)), "depth is ⌈log2(n+1)⌉");
  // Pre-order layout: each subtree is a contiguous run of the list starting at its root, which
  // is what makes ordered (rank-order) reductions possible.
  const order = [...tree.keys()];
  assert.deepEqual(order, [...ids]);
  for (const id of ids) {
    const size = subtreeSize(tree, id);
    const start = ids.indexOf(id);
    for (const member of ids.slice(start, start + size)) {
      let p: number | null = member;
      while (p !== null && p !== id) p = tree.get(p)!;
      assert.equal(p, id, `${member} lies in the subtree of ${id}`);
    }
  }
}

function subtreeSize(tree: Bintree, id: number): number {
  return 1 + childrenOf(tree, id).reduce((sum, child) => sum + subtreeSize(tree, child), 0);
}

for (const n of [1, 2, 3, 7, 8, 100]) {
  Deno.test(`bintree() of ${n} contiguous ids has one root, ≤2 children each and ⌈log2(n+1)⌉ levels`, () => {
    const ids = range(n);
    assertWellFormed(ids, bintree(ids));
  });
}

Deno.test("bintree() of non-contiguous and unsorted ids keeps the same shape, rooted at the first id", () => {
  for (
    const ids of [range(10, 5, 3), [42, 7, 19, 3, 100, 8, 1], range(33, 1000, 7).reverse(), [9]]
  ) {
    const tree = bintree(ids);
    assertWellFormed(ids, tree);
    const contiguous = bintree(range(ids.length));
    for (let i = 0; i < ids.length; i++) {
      const parent = contiguous.get(i)!;
      assert.equal(tree.get(ids[i]), parent === null ? null : ids[parent]);
    }
  }
});

Deno.test("bintree() depth bound holds for every n up to 1100", () => {
  for (let n = 1; n <= 1100; n++) {
    assert.equal(levelsOf(bintree(range(n))), Math.ceil(Math.log2(n + 1)), `n = ${n}`);
  }
});

Deno.test("bintree() of 7 ids matches IPython Parallel's docstring example", () => {
  assert.deepEqual(
    Object.fromEntries(bintree(range(7))),
    { 0: null, 1: 0, 2: 1, 3: 1, 4: 0, 5: 4, 6: 4 },
  );
  assert.deepEqual(childrenOf(bintree(range(2)), 0), [1]);
  assert.equal(bintree([]).size, 0);
});

Deno.test("bintree() rejects repeated and non-integer ids", () => {
  assert.throws(() => bintree([1, 2, 1]), RangeError);
  assert.throws(() => bintree([1, 2.5]), TypeError);
});

Deno.test("depthOf() counts edges to the root and throws for unknown ids", () => {
  const tree = bintree(range(7));
  assert.deepEqual(range(7).map((id) => depthOf(tree, id)), [0, 1, 2, 2, 1, 2, 2]);
  assert.throws(() => depthOf(tree, 99), RangeError);
});

Deno.test("printBintree() draws the tree as print_bintree does: pre-order, two spaces per level", () => {
  assert.equal(
    printBintree(bintree(range(7))),
    ["0", "  1", "    2", "    3", "  4", "    5", "    6"].join("\n"),
  );
  assert.equal(printBintree(bintree([5, 9, 2])), ["5", "  9", "  2"].join("\n"));
  assert.equal(printBintree(bintree([3])), "3");
});
