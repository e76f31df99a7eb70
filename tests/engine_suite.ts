/**
 * The engine suite (engines, `Cluster`, `Client`, `DirectView`, `AsyncResult`), written once and
 * registered for each transport and launcher by `tests/engine_test.ts` through the backend loop
 * of `tests/_backends.ts`.
 *
 * Functions shipped to the engines are written here but run there: the names they use freely
 * (`rank`, `size`, `id`, values pushed earlier) are declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Client,
  Cluster,
  type ClusterOptions,
  CompositeError,
  EngineDiedError,
  ModuleFunction,
  Reference,
  RemoteError,
  TaskAbortedError,
  TimeoutError,
} from "../mod.ts";
import type { Case } from "./_backends.ts";
import { redisKeys } from "./_redis_server.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const rank: number;
declare const size: number;
declare const notDefinedAnywhere: number;

/** One running set of engines and the client that drives them. */
export interface EngineFixture extends AsyncDisposable {
  /** The client, connected to every engine. */
  readonly client: Client;
  /** The cluster that started the engines; absent when they were started some other way. */
  readonly cluster?: Cluster;
}

/** Options of {@linkcode engineSuite}. */
export interface EngineSuiteOptions {
  /** Register only the core tests: those that need no `Cluster` of this process. */
  core?: boolean;
  /**
   * Starts `n` engines with `options`.
   * @default {startCluster}
   */
  start?: (n: number, options: ClusterOptions) => Promise<EngineFixture>;
}

/** Options for every call made here: no wait in the suite goes without a deadline. */
const T = { timeout: 15_000 } as const;
/** The deadline of one whole test. */
const TEST_TIMEOUT_MS = 45_000;

/** Starts a {@linkcode Cluster} of `n` engines; the fixture stops it. */
export async function startCluster(n: number, options: ClusterOptions): Promise<EngineFixture> {
  const cluster = new Cluster({ engineTimeout: 20_000, progress: false, ...options, n });
  const client = await cluster.startAndConnect();
  return { client, cluster, [Symbol.asyncDispose]: () => cluster.stop() };
}

/**
 * The seed notebook's `get_partition`, translated line by line: the `(start, end)` of rank
 * `rank`'s chunk of `nItems` items over `size` ranks.
 */
export function getPartition(nItems: number, rank: number, size: number): [number, number] {
  let chunkSize = Math.floor(nItems / size);
  if (nItems % size) {
    chunkSize += 1;
  }
  const start = rank * chunkSize;
  let end: number;
  if (rank + 1 === size) {
    end = nItems;
  } else {
    end = start + chunkSize;
  }
  return [start, end];
}

/** The output of the seed notebook's `get_partition` cell, as it printed it. */
const SEED_PARTITION_TABLE = [
  "3 0 (0, 4)",
  "3 1 (4, 8)",
  "3 2 (8, 10)",
  "4 0 (0, 3)",
  "4 1 (3, 6)",
  "4 2 (6, 9)",
  "4 3 (9, 10)",
  "5 0 (0, 2)",
  "5 1 (2, 4)",
  "5 2 (4, 6)",
  "5 3 (6, 8)",
  "5 4 (8, 10)",
];

const TASK_MODULE = new URL("./fixtures/task_module.ts", import.meta.url);

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65_536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(length, i + 65_536)));
  }
  return bytes;
}

/**
 * Registers the suite's cases through `backendCase` (see `forEachBackend` in `./_backends.ts`),
 * each named `"<variant>: <symbol> <behaviour>"`, on engines started on the case's backend.
 */
export function engineSuite(backendCase: Case, options: EngineSuiteOptions = {}): void {
  const start = options.start ?? startCluster;

  function test(
    title: string,
    n: number,
    fn: (fx: EngineFixture, clusterOptions: ClusterOptions) => Promise<void>,
    kind: "core" | "cluster" = "core",
    extra: ClusterOptions = {},
  ): void {
    if (kind === "cluster" && options.core) return;
    backendCase(title, async (backend) => {
      const clusterOptions = { ...backend.cluster, ...extra };
      await using fx = await start(n, clusterOptions);
      await fn(fx, clusterOptions);
    }, { timeoutMs: TEST_TIMEOUT_MS });
  }

  test("Client.ids lists every engine sorted; Client.view() targets one, some or all", 4, async ({
    client,
  }) => {
    assert.deepEqual(client.ids, [0, 1, 2, 3]);
    assert.deepEqual(client.view().targets, [0, 1, 2, 3]);
    assert.equal(await client.view(3).apply(() => id).get(T), 3);
    assert.deepEqual(await client.view([3]).apply(() => id).get(T), [3]);
    assert.deepEqual(await client.view([0, 2]).apply(() => id).get(T), [0, 2]);
    assert.throws(() => client.view(9), RangeError);
    assert.throws(() => client.view([1, 1]), RangeError);
    assert.throws(() => client.view([]), RangeError);
  });

  test("DirectView results follow the target order, reversed or strided", 4, async ({ client }) => {
    const reversed = client.view([3, 2, 1, 0]);
    assert.deepEqual(await reversed.apply(() => id).get(T), [3, 2, 1, 0]);
    assert.deepEqual(await reversed.apply(() => id * 2).getDict(T), { 3: 6, 2: 4, 1: 2, 0: 0 });
    await reversed.scatter("part", [10, 11, 12, 13, 14, 15, 16, 17], T);
    // Engine 3, first target, got the first chunk.
    assert.deepEqual(await client.view().pull("part", T), [[16, 17], [14, 15], [12, 13], [10, 11]]);
    assert.deepEqual(await reversed.gather("part", T), [10, 11, 12, 13, 14, 15, 16, 17]);
    const strided = client.view([1, 3]);
    assert.deepEqual(await strided.apply(() => id * 10).get(T), [10, 30]);
  });

  test("DirectView.scatter() splits into contiguous chunks as IPython Parallel does", 3, async ({
    client,
  }) => {
    const dv = client.view();
    const items = Array.from({ length: 10 }, (_, i) => i);
    await dv.scatter("chunk", items, T);
    const chunks = await dv.pull("chunk", T) as number[][];
    assert.deepEqual(chunks, [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]);
    const sizes = chunks.map((c) => c.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
    assert.deepEqual(sizes, [...sizes].sort((a, b) => b - a), "the first chunks are the larger");
    assert.deepEqual(chunks.flat(), items, "contiguous, in engine order");
    assert.deepEqual(await dv.gather("chunk", T), items);

    // Fewer items than engines: the last engines get empty chunks.
    await dv.scatter("few", ["a", "b"], T);
    assert.deepEqual(await dv.pull("few", T), [["a"], ["b"], []]);

    // flatten: a one-item chunk is pushed as the item itself (the seed's `rank`).
    await dv.scatter("rank", client.ids, { ...T, flatten: true });
    assert.deepEqual(await dv.pull("rank", T), [0, 1, 2]);
    await dv.scatter("unflat", client.ids, T);
    assert.deepEqual(await dv.pull("unflat", T), [[0], [1], [2]]);
    assert.deepEqual(await dv.gather("rank", T), [0, 1, 2]);

    // A typed array is split into typed arrays of its kind.
    const floats = Float64Array.from({ length: 7 }, (_, i) => i / 2);
    await dv.scatter("floats", floats, T);
    const parts = await dv.pull("floats", T) as Float64Array[];
    assert.ok(parts.every((p) => p instanceof Float64Array));
    assert.deepEqual(parts.map((p) => p.length), [3, 2, 2]);
    assert.deepEqual(await dv.gather("floats", T), floats);
  });

  test(
    "the seed's get_partition table (10 items over 3, 4, 5 ranks) comes out of the engines",
    5,
    async ({
      client,
    }) => {
      const lines: string[] = [];
      for (const ranks of [3, 4, 5]) {
        const view = client.view(client.ids.slice(0, ranks));
        // As the seed does: scatter the ranks, push the size and the function.
        await view.scatter("rank", view.targets, { ...T, flatten: true });
        await view.push({ size: ranks, getPartition }, T);
        const bounds = await view
          .apply((n: number) => getPartition(n, rank, size), 10)
          .get(T);
        const viaReferences = await view
          .apply(getPartition, 10, new Reference("rank"), new Reference("size"))
          .get(T);
        assert.deepEqual(viaReferences, bounds);
        bounds.forEach(([start, end], r) => lines.push(`${ranks} ${r} (${start}, ${end})`));
      }
      assert.deepEqual(lines, SEED_PARTITION_TABLE);
    },
  );

  test("DirectView.apply() resolves Reference arguments and awaits async functions", 2, async ({
    client,
  }) => {
    const dv = client.view();
    // rank and size are in every namespace from the start.
    assert.deepEqual(
      await dv.apply((r: number, s: number) => [r, s], new Reference("rank"), new Reference("size"))
        .get(T),
      [[0, 2], [1, 2]],
    );
    await dv.push({ offset: 100 }, T);
    const ar = dv.apply(
      async (a: number, b: number) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return a + b + id;
      },
      new Reference("offset"),
      5,
    );
    assert.deepEqual(await ar, [105, 106], "an AsyncResult can be awaited like a promise");
    const missing = dv.apply((x: unknown) => x, new Reference("nothingHere"));
    const error = await missing.get(T).catch((e) => e);
    assert.ok(error instanceof CompositeError);
    for (const e of error.errors) {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.remoteName, "ReferenceError");
      assert.match(e.remoteMessage, /nothingHere/);
    }
  });

  test("DirectView push/pull/gather round-trip typed arrays, Maps and 1 MiB buffers", 2, async ({
    client,
  }) => {
    const dv = client.view();
    const values = {
      f64: Float64Array.from([1.5, -2.25, Math.PI]),
      f32: Float32Array.from([0.5, 1e-3]),
      i16: Int16Array.from([-32768, 0, 32767]),
      u8c: Uint8ClampedArray.from([0, 255]),
      big: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]),
      map: new Map<unknown, unknown>([[1, "one"], ["nested", new Map([[2, [new Set([3])]]])]]),
      mib: randomBytes(1 << 20),
      mibF64: new Float64Array(1 << 17).map((_, i) => i * 0.25),
    };
    await dv.push(values, T);
    for (const [key, value] of Object.entries(values)) {
      const pulled = await dv.pull(key, T);
      assert.equal(pulled.length, 2);
      for (const v of pulled) assert.deepEqual(v, value, `pull("${key}")`);
    }
    assert.deepEqual(await dv.pull(["i16", "map"], T), [
      [values.i16, values.map],
      [values.i16, values.map],
    ]);
    // A 1 MiB argument of apply, and a 1 MiB result.
    const echoed = await dv.apply((b: Uint8Array) => b, values.mib).get(T);
    for (const b of echoed) assert.deepEqual(b, values.mib);
    assert.deepEqual(
      await dv.apply((m: Map<unknown, unknown>) => m.size, values.map).get(T),
      [2, 2],
    );
    // Scatter and gather of a 1 MiB buffer and a Map-valued list.
    await dv.scatter("halves", values.mib, T);
    assert.deepEqual(await dv.gather("halves", T), values.mib);
    const maps = [new Map([["a", 1]]), new Map([["b", 2]]), new Map([["c", 3]])];
    await dv.scatter("maps", maps, T);
    assert.deepEqual(await dv.gather("maps", T), maps);
  });

  test("DirectView.execute() keeps const, let, var, functions, classes and imports", 2, async ({
    client,
  }) => {
    const dv = client.view();
    await dv.execute(
      `
      const base = await Promise.resolve(10);
      let counter = rank;
      var legacy = "v";
      function twice(x) { return 2 * x; }
      class Point { constructor(x) { this.x = x; } norm() { return Math.abs(this.x); } }
      import { md5Hex } from ${JSON.stringify(TASK_MODULE.href)};
      import * as nodePath from "node:path";
      total = rank * size;
      `,
      T,
    );
    await dv.execute("counter += base; const p = new Point(-counter);", T);
    assert.deepEqual(await dv.pull("counter", T), [10, 11]);
    assert.deepEqual(await dv.pull("total", T), [0, 2]);
    assert.deepEqual(await dv.pull("legacy", T), ["v", "v"]);
    assert.deepEqual(
      await dv.apply(() => [twice(base), p.norm(), md5Hex(""), nodePath.basename("/a/b.txt")])
        .get(T),
      [
        [20, 10, "d41d8cd98f00b204e9800998ecf8427e", "b.txt"],
        [20, 11, "d41d8cd98f00b204e9800998ecf8427e", "b.txt"],
      ],
    );
    // A later cell can redeclare a name, as a notebook cell can.
    await dv.execute("const base = 1;", T);
    assert.deepEqual(await dv.pull("base", T), [1, 1]);
    // clear() forgets everything but id, rank and size.
    await dv.clear(T);
    const error = await dv.pull("base", T).get(T).catch((e) => e);
    assert.ok(error instanceof CompositeError);
    assert.deepEqual(await dv.pull(["id", "rank", "size"], T), [[0, 0, 2], [1, 1, 2]]);
  });

  test(
    "DirectView.apply() runs a ModuleFunction: an export of a module each engine imports",
    2,
    async ({
      client,
    }) => {
      const dv = client.view();
      assert.deepEqual(
        await dv.apply(new ModuleFunction(TASK_MODULE, "md5Hex"), "abc").get(T),
        ["900150983cd24fb0d6963f7d28e17f72", "900150983cd24fb0d6963f7d28e17f72"],
      );
      assert.deepEqual(
        await dv.apply(
          new ModuleFunction(TASK_MODULE, "boundsOf"),
          10,
          new Reference("rank"),
          new Reference("size"),
        ).get(T),
        [[0, 5], [5, 10]],
      );
      assert.deepEqual(await dv.apply(new ModuleFunction(TASK_MODULE.href), "x").get(T), [
        "hello x",
        "hello x",
      ]);
      await dv.push({ task: new ModuleFunction(TASK_MODULE, "md5Hex") }, T);
      assert.equal(
        await client.view(1).apply(() => task("")).get(T),
        "d41d8cd98f00b204e9800998ecf8427e",
      );
      const error = await client.view(0).apply(new ModuleFunction(TASK_MODULE, "notAFunction"))
        .get(T).catch((e) => e);
      assert.ok(error instanceof RemoteError);
      assert.match(error.remoteMessage, /notAFunction/);
    },
  );

  test(
    "DirectView.apply() of a function using a name the engine lacks throws RemoteError naming it",
    2,
    async ({
      client,
    }) => {
      const one = await client.view(1).apply(() => notDefinedAnywhere + 1).get(T).catch((e) => e);
      assert.ok(one instanceof RemoteError, String(one));
      assert.equal(one.engineId, 1);
      assert.equal(one.remoteName, "ReferenceError");
      assert.match(one.remoteMessage, /\bnotDefinedAnywhere\b/);
      assert.match(one.message, /notDefinedAnywhere/);
      // A global of the engine's runtime is found; a local of this test file is not.
      const local = 5;
      const both = await client.view().apply(() => Math.max(local, 1)).get(T).catch((e) => e);
      assert.ok(both instanceof CompositeError);
      assert.match(both.message, /\blocal\b/);
      // `typeof` of a missing name is "undefined", as in JavaScript: feature tests still work.
      assert.deepEqual(
        await client.view(0).apply((x: number) => [
          typeof notDefinedAnywhere,
          typeof x,
          typeof rank,
          typeof Deno,
        ], 1).get(T),
        ["undefined", "number", "number", "object"],
      );
      await client.view(0).execute("const kinds = [typeof require, typeof id, typeof Math];", T);
      assert.deepEqual(await client.view(0).pull("kinds", T), ["undefined", "number", "object"]);
    },
  );

  test(
    "AsyncResult.stdout and .stderr hold each engine's console output in engine order",
    3,
    async ({
      client,
    }) => {
      const task = (tag: string) => {
        // deno-lint-ignore no-console -- the task prints on purpose
        console.log(tag, "out", rank);
        // deno-lint-ignore no-console -- the task prints on purpose
        console.info("info", { rank });
        // deno-lint-ignore no-console -- the task prints on purpose
        console.error(tag, "err", rank);
        // deno-lint-ignore no-console -- the task prints on purpose
        console.warn("warn");
        return rank;
      };
      const ar = client.view([2, 0, 1]).apply(task, "t");
      assert.deepEqual(await ar.get(T), [2, 0, 1]);
      assert.deepEqual(ar.stdout, [
        "t out 2\ninfo { rank: 2 }\n",
        "t out 0\ninfo { rank: 0 }\n",
        "t out 1\ninfo { rank: 1 }\n",
      ]);
      assert.deepEqual(ar.stderr, ["t err 2\nwarn\n", "t err 0\nwarn\n", "t err 1\nwarn\n"]);
      // Output is per task: the next task starts empty; execute captures too.
      const quiet = client.view().apply(() => 0);
      await quiet.get(T);
      assert.deepEqual(quiet.stdout, ["", "", ""]);
      const cell = client.view([0]).execute("console.log('cell', id)");
      await cell.get(T);
      assert.deepEqual(cell.stdout, ["cell 0\n"]);
    },
  );

  test("RemoteError carries engineId, remoteName, remoteMessage and remoteStack", 2, async ({
    client,
  }) => {
    const error = await client.view(1).apply(function failing() {
      throw new RangeError(`bad rank ${rank}`);
    }).get(T).catch((e) => e);
    assert.ok(error instanceof RemoteError);
    assert.equal(error.engineId, 1);
    assert.equal(error.remoteName, "RangeError");
    assert.equal(error.remoteMessage, "bad rank 1");
    assert.match(error.remoteStack, /RangeError: bad rank 1/);
    assert.match(error.message, /engine 1/);
    await assert.rejects(
      client.view(0).execute("throw new TypeError('in a cell')").get(T),
      (e: unknown) => e instanceof RemoteError && e.remoteName === "TypeError",
    );
    await assert.rejects(
      client.view(0).execute("const = ;").get(T),
      (e: unknown) => e instanceof RemoteError && e.remoteName === "SyntaxError",
    );
    // A result that cannot cross the wire fails the task; the engine goes on.
    const unsendable = await client.view(1).apply(() => Symbol("no")).get(T).catch((e) => e);
    assert.ok(unsendable instanceof RemoteError, String(unsendable));
    assert.equal(unsendable.engineId, 1);
    assert.equal(unsendable.remoteName, "SerializationError");
    assert.equal(await client.view(1).apply(() => id).get(T), 1);
  });

  test(
    "AsyncResult.stdout keeps apart the output of engines sharing one host",
    2,
    async ({
      client,
    }) => {
      const chatty = async () => {
        for (let i = 0; i < 3; i++) {
          // deno-lint-ignore no-console -- the task prints on purpose
          console.log(`engine ${rank} line ${i}`);
          await new Promise((resolve) => setTimeout(resolve, 10 + 7 * rank));
        }
        return rank;
      };
      const ar = client.view().apply(chatty);
      await ar.get(T);
      assert.deepEqual(
        ar.stdout,
        [0, 1].map((r) => `engine ${r} line 0\nengine ${r} line 1\nengine ${r} line 2\n`),
      );
    },
    "core",
    { hosts: 1 },
  );

  test(
    "DirectView sends a call once per host; each engine answers on its own, in call order",
    6,
    async ({ client }) => {
      const hosts = new Set(client.ids.map((e) => client.hostOf(e)));
      const before = client.system.stats;
      assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2, 3, 4, 5]);
      const after = client.system.stats;
      assert.equal(after.sent - before.sent, hosts.size);
      assert.equal(after.received - before.received, 6);

      // Calls not awaited in between run on each engine in the order they were made.
      const dv = client.view();
      await dv.execute("seen = []", T);
      const calls = Array.from({ length: 20 }, (_, i) => dv.execute(`seen.push(${i})`));
      await Promise.all(calls.map((ar) => ar.get(T)));
      const expected = Array.from({ length: 20 }, (_, i) => i);
      assert.deepEqual(await dv.pull("seen", T), client.ids.map(() => expected));

      // A dispatcher asked for an engine its host does not run answers in that engine's name.
      const [host] = hosts;
      const answer = client.system.expectReply("lost_7", "engine.7", 10_000);
      await client.system.send(`dispatch.${host}`, "dispatch", {
        call: "lost",
        type: "execute",
        engineIds: [7],
        content: { code: "1" },
        replyTo: client.system.replyAddress,
      });
      const error = await answer.catch((e) => e);
      assert.ok(error instanceof RemoteError, String(error));
      assert.equal(error.engineId, 7);
      assert.equal(error.remoteName, "EngineDiedError");
      assert.match(error.remoteMessage, /engine\.7: it does not run on host/);

      // A malformed request fails the calls it names, with a TypeError saying what is wrong.
      const malformed = client.system.expectReply("bad_0", "engine.0", 10_000);
      await client.system.send(`dispatch.${client.hostOf(0)}`, "dispatch", {
        call: "bad",
        type: "execute",
        engineIds: [0],
        contents: [],
        replyTo: client.system.replyAddress,
      });
      const refused = await malformed.catch((e) => e);
      assert.ok(refused instanceof RemoteError, String(refused));
      assert.equal(refused.remoteName, "TypeError");
      assert.match(refused.remoteMessage, /contents must be an array with one content per engine/);
      assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2, 3, 4, 5]);
    },
    "cluster",
    { hosts: 2 },
  );

  test("CompositeError lists each failing engine in engine order", 3, async ({ client }) => {
    const failIfNotZero = () => {
      if (rank !== 0) throw new Error(`engine ${rank} says no`);
      return "fine";
    };
    const error = await client.view([2, 0, 1]).apply(failIfNotZero).get(T).catch((e) => e);
    assert.ok(error instanceof CompositeError, String(error));
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(error.engineIds, [2, 1]);
    assert.deepEqual(error.errors.map((e: RemoteError) => e.engineId), [2, 1]);
    const lines = error.message.split("\n");
    assert.match(lines[0], /2 engines failed/);
    assert.match(lines[1], /engine 2.*Error: engine 2 says no/);
    assert.match(lines[2], /engine 1.*Error: engine 1 says no/);
  });

  test("AsyncResult.get({ returnExceptions: true }) returns errors in place of results", 3, async ({
    client,
  }) => {
    const ar = client.view().apply(() => {
      if (rank === 1) throw new SyntaxError("one");
      return rank;
    });
    const values = await ar.get({ ...T, returnExceptions: true });
    assert.equal(values[0], 0);
    assert.ok(values[1] instanceof RemoteError);
    assert.equal((values[1] as unknown as RemoteError).remoteName, "SyntaxError");
    assert.equal(values[2], 2);
    await assert.rejects(ar.get(T), RemoteError);
  });

  test("AsyncResult.get({ timeout }) rejects with TimeoutError naming the slow engines", 2, async ({
    client,
  }) => {
    // Generous margins: the fast engine must answer within the deadline on a loaded machine.
    const slowOn = async (slowRank: number, ms: number) => {
      if (rank === slowRank) await new Promise((resolve) => setTimeout(resolve, ms));
      return rank;
    };
    const ar = client.view().apply(slowOn, 1, 2500);
    const error = await ar.get({ timeout: 1000 }).catch((e) => e);
    assert.ok(error instanceof TimeoutError, String(error));
    assert.deepEqual(error.engineIds, [1]);
    assert.equal(ar.ready(), false, "it did not wait for the slow engine");
    // The call goes on: a later get() sees it finish.
    assert.deepEqual(await ar.get(T), [0, 1]);
    // A call-level timeout fails the engines that have not answered.
    const call = client.view().applyWith({ timeout: 1000 }, slowOn, 0, 2500);
    const values = await call.get({ ...T, returnExceptions: true });
    assert.ok(values[0] instanceof TimeoutError, String(values[0]));
    assert.equal(values[1], 1);
    // An aborted signal rejects get() at once.
    await assert.rejects(
      client.view().apply(() => 0).get({ signal: AbortSignal.abort(new Error("stop")) }),
      /stop/,
    );
  });

  test("AsyncResult getDict, ready, wait, timings, elapsed and async iteration", 2, async ({
    client,
  }) => {
    const slow = async (ms: number) => {
      // Engine 0 answers last.
      await new Promise((resolve) => setTimeout(resolve, rank === 0 ? ms : 0));
      return rank * 10;
    };
    const ar = client.view().apply(slow, 800);
    assert.equal(ar.ready(), false);
    const arrivals: { engineId: number; value: unknown }[] = [];
    for await (const partial of ar) arrivals.push(partial);
    assert.deepEqual(arrivals, [{ engineId: 1, value: 10 }, { engineId: 0, value: 0 }]);
    assert.equal(await ar.wait(T.timeout), true);
    assert.equal(ar.ready(), true);
    assert.deepEqual(await ar.getDict(T), { 0: 0, 1: 10 });
    const timings = ar.timings;
    assert.deepEqual(timings.map((t) => t.engineId), [0, 1]);
    for (const t of timings) {
      assert.ok(t.started !== undefined && t.completed !== undefined);
      assert.ok(t.submitted <= t.started + 5, "submitted before started (same machine)");
      assert.ok(t.started <= t.completed);
    }
    // Engine 0 slept, engine 1 did not: the timings and elapsed say so (same machine's clock).
    const [run0, run1] = timings.map((t) => t.completed! - t.started!);
    assert.ok(run0 > run1, `engine 0 ran ${run0} ms, engine 1 ${run1} ms`);
    assert.ok(ar.elapsed >= run0 - 5, `elapsed ${ar.elapsed}, engine 0 ran ${run0} ms`);

    const pending = client.view().apply(slow, 600);
    assert.equal(await pending.wait(50), false);
    assert.equal(pending.ready(), false);
    assert.equal(await pending.wait(T.timeout), true);
    // Errors come through iteration in place.
    const failing = client.view(0).apply(() => {
      throw new Error("iterated");
    });
    for await (const { engineId, value } of failing) {
      assert.equal(engineId, 0);
      assert.ok(value instanceof RemoteError);
    }
  });

  test("AsyncResult.abort() cancels a call still queued behind a running one", 2, async ({
    client,
  }) => {
    const view = client.view(0);
    const running = view.apply(async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return "ran";
    });
    const queued = view.apply(() => "should not run");
    queued.abort();
    assert.equal(await running.get(T), "ran");
    const error = await queued.get(T).catch((e) => e);
    assert.ok(error instanceof TaskAbortedError, String(error));
    assert.equal(error.engineId, 0);
    assert.equal(await view.apply(() => "next").get(T), "next");
  });

  test("Cluster.kill() of an engine mid-task fails the task with EngineDiedError", 2, async ({
    client,
    cluster,
  }) => {
    const ar = client.view().apply(async () => {
      await new Promise((resolve) => setTimeout(resolve, rank === 1 ? 30_000 : 0));
      return rank;
    });
    // Wait until engine 1 is surely working on it.
    for await (const { engineId } of ar) if (engineId === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
    cluster!.kill(1);
    const values = await ar.get({ ...T, returnExceptions: true });
    assert.equal(values[0], 0);
    assert.ok(values[1] instanceof EngineDiedError, String(values[1]));
    assert.equal((values[1] as unknown as EngineDiedError).engineId, 1);
    await assert.rejects(client.view(1).apply(() => 0).get(T), EngineDiedError);
  }, "cluster");

  test(
    "Cluster gives each host a block of neighbouring engine ids; Cluster.kill() ends a whole host",
    4,
    async ({
      client,
      cluster,
    }) => {
      // Engines of one host share one global object.
      const tags = await client.view().apply(() => {
        const g = globalThis as { hostTag?: string };
        return g.hostTag ??= crypto.randomUUID();
      }).get(T);
      assert.equal(new Set(tags).size, 2);
      assert.deepEqual([tags[0], tags[2]], [tags[1], tags[3]]);
      assert.notEqual(tags[0], tags[2]);
      assert.equal(client.hostOf(0), client.hostOf(1));
      const died: number[] = [];
      cluster!.addEventListener("enginedied", (e) => {
        died.push((e as CustomEvent<{ engineId: number }>).detail.engineId);
      });
      cluster!.kill(2);
      assert.deepEqual(died.sort(), [2, 3]);
      const values = await client.view().apply(() => id).get({ ...T, returnExceptions: true });
      assert.equal(values[0], 0);
      assert.equal(values[1], 1);
      assert.ok(values[2] instanceof EngineDiedError);
      assert.ok(values[3] instanceof EngineDiedError);
      // A broadcast over both hosts keeps the survivors' results.
      const spread = await client.broadcastView([3, 0, 2, 1]).apply(() => id).get({
        ...T,
        returnExceptions: true,
      });
      assert.ok(spread[0] instanceof EngineDiedError);
      assert.equal(spread[1], 0);
      assert.ok(spread[2] instanceof EngineDiedError);
      assert.equal(spread[3], 1);
      assert.throws(() => cluster!.kill(7), RangeError);
    },
    "cluster",
    { hosts: 2 },
  );

  test("Cluster.stop() ends engines stuck in a CPU-bound task within its grace period", 2, async ({
    client,
    cluster,
  }) => {
    const ar = client.view(0).apply(() => {
      const until = Date.now() + 60_000;
      while (Date.now() < until) { /* busy */ }
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const late = await ar.get({ timeout: 200 }).catch((e) => e);
    assert.ok(late instanceof TimeoutError, String(late));
    // The task runs 60 s, longer than this case's hang guard: stop() did not wait for it.
    await cluster!.stop();
    await assert.rejects(ar.get(T)); // closed with the client, not left hanging
  }, "cluster");

  test(
    "Cluster.stop() right after Cluster.kill() leaves no host behind",
    2,
    async ({ cluster }) => {
      cluster!.kill(0);
      cluster!.kill(1);
      await cluster!.stop();
    },
    "cluster",
  );

  test("Cluster.stop() leaves no stream, blob or connection behind", 2, async (
    { client, cluster },
    clusterOptions,
  ) => {
    const dv = client.view();
    await dv.push({ big: randomBytes(1 << 20) }, T); // stored once as a blob
    await dv.apply(() => 0).get(T);
    const url = clusterOptions.transport ?? "memory:";
    const prefix = `${cluster!.namespace}:`;
    if (url.startsWith("redis")) {
      const before = await redisKeys(url, prefix);
      assert.ok(before.some((k) => k.includes(":inbox:engine.")), before.join(", "));
      assert.ok(before.some((k) => k.includes(":blob:")), before.join(", "));
    }
    // A stop() called while another runs resolves only once that one finished.
    let firstDone = false;
    const first = cluster!.stop().then(() => (firstDone = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await cluster!.stop();
    assert.ok(firstDone, "the second stop() waited for the first");
    await first;
    await cluster!.stop();
    if (url.startsWith("redis")) assert.deepEqual(await redisKeys(url, prefix), []);
    // The sanitizers check that no worker, process, socket or timer is left.
  }, "cluster");
}

// Used by shipped functions only: declared so that the type checker knows them.
declare const twice: (x: number) => number;
declare const base: number;
declare const p: { norm(): number };
declare const md5Hex: (s: string) => string;
declare const nodePath: { basename(p: string): string };
declare const task: (s: string) => string;
