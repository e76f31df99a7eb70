/**
 * `map` on a DirectView and a BroadcastView (scatter, apply and gather in one call) on both
 * transports, through the public API: against a local map, per-item errors, bad input.
 */
import assert from "node:assert/strict";
import {
  type BroadcastView,
  Cluster,
  type ClusterOptions,
  type DirectView,
  SerializationError,
  TaskError,
} from "../mod.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";

const T = { timeout: 60_000 };

type MakeView = (cluster: Cluster) => DirectView | BroadcastView;
const kinds: [string, MakeView][] = [
  ["DirectView", (c) => c.client!.view()],
  ["BroadcastView", (c) => c.client!.broadcastView()],
];

forEachBackend(BACKENDS, (backendCase) => {
  const test = (title: string, options: ClusterOptions, fn: (c: Cluster) => Promise<void>) =>
    backendCase(title, async (backend) => {
      await using cluster = new Cluster({ progress: false, transport: backend.url, ...options });
      await cluster.startAndConnect();
      await fn(cluster);
    }, { timeoutMs: 2 * T.timeout, sanitize: false });

  for (const [kind, make] of kinds) {
    test(
      `${kind}.map() equals a local map for 0, 1, 7 and 1,000 items, ordered and unordered`,
      { n: 4, hosts: 2 },
      async (cluster) => {
        const view = make(cluster);
        const f = (x: number, y: string) => `${y}${x * 3 + 1}`;
        for (const n of [0, 1, 7, 1000]) {
          const xs = Array.from({ length: n }, (_, i) => i);
          const ys = xs.map((i) => String.fromCharCode(97 + (i % 26)));
          const local = xs.map((x, i) => f(x, ys[i]));
          for (const ordered of [true, false]) {
            const what = `n=${n} ordered=${ordered}`;
            const ar = view.map(f, xs, ys, { ordered });
            const iterated: string[] = [];
            for await (const value of ar) iterated.push(value);
            assert.deepEqual(await ar.get(T), local, what);
            if (ordered) assert.deepEqual(iterated, local, what);
            else assert.deepEqual([...iterated].sort(), [...local].sort(), what);
            assert.equal(ar.length, n);
            // Contiguous partitions in target order, the first ones the larger (as scatter).
            const expected = xs.map((i) => {
              const base = Math.floor(n / 4), extra = n % 4;
              const big = extra * (base + 1);
              return view.targets[
                i < big ? Math.floor(i / (base + 1)) : extra + Math.floor((i - big) / base)
              ];
            });
            assert.deepEqual(ar.engineIds, expected, what);
          }
        }
        // One call for the whole map: its id fetches it again.
        const ar = view.map((x: number) => x * 2, [1, 2, 3]);
        assert.deepEqual(await ar, [2, 4, 6]);
        assert.deepEqual(await view.mapWith({}, (x: number) => -x, new Set([1, 2])), [-1, -2]);
      },
    );

    test(
      `${kind}.map(): an item that throws fails alone, naming its index and engine; output comes back`,
      { n: 2 },
      async (cluster) => {
        const view = make(cluster);
        const f = (x: number) => {
          // deno-lint-ignore no-console
          console.log(`item ${x}`);
          if (x === 3) throw new RangeError("no threes");
          return x;
        };
        const ar = view.map(f, [0, 1, 2, 3, 4, 5]);
        const values = await ar.get({ ...T, returnExceptions: true });
        assert.deepEqual(values.filter((_, i) => i !== 3), [0, 1, 2, 4, 5]);
        const error = values[3] as TaskError;
        assert.ok(error instanceof TaskError, String(error));
        assert.equal(error.index, 3);
        assert.equal(error.engineId, view.targets[1]);
        assert.equal(
          error.message,
          `Task 3 failed on engine ${view.targets[1]}: RangeError: no threes`,
        );
        await assert.rejects(ar.get(), (e) => e === error);
        assert.deepEqual(ar.stdout, [
          "item 0\nitem 1\nitem 2\n",
          "",
          "",
          "item 3\nitem 4\nitem 5\n",
          "",
          "",
        ]);
      },
    );

    test(
      `${kind}.map() refuses bad input with TypeError or RangeError before sending anything`,
      { n: 2 },
      async (cluster) => {
        const view = make(cluster);
        const id = (x: unknown) => x;
        assert.throws(() => view.map(id), TypeError); // no iterable
        // deno-lint-ignore no-explicit-any
        assert.throws(() => view.map(id, 5 as any), /argument 2 is not iterable/);
        assert.throws(() => view.map(id, [1, 2], [1]), RangeError);
        // deno-lint-ignore no-explicit-any
        assert.throws(() => view.map(42 as any, [1]), TypeError);
        assert.throws(() => view.map(Math.max, [1]), /native or bound/);
        // deno-lint-ignore no-explicit-any
        assert.throws(() => view.map(id, [1], { chunksize: 2 } as any), /load-balanced/);
        // deno-lint-ignore no-explicit-any
        assert.throws(() => view.map(id, [1], { ordered: "yes" } as any), TypeError);
        assert.throws(() => view.map(id, [1], { timeout: -1 }), RangeError);
        assert.throws(() => view.map(id, [Symbol("x")]), SerializationError);
        assert.deepEqual(await view.map(id, [1, 2, 3]), [1, 2, 3]);
      },
    );
  }
});
