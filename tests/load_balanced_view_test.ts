/**
 * LoadBalancedView (task farming) on both transports, through the public API: `map` against a
 * local map, which engine ran what, engines killed mid-map, poison tasks, retries, bad input.
 * Checks are on results and on which engine ran each task, never on wall-clock times.
 */
import assert from "node:assert/strict";
import {
  Cluster,
  type ClusterOptions,
  EngineDiedError,
  SerializationError,
  TaskAbortedError,
  TaskError,
  TimeoutError,
} from "../mod.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";

const T = { timeout: 60_000 };

/** Sleeps `ms`, then returns `x`: a task of chosen cost that does not block its host. */
async function sleepy(ms: number, x: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return x;
}

forEachBackend(BACKENDS, (backendCase) => {
  const test = (title: string, options: ClusterOptions, fn: (c: Cluster) => Promise<void>) =>
    backendCase(title, async (backend) => {
      await using cluster = new Cluster({ progress: false, transport: backend.url, ...options });
      await cluster.startAndConnect();
      await fn(cluster);
    }, { timeoutMs: 2 * T.timeout, sanitize: false });

  test(
    "LoadBalancedView.map() equals a local map for 0, 1, 7 and 1,000 items, chunksize 1 and 7, ordered and unordered",
    { n: 4 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      const f = (x: number, y: string) => `${y}${x * 3 + 1}`;
      for (const n of [0, 1, 7, 1000]) {
        const xs = Array.from({ length: n }, (_, i) => i);
        const ys = xs.map((i) => String.fromCharCode(97 + (i % 26)));
        const local = xs.map((x, i) => f(x, ys[i]));
        for (const chunksize of [1, 7]) {
          for (const ordered of [true, false]) {
            const what = `n=${n} chunksize=${chunksize} ordered=${ordered}`;
            const ar = lview.map(f, xs, ys, { chunksize, ordered });
            const iterated: string[] = [];
            for await (const value of ar) iterated.push(value);
            assert.deepEqual(await ar.get(T), local, what);
            if (ordered) assert.deepEqual(iterated, local, what);
            else assert.deepEqual([...iterated].sort(), [...local].sort(), what);
            assert.equal(ar.length, n);
            for (const e of ar.engineIds) assert.ok(cluster.client!.ids.includes(e), what);
          }
        }
      }
      // A Set and a generator are iterables too.
      const gen = function* () {
        yield 1;
        yield 2;
      };
      assert.deepEqual(await lview.map((a: number, b: number) => a + b, new Set([10, 20]), gen()), [
        11,
        22,
      ]);
    },
  );

  test(
    "LoadBalancedView.apply() answers with the bare value, and the engine it ran on",
    { n: 2 },
    async (cluster) => {
      const client = cluster.client!;
      const ar = client.loadBalancedView().apply(
        (a: number, b: number) => {
          // deno-lint-ignore no-console
          console.log("adding");
          return a + b;
        },
        2,
        3,
      );
      assert.equal(await ar, 5);
      assert.ok(client.ids.includes(ar.engineId));
      assert.equal(ar.stdout, "adding\n");
      assert.equal(ar.attempts, 1);
      // A view on some engines: only they run its tasks.
      const one = client.loadBalancedView([1]);
      const ran = one.map((x: number) => x, [1, 2, 3, 4, 5]);
      await ran;
      assert.deepEqual(ran.engineIds, [1, 1, 1, 1, 1]);
    },
  );

  test(
    "LoadBalancedView.map(): no short task waits behind a 2 s one while another engine is free",
    { n: 4 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      const costs = [2000, ...new Array(20).fill(10)];
      const ar = lview.map(sleepy, costs, costs.map((_, i) => i));
      assert.deepEqual(await ar.get(T), costs.map((_, i) => i));
      const [long, ...short] = ar.engineIds;
      assert.ok(
        !short.includes(long),
        `the engine that ran the long task (${long}) ran none of the short ones: ${short}`,
      );
      assert.ok(new Set(short).size >= 2, `the short ones spread over the other engines: ${short}`);
    },
  );

  test(
    "LoadBalancedView.map(): an engine killed mid-map loses no task and none answers twice",
    { n: 4, hosts: 4 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView(undefined, { retries: 1 });
      const n = 12;
      const ar = lview.map(sleepy, new Array(n).fill(1000), Array.from({ length: n }, (_, i) => i));
      const seen: number[] = [];
      let victim = -1;
      for await (const item of ar.items(false)) {
        assert.ok(!("error" in item), String("error" in item && item.error));
        assert.equal(item.value, item.index);
        seen.push(item.index);
        if (victim < 0) {
          // The first engine to answer took its next task at once (8 are left): kill it while
          // it runs that one.
          victim = item.engineId;
          setTimeout(() => cluster.kill(victim), 300);
        }
      }
      assert.equal(seen.length, n);
      assert.equal(new Set(seen).size, n, "every task answered once");
      assert.deepEqual(await ar.get(T), Array.from({ length: n }, (_, i) => i));
      const retried = ar.attempts.flatMap((a, i) => (a > 1 ? [i] : []));
      assert.ok(retried.length >= 1, "the task the victim held was sent again");
      for (const i of retried) assert.notEqual(ar.engineIds[i], victim);
      assert.ok(ar.attempts.every((a) => a <= 2));
    },
  );

  test(
    "LoadBalancedView.map(): a poison task that kills its engine fails alone after its retries",
    { n: 4, hosts: 4 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      // Task 5 kills whichever engine runs it: it writes its engine's id, and the test kills
      // that engine's host (a task cannot end its host from inside: a busy or failing task is
      // not a death).
      const path = await Deno.makeTempFile();
      const poison = async (path: string, x: number) => {
        if (x === 5) {
          // @ts-ignore: `id` is a name of the engine's namespace
          Deno.writeTextFileSync(path, `${id}\n`, { append: true });
          await new Promise(() => {}); // only the kill ends it
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
        return x * 10;
      };
      let killed = 0;
      let watching = true;
      const killer = (async () => {
        while (watching) {
          const ids = (await Deno.readTextFile(path)).split("\n").filter((l) => l !== "");
          for (const victim of ids.slice(killed)) cluster.kill(Number(victim));
          killed = ids.length;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const xs = Array.from({ length: 12 }, (_, i) => i);
      const ar = lview.map(poison, xs.map(() => path), xs, { retries: 1 });
      const values = await ar.get({ ...T, returnExceptions: true });
      watching = false;
      await killer;
      await Deno.remove(path);
      const error = values[5];
      assert.ok(error instanceof EngineDiedError, String(error));
      assert.match(error.message, /killed/);
      assert.match(error.message, /task 5 .*2 times; retries: 1/);
      assert.equal(ar.attempts[5], 2);
      values.forEach((v, i) => {
        if (i !== 5) assert.equal(v, i * 10);
      });
      const dead = cluster.client!.ids.filter((e) => cluster.client!.deadEngine(e));
      assert.equal(dead.length, 2, `the poison task killed two engines: ${dead}`);
      // The survivors take the next call.
      assert.deepEqual(await lview.map((x: number) => x + 1, [1, 2, 3]), [2, 3, 4]);
    },
  );

  test(
    "LoadBalancedView.map(): a failing item gives its own TaskError naming its index and engine, after its retries",
    { n: 2 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      const f = (x: number) => {
        if (x === 3) throw new RangeError("no threes");
        return x;
      };
      for (const chunksize of [1, 4]) {
        const ar = lview.map(f, [0, 1, 2, 3, 4, 5], { chunksize, retries: 2 });
        const values = await ar.get({ ...T, returnExceptions: true });
        assert.deepEqual(values.filter((_, i) => i !== 3), [0, 1, 2, 4, 5]);
        const error = values[3] as TaskError;
        assert.ok(error instanceof TaskError, String(error));
        assert.equal(error.index, 3);
        assert.equal(error.remoteName, "RangeError");
        assert.equal(error.engineId, ar.engineIds[3]);
        assert.equal(
          error.message,
          `Task 3 failed on engine ${error.engineId}: RangeError: no threes`,
        );
        assert.deepEqual(ar.attempts, [1, 1, 1, 3, 1, 1], `chunksize ${chunksize}`);
        await assert.rejects(ar.get(), (e) => e === error);
      }
    },
  );

  test(
    "LoadBalancedView.map(): deadlines, abort() and an AbortSignal end the tasks not started",
    { n: 2 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      // A deadline: the long tasks time out on their engines, the rest are not started.
      const late = lview.mapWith({ timeout: 300 }, sleepy, [5000, 5000, 5000], [0, 1, 2]);
      const lateValues = await late.get({ ...T, returnExceptions: true });
      for (const v of lateValues) assert.ok(v instanceof TimeoutError, String(v));
      // abort(): the tasks no engine took yet are skipped.
      const ar = lview.map(sleepy, new Array(10).fill(200), new Array(10).fill(1));
      await new Promise((resolve) => setTimeout(resolve, 50));
      ar.abort();
      const values = await ar.get({ ...T, returnExceptions: true });
      const aborted = values.filter((v) => v instanceof TaskAbortedError);
      assert.ok(aborted.length >= 1, `some tasks were skipped: ${values}`);
      assert.ok(values.every((v) => v === 1 || v instanceof TaskAbortedError), String(values));
      // A signal: the result rejects at once with its reason.
      const controller = new AbortController();
      const cut = lview.mapWith({ signal: controller.signal }, sleepy, [300, 300], [1, 2]);
      const reason = new Error("stop");
      controller.abort(reason);
      await assert.rejects(cut.get(), (e) => e === reason);
      // The engines go on taking tasks.
      assert.deepEqual(await lview.map((x: number) => -x, [1, 2]), [-1, -2]);
    },
  );

  test(
    "LoadBalancedView.map(): a deadline or a signal that comes while a large map is still being written ends every task",
    { n: 2 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      const xs = Array.from({ length: 20_000 }, (_, i) => i);
      const inc = (x: number) => x + 1;
      // Its tasks are written in batches: most are not written yet when the deadline passes.
      const late = await lview.mapWith({ timeout: 5 }, inc, xs).get({
        ...T,
        returnExceptions: true,
      });
      assert.equal(late.length, xs.length);
      const timedOut = late.filter((v) => v instanceof TimeoutError).length;
      // Those not written by then fail at once, unsent: most of them.
      assert.ok(timedOut > xs.length / 2, `${timedOut} tasks timed out`);
      assert.ok(late.every((v, i) => v === i + 1 || v instanceof TimeoutError));
      const controller = new AbortController();
      const reason = new Error("stop");
      const cut = lview.mapWith({ signal: controller.signal }, inc, xs);
      setTimeout(() => controller.abort(reason), 0);
      const values = await cut.get({ ...T, returnExceptions: true });
      assert.equal(values.length, xs.length);
      const stopped = values.filter((v) => v === reason).length;
      assert.ok(stopped > xs.length / 2, `${stopped} tasks ended with the signal's reason`);
      assert.ok(values.every((v, i) => v === i + 1 || v === reason));
      assert.deepEqual(await lview.map(inc, [1, 2]), [2, 3]);
    },
  );

  test(
    "LoadBalancedView.map() refuses bad input with TypeError or RangeError before sending anything",
    { n: 1 },
    async (cluster) => {
      const lview = cluster.client!.loadBalancedView();
      const id = (x: unknown) => x;
      assert.throws(() => lview.map(id), TypeError); // no iterable
      // deno-lint-ignore no-explicit-any
      assert.throws(() => lview.map(id, 5 as any), /argument 2 is not iterable/);
      assert.throws(() => lview.map(id, [1, 2], [1]), RangeError);
      // deno-lint-ignore no-explicit-any
      assert.throws(() => lview.map(42 as any, [1]), TypeError);
      assert.throws(() => lview.map(Math.max, [1]), /native or bound/);
      assert.throws(() => lview.map(id, [1], { chunksize: 0 }), RangeError);
      assert.throws(() => lview.map(id, [1], { chunksize: 1.5 }), RangeError);
      // deno-lint-ignore no-explicit-any
      assert.throws(() => lview.map(id, [1], { chunksize: "2" as any }), TypeError);
      assert.throws(() => lview.map(id, [1], { retries: -1 }), RangeError);
      assert.throws(() => lview.map(id, [Symbol("x")]), SerializationError);
      assert.throws(() => cluster.client!.loadBalancedView([7]), RangeError);
      assert.deepEqual(await lview.map(id, [1]), [1]);
    },
  );
});
