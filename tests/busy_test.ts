/**
 * Busy is not dead: a task may compute for as long as it needs without yielding, and its engine,
 * its host's other engines and the tree reductions waiting on it live on. A task that blocks its
 * host past its call's deadline fails that call with `TimeoutError`, and under `restart: true` its
 * host is replaced so that the engine answers again. What a task does to the thread it shares
 * with its neighbours (`Deno.exit()`, an unhandled rejection, an uncaught error from a timer, a
 * stack overflow) fails at most that task. Run on the embedded transport (worker launcher) and on
 * Redis (worker and process launchers).
 *
 * The tasks block their event loop with `Atomics.wait`: synchronous, it keeps the loop from
 * running exactly as a computation does, without taking the cores the other tests need.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  Cluster,
  type ClusterOptions,
  EngineDiedError,
  RemoteError,
  TimeoutError,
  type TreeCommunicator,
} from "../mod.ts";
import { waitUntil } from "./_async.ts";
import { type Backend, forEachBackend, LAUNCHERS } from "./_backends.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const com: TreeCommunicator;

const T = { timeout: 120_000 } as const;
const TEST_TIMEOUT_MS = 240_000;

/** Collects the `engineId`s of the `"enginedied"` events of `target`. */
function deaths(target: EventTarget): number[] {
  const seen: number[] = [];
  target.addEventListener("enginedied", (event) => {
    seen.push((event as CustomEvent<{ engineId: number }>).detail.engineId);
  });
  return seen;
}

forEachBackend(LAUNCHERS, (test) => {
  function cluster(b: Backend, n: number, extra: ClusterOptions = {}): Cluster {
    return new Cluster({ progress: false, engineTimeout: 60_000, ...b.cluster, ...extra, n });
  }

  test("a 10 s synchronous task on every engine of 8 completes, and no engine dies", async (b) => {
    await using c = cluster(b, 8, { hosts: 8 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const clientDied = deaths(client);
    const values = await client.view().apply((ms: number) => {
      const begun = Date.now();
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      return [id, Date.now() - begun >= ms];
    }, 10_000).get(T);
    assert.deepEqual(values, [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [i, true]));
    assert.deepEqual([died, clientDied], [[], []]);
    assert.deepEqual(await client.broadcastView().apply(() => id).get(T), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test("a task that computes 4 s without yielding on hosts of several engines completes", async (b) => {
    await using c = cluster(b, 4, { hosts: 2 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const values = await client.view().apply(() => {
      const end = Date.now() + 4000;
      let spins = 0;
      while (Date.now() < end) spins++;
      return spins > 0 ? id : -1;
    }).get(T);
    assert.deepEqual(values, [0, 1, 2, 3]);
    assert.deepEqual(died, []);
  });

  test("TreeCommunicator.allreduce() completes when one engine computes 10 s before joining", async (b) => {
    await using c = cluster(b, 4, { hosts: 4 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const dv = client.view();
    await dv.wireTree(T); // default pings: a peer silent for 5 s would be taken for dead
    const sums = await dv.apply(
      async (late: number, ms: number) => {
        if (id === late) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
        return await com.allreduce((a: number, b: number) => a + b, id, { timeout: 60_000 });
      },
      2,
      10_000,
    ).get(T);
    assert.deepEqual(sums, [6, 6, 6, 6]);
    assert.deepEqual(died, []);
  });

  test("a task that never returns fails its call with TimeoutError at its deadline, and its engine stays alive", async (b) => {
    await using c = cluster(b, 2, { hosts: 2 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const stuck = await client.view(0).applyWith({ timeout: 1500 }, () => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 6000);
      return "late";
    }).get().catch((e) => e);
    assert.ok(stuck instanceof TimeoutError, String(stuck));
    assert.deepEqual(stuck.engineIds, [0]);
    // Without `restart`, the engine finishes its task and answers again.
    assert.deepEqual(await client.view(0).apply(() => id).get(T), 0);
    assert.deepEqual(died, []);
  });

  test("Cluster({ restart: true }) replaces a host whose task overran its deadline; the engine answers again", async (b) => {
    await using c = cluster(b, 4, { hosts: 2, restart: true });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const restarted: number[] = [];
    c.addEventListener("enginerestarted", (event) => {
      restarted.push((event as CustomEvent<{ engineId: number }>).detail.engineId);
    });
    await client.view().push({ kept: "yes" }, T);
    const stuck = client.view(0).applyWith({ timeout: 1000 }, () => {
      for (;;) { /* never yields */ }
    });
    // Queued behind the stuck task on the same host: it fails naming the cause.
    const neighbour = client.view(1).apply(() => id);
    const error = await stuck.get().catch((e) => e);
    assert.ok(error instanceof TimeoutError, String(error));
    assert.deepEqual(error.engineIds, [0]);
    const queued = await neighbour.get(T).catch((e) => e);
    assert.ok(queued instanceof EngineDiedError, String(queued));
    assert.equal(queued.engineId, 1);
    assert.match(
      queued.message,
      /a task of engine 0 blocked it \d+\.\d s past its call's deadline/,
    );
    await waitUntil("two restarts", () => restarted.length >= 2, T.timeout);
    assert.deepEqual(restarted.sort(), [0, 1]);
    assert.deepEqual(died.sort(), [0, 1]);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2, 3]);
    // The other host was left alone.
    assert.deepEqual(await client.view([2, 3]).pull("kept", T), ["yes", "yes"]);
  });

  test("Cluster({ restart: true }) leaves a task without a deadline running, however long", async (b) => {
    await using c = cluster(b, 2, { hosts: 1, restart: true });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const values = await client.view().apply(() => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 4000);
      return id;
    }).get(T);
    assert.deepEqual(values, [0, 1]);
    assert.deepEqual(died, []);
  });

  test("Deno.exit() in a task fails that task with NotCapable; the host's engines answer", async (b) => {
    await using c = cluster(b, 2, { hosts: 1 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const error = await client.view(0).apply(() => Deno.exit(3)).get(T).catch((e) => e);
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteName, "NotCapable");
    assert.match(error.message, /Cannot call Deno\.exit\(\) in a task/);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
    assert.deepEqual(died, []);
  });

  test("an unhandled rejection and an uncaught error of a task's background work leave its host's engines answering, and are reported", async (b) => {
    await using c = cluster(b, 2, { hosts: 1 });
    const client = await c.startAndConnect();
    const died = deaths(c);
    const reported: string[] = [];
    c.addEventListener("error", (event) => reported.push((event as ErrorEvent).message));
    assert.deepEqual(
      await client.view(0).apply(() => {
        Promise.reject(new Error("rejected in the background"));
        setTimeout(() => {
          throw new Error("thrown from a timer");
        }, 10);
        return "returned";
      }).get(T),
      "returned",
    );
    await waitUntil("two reports", () => reported.length >= 2, T.timeout);
    assert.match(reported.join("\n"), /Uncaught \(in promise\) Error: rejected in the background/);
    assert.match(reported.join("\n"), /Uncaught Error: thrown from a timer/);
    assert.match(reported[0], /engines 0, 1/);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
    assert.deepEqual(died, []);
  });

  test("a stack overflow fails only its task with RemoteError", async (b) => {
    await using c = cluster(b, 2, { hosts: 1 });
    const client = await c.startAndConnect();
    const values = await client.view().apply(() => {
      if (id === 1) return id;
      const deeper = (n: number): number => deeper(n + 1) + 1;
      return deeper(0);
    }).get({ ...T, returnExceptions: true });
    assert.ok(values[0] instanceof RemoteError, String(values[0]));
    assert.equal((values[0] as RemoteError).remoteName, "RangeError");
    assert.equal(values[1], 1);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
  });
}, { timeoutMs: TEST_TIMEOUT_MS });
