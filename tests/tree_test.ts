/**
 * Tree reductions (`actors/tree.ts`): `wireTree()`, `TreeCommunicator.reduce()` and
 * `allreduce()`, run on the embedded transport and on a private `redis-server` (or `REDIS_URL`).
 */
import assert from "node:assert/strict";
import { childrenOf } from "../actors/protocol/topology.ts";
import {
  type Bintree,
  bintree,
  type Client,
  Cluster,
  type ClusterOptions,
  EngineDiedError,
  type RemoteError,
  type TreeCommunicator,
  type TreeStats,
} from "../mod.ts";
import { hasRedisServer } from "./_redis_server.ts";
import { delay } from "./_async.ts";
import { type Backend, BACKENDS, type CaseOptions, forEachBackend } from "./_backends.ts";
import { wireTree } from "../actors/client/view.ts";

// Used by shipped functions only: declared so that the type checker knows them.
declare const com: TreeCommunicator;
declare const id: number;
declare const add: (a: number, b: number) => number;
declare const mul: (a: number, b: number) => number;
declare const concat: (a: string, b: string) => string;
declare const vadd: (a: Float64Array, b: Float64Array) => Float64Array;
declare const contribution: typeof contributionOf;
declare let summed: Float64Array;
declare let x: Float64Array;
declare const addWipe: typeof addIntoFirstWipingSecond;

/** Options for every call made here: no wait goes without a deadline. */
const T = { timeout: 30_000 } as const;
const TEST_TIMEOUT_MS = 90_000;

/** The functions the tests reduce with: `add` and `mul` are pushed, `max` is the engine's own. */
function addFn(a: number, b: number): number {
  return a + b;
}
function mulFn(a: number, b: number): number {
  return a * b;
}
function concatFn(a: string, b: string): string {
  return a + b;
}
function vaddFn(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

function addIntoFirstWipingSecond(a: Float64Array, b: Float64Array): Float64Array {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
  b.fill(Number.NaN);
  return a;
}

type Op = "add" | "mul" | "max";
const OPS: Op[] = ["add", "mul", "max"];
const LOCAL: Record<Op, (a: number, b: number) => number> = {
  add: addFn,
  mul: mulFn,
  max: Math.max,
};

/**
 * What engine `engine` contributes to a reduction with `op`: one number (flat) or a list of three.
 * Products stay exact (powers of 2 and 3 below 2^53), so any combination order gives one answer.
 */
function contributionOf(op: string, engine: number, flat: boolean): number | number[] {
  const one = (k: number) =>
    op === "add" ? 3 * k + 1 : op === "mul" ? [1, 2, 1, 3, 1][k % 5] : (k * 7919) % 1009;
  if (flat) return one(engine);
  return op === "mul" ? [1, 2, 1].map((x, j) => (j === 1 ? one(engine) : x)) : [0, 1, 2].map((
    j,
  ) => one(3 * engine + j));
}

/** The sequential fold of every engine's contribution, in rank order. */
function localFold(op: Op, ids: readonly number[], flat: boolean): number {
  const items = ids.flatMap((i) => {
    const c = contributionOf(op, i, flat);
    return Array.isArray(c) ? c : [c];
  });
  return items.reduce((a, b) => LOCAL[op](a, b));
}

/** What `reduce` returns on each engine: the fold over its subtree. */
function localPartials(op: Op, tree: Bintree, flat: boolean): Map<number, number> {
  const partials = new Map<number, number>();
  const visit = (node: number): number => {
    const own = contributionOf(op, node, flat);
    let acc = Array.isArray(own) ? own.reduce((a, b) => LOCAL[op](a, b)) : own;
    for (const child of childrenOf(tree, node)) acc = LOCAL[op](acc, visit(child));
    partials.set(node, acc);
    return acc;
  };
  for (const [node, parent] of tree) if (parent === null) visit(node);
  return partials;
}

interface Fixture {
  cluster: Cluster;
  client: Client;
}

/**
 * Stalls the backend's transport for `ms`: the embedded one runs on this thread, so the client's
 * own synchronous work stalls it; a Redis of the test's own is frozen (SIGSTOP). `undefined` with
 * `REDIS_URL`, which the test must not freeze.
 */
function stallOf(backend: Backend): ((ms: number) => Promise<void>) | undefined {
  if (backend.kind === "memory") {
    return (ms) => {
      const until = performance.now() + ms;
      while (performance.now() < until) { /* busy */ }
      return Promise.resolve();
    };
  }
  const server = backend.server;
  return server && (async (ms) => {
    server.pause();
    await delay(ms);
    server.resume();
  });
}

forEachBackend(BACKENDS, (backendCase, variant) => {
  function test(
    title: string,
    n: number,
    fn: (fx: Fixture, backend: Backend) => Promise<void>,
    extra: ClusterOptions = {},
    options: CaseOptions = {},
  ): void {
    backendCase(title, async (backend) => {
      await using cluster = new Cluster({
        engineTimeout: 30_000,
        progress: false,
        transport: backend.url,
        ...extra,
        n,
      });
      const client = await cluster.startAndConnect();
      await fn({ cluster, client }, backend);
    }, { timeoutMs: TEST_TIMEOUT_MS, ...options });
  }

  for (const n of [1, 2, 3, 8, 33]) {
    test(
      `TreeCommunicator.reduce() and allreduce() equal the local fold with add, mul and max, flat and non-flat, at ${n} engines`,
      n,
      async ({ client }) => {
        const dv = client.view();
        const tree = await wireTree(dv, T);
        assert.deepEqual(tree, bintree(client.ids));
        await dv.push({ add: addFn, mul: mulFn, contribution: contributionOf }, T);
        // Every case runs back to back in one task: successive reductions must not mix.
        const results = await dv.apply(async () => {
          const fns: Record<string, (a: number, b: number) => number> = {
            add,
            mul,
            max: Math.max,
          };
          const out: Record<string, unknown> = {};
          for (const op of ["add", "mul", "max"]) {
            for (const flat of [true, false]) {
              const value = contribution(op, id, flat);
              out[`${op}/${flat}/reduce`] = await com.reduce(fns[op], value, { flat });
              out[`${op}/${flat}/allreduce`] = await com.allreduce(fns[op], value, { flat });
            }
          }
          return out;
        }).get(T) as Record<string, number>[];
        for (const op of OPS) {
          for (const flat of [true, false]) {
            const total = localFold(op, client.ids, flat);
            const partials = localPartials(op, tree, flat);
            client.ids.forEach((engine, i) => {
              const got = results[i];
              assert.equal(got[`${op}/${flat}/allreduce`], total, `${op} flat=${flat} allreduce`);
              assert.equal(
                got[`${op}/${flat}/reduce`],
                partials.get(engine),
                `${op} flat=${flat} reduce on engine ${engine}`,
              );
            });
            assert.equal(partials.get(client.ids[0]), total, "the root's partial is the total");
          }
        }
      },
    );
  }

  test(
    "TreeCommunicator.reduce({ ordered: true }) concatenates strings in rank order, also for a reversed view",
    8,
    async ({ client }) => {
      for (const order of [client.ids, [...client.ids].reverse(), [5, 0, 7, 2, 3]]) {
        const dv = client.view(order);
        await wireTree(dv, T);
        await dv.push({ concat: concatFn }, T);
        const got = await dv.apply(async () => [
          await com.allreduce(concat, `<${id}>`, { ordered: true }),
          await com.reduce(concat, [`a${id}`, `b${id}`], { ordered: true, flat: false }),
          com.rank,
        ]).get(T) as [string, string, number][];
        const sequential = order.map((i) => `<${i}>`).join("");
        const sequentialLists = order.map((i) => `a${i}b${i}`).join("");
        got.forEach(([all, partial, rank], i) => {
          assert.equal(all, sequential, `allreduce on engine ${order[i]}`);
          assert.equal(rank, i);
          if (i === 0) assert.equal(partial, sequentialLists, "reduce on the root");
        });
      }
    },
  );

  test(
    "TreeCommunicator.allreduce() of a 4 MiB Float64Array adds elementwise on every engine",
    8,
    async ({ client }) => {
      const dv = client.view();
      await wireTree(dv, T);
      await dv.push({ vadd: vaddFn }, T);
      const length = (4 * 1024 * 1024) / 8;
      const ends = await dv.apply(async (length: number) => {
        const own = new Float64Array(length);
        const base = id * 1e6;
        for (let i = 0; i < length; i++) own[i] = base + i;
        summed = await com.allreduce(vadd, own); // kept in the namespace, pulled below
        return [summed[0], summed[length - 1]];
      }, length).get(T);
      const n = client.ids.length;
      const idSum = client.ids.reduce((a, b) => a + b, 0);
      const expected = (i: number) => idSum * 1e6 + n * i;
      for (const [first, last] of ends) {
        assert.equal(first, expected(0));
        assert.equal(last, expected(length - 1));
      }
      // The whole array, from the root and from a leaf.
      for (const engine of [client.ids[0], client.ids[n - 1]]) {
        const summed = await client.view(engine).pull("summed", T) as Float64Array;
        assert.ok(summed instanceof Float64Array);
        assert.equal(summed.length, length);
        for (let i = 0; i < length; i++) {
          if (summed[i] !== expected(i)) assert.fail(`element ${i} is ${summed[i]}`);
        }
      }
    },
  );

  test(
    "TreeCommunicator.allreduce() of typed arrays: an engine's f never reaches another engine's variables",
    8,
    async ({ client }) => {
      const dv = client.view();
      const tree = await wireTree(dv, T);
      // Adds into its first argument and returns it, and wipes its second: what an engine hands
      // its parent must be a value no variable of the engine holds.
      await dv.push({ addWipe: addIntoFirstWipingSecond }, T);
      const seen = await dv.apply(async () => {
        x = new Float64Array(1024).fill(id);
        const total = await com.allreduce(addWipe, x);
        total[0] += id; // each engine's total is its own
        return [x[0], x[1023], total[0], total[1023]];
      }).get(T) as number[][];
      const idSum = client.ids.reduce((a, b) => a + b, 0);
      const subtreeSums = new Map<number, number>();
      const visit = (node: number): number => {
        let sum = node;
        for (const child of childrenOf(tree, node)) sum += visit(child);
        subtreeSums.set(node, sum);
        return sum;
      };
      visit(client.ids[0]);
      seen.forEach(([first, last, total0, total1023], i) => {
        const engine = client.ids[i];
        // The engine's own f folded its children into x (its subtree's sum); nobody else did.
        assert.deepEqual([first, last], [subtreeSums.get(engine), subtreeSums.get(engine)]);
        assert.deepEqual([total0, total1023], [idSum + engine, idSum], `engine ${engine}`);
      });
    },
  );

  test(
    "TreeCommunicator: no tree inbox ever held more than two unconsumed messages, and a flood is seen",
    8,
    async ({ client }) => {
      const dv = client.view();
      await wireTree(dv, { ...T, measureBacklog: true });
      await dv.push({ add: addFn, vadd: vaddFn }, T);
      // Reductions back to back in one task, reduce included (whose non-roots return at once),
      // with 256 KiB values, then again from separate calls.
      await dv.apply(async () => {
        const v = new Float64Array(32_768).fill(id);
        for (let i = 0; i < 5; i++) {
          await com.reduce(add, id);
          await com.reduce(vadd, v);
          await com.allreduce(add, i);
          await com.allreduce(vadd, v);
        }
      }).get(T);
      for (let i = 0; i < 5; i++) {
        await dv.execute("await com.reduce(add, id); await com.allreduce(add, id)", T);
      }
      const stats = await dv.apply(() => com.stats).get(T) as TreeStats[];
      stats.forEach((s, i) => {
        const engine = client.ids[i];
        const messages = childrenOf(bintree(client.ids), engine).length + (i === 0 ? 0 : 1);
        assert.equal(s.received, 30 * messages, `engine ${engine} got every message`);
        assert.ok(s.maxHeld <= 2, `engine ${engine} held ${s.maxHeld} unconsumed messages`);
        assert.ok(s.maxBacklog <= 2, `engine ${engine}'s inbox backlog reached ${s.maxBacklog}`);
        assert.ok(s.maxBacklog >= 1);
      });
      // The measurement can fail: five messages written at once into one inbox are all seen.
      await client.system.sendMany(
        Array.from({ length: 5 }, () => ({ to: "tree.3", type: "up", content: { seq: -1 } })),
      );
      let flooded = 0;
      for (let i = 0; i < 100 && flooded < 5; i++) {
        flooded = (await client.view(3).apply(() => com.stats).get(T) as TreeStats).maxBacklog;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(flooded >= 5, `the flood raised the backlog to ${flooded}`);
    },
  );

  test(
    "TreeCommunicator.allreduce() fails on every other engine with EngineDiedError naming an engine killed mid-reduce, within the deadline",
    6,
    async ({ cluster, client }) => {
      const dv = client.view();
      await wireTree(dv, T);
      await dv.push({ add: addFn }, T);
      const victim = 3; // parent 0, children 4 and 5
      const timeout = 20_000;
      const errorsUrl = new URL("../errors.ts", import.meta.url).href;
      const running = dv.execute(
        `import { EngineDiedError } from ${JSON.stringify(errorsUrl)};
         if (id === ${victim}) await new Promise((resolve) => setTimeout(resolve, 60_000));
         const started = Date.now();
         try {
           outcome = { value: await com.allreduce(add, id, { timeout: ${timeout} }) };
         } catch (error) {
           outcome = {
             name: error.name,
             typed: error instanceof EngineDiedError,
             engineId: error.engineId,
             message: error.message,
             ms: Date.now() - started,
           };
         }`,
        T,
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      cluster.kill(victim);
      const results = await running.get({ ...T, returnExceptions: true });
      assert.ok(results[victim] instanceof EngineDiedError);
      const survivors = client.ids.filter((i) => i !== victim);
      const outcomes = await client.view(survivors).pull("outcome", T) as {
        name: string;
        typed: boolean;
        engineId: number;
        message: string;
        ms: number;
      }[];
      outcomes.forEach((o, i) => {
        assert.equal(o.name, "EngineDiedError", `engine ${survivors[i]}: ${JSON.stringify(o)}`);
        assert.ok(o.typed);
        assert.equal(o.engineId, victim);
        // EngineDiedError, not the reduction's own TimeoutError: the death was noticed first.
        assert.match(o.message, new RegExp(`^Engine ${victim} died`));
      });
    },
    { hosts: 6 },
  );

  test(
    "TreeCommunicator: a transport that stalls for longer than livenessMs is not taken for an engine's death",
    4,
    async ({ client }, backend) => {
      const stallTransport = stallOf(backend)!;
      const dv = client.view();
      await wireTree(dv, { ...T, heartbeatMs: 200, livenessMs: 1500 });
      await dv.push({ add: addFn }, T);
      // Engines 0 and 1 (one host) wait in the reduction for 2 and 3 (the other host), which
      // join late, while the transport between the hosts stalls for 3 s.
      const call = dv.apply(async () => {
        if (id >= 2) await new Promise((resolve) => setTimeout(resolve, 300));
        return await com.allreduce(add, id);
      });
      await delay(100);
      await stallTransport(3000);
      assert.deepEqual(await call.get(T), [6, 6, 6, 6]);
    },
    {},
    { ignore: variant.kind === "redis" && !hasRedisServer() },
  );

  test(
    "TreeCommunicator.allreduce() fails on every engine with RemoteError naming the engine where f threw",
    4,
    async ({ client }) => {
      const dv = client.view();
      await wireTree(dv, T);
      // Engine 2 has a child (3), so it calls f.
      const results = await dv.apply(async () => {
        const started = Date.now();
        const f = (a: number, b: number) => {
          if (id === 2) throw new RangeError("boom");
          return a + b;
        };
        try {
          await com.allreduce(f, 1, { timeout: 20_000 });
          return null;
        } catch (error) {
          return {
            name: (error as Error).name,
            message: (error as Error).message,
            engineId: (error as RemoteError).engineId,
            ms: Date.now() - started,
          };
        }
      }).get(T);
      results.forEach((r, i) => {
        assert.ok(r !== null, `engine ${i} failed`);
        if (i === 2) {
          assert.equal(r.name, "RangeError");
        } else {
          assert.equal(r.name, "RemoteError", JSON.stringify(r));
          assert.equal(r.engineId, 2);
          assert.match(r.message, /engine 2: RangeError: boom/);
        }
      });
    },
  );

  test(
    "TreeCommunicator.allreduce() times out naming an engine that never joins; wireTree() again recovers",
    3,
    async ({ client }) => {
      const dv = client.view();
      await wireTree(dv, T);
      await dv.push({ add: addFn }, T);
      const results = await dv.apply(async () => {
        if (id === 2) return null;
        try {
          // The root gives up first; engine 1 would wait longer, and learns from the root.
          await com.allreduce(add, 1, { timeout: id === 0 ? 1500 : 10_000 });
          return null;
        } catch (error) {
          return {
            name: (error as Error).name,
            engineIds: (error as { engineIds: number[] }).engineIds,
          };
        }
      }).get(T);
      assert.equal(results[2], null);
      for (const i of [0, 1]) {
        assert.deepEqual(results[i], { name: "TimeoutError", engineIds: [2] }, `engine ${i}`);
      }
      await wireTree(dv, T);
      assert.deepEqual(await dv.apply(() => com.allreduce(add, id)).get(T), [3, 3, 3]);
    },
  );
});
