/**
 * [All]reduce with a binary-tree engine interconnect: the Deno version of IPython Parallel's
 * `bintree_script.py`.
 *
 * This spanning-tree strategy ensures that a single engine's mailbox never receives more than two
 * messages at once. That matters to scale to large clusters (say 1000 engines): many incoming
 * messages of a few megabytes each could saturate the network interface of one node, and its
 * memory, if they are not consumed as a stream. Unless called with `{ ordered: true }`, the
 * reduction function must be commutative and associative: values are combined as they arrive.
 *
 * ```sh
 * deno run -A examples/bintree.ts [--engines 8] [--redis redis://…]
 * ```
 *
 * Redis is used when `--redis` is given or `REDIS_URL` is set; otherwise the embedded transport.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { bintree, Cluster, printBintree } from "../mod.ts";

/** Cumulative sum reduction. */
function add(a: number, b: number): number {
  return a + b;
}

/** Cumulative product reduction. */
function mul(a: number, b: number): number {
  return a * b;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "8" },
      redis: { type: "string" },
    },
  });
  const transport = values.redis ?? Deno.env.get("REDIS_URL") ?? "memory:";

  // connect client and create views
  await using cluster = new Cluster({ n: Number(values.engines), transport });
  const rc = await cluster.startAndConnect();
  const ids = rc.ids;
  const rootId = ids[0];
  const root = rc.view(rootId);
  const view = rc.view();

  // generate binary tree of parents
  const btree = bintree(ids);
  console.log("setting up binary tree interconnect:");
  console.log(printBintree(btree));

  await view.scatter("id", ids, { flatten: true });
  await view.push({ rootId });

  // create the communicators on the engines and connect them to each other: `com` in every
  // engine's namespace, knowing its parent and children
  const wired = await view.wireTree();
  if (JSON.stringify([...wired]) !== JSON.stringify([...btree])) {
    throw new Error("the wired tree differs from bintree(ids)");
  }

  // functions that can be used for reductions (Math.max and Math.min can be used as well)
  await view.push({ add, mul });

  // scatter some data
  const data = Array.from({ length: 1000 }, (_, i) => i);
  await view.scatter("data", data);

  // perform cumulative sum via allreduce
  await view.execute("dataSum = await com.allreduce(add, data, { flat: false })");
  console.log("allreduce sum of data on all engines:", await view.pull("dataSum"));

  // perform cumulative sum *without* final broadcast
  // when not broadcasting with allreduce, the final result resides on the root node:
  await view.execute("idsSum = await com.reduce(add, id, { flat: true })");
  console.log("reduce sum of engine ids (not broadcast):", await root.pull("idsSum"));
  console.log("partial result on each engine:", await view.pull("idsSum"));
}
