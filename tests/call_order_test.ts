/**
 * A client's calls reach each engine in the order they were made, whichever view made them
 * (issue 14, point 9), as IPython Parallel orders a client's calls: an un-awaited
 * `BroadcastView` push is seen by the `DirectView` apply made after it, and the other way round,
 * and so is one by a `BroadcastView` whose tree starts elsewhere.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";

// A name that exists in the engines' namespaces, not here.
declare const y: number;

const T = { timeout: 30_000 } as const;

forEachBackend(BACKENDS, (test) => {
  test("calls made through a BroadcastView and a DirectView run on each engine in the order they were made", async (backend) => {
    await using cluster = new Cluster({ ...backend.cluster, n: 4, hosts: 2, progress: false });
    const client = await cluster.startAndConnect();
    const pushes = [];
    for (let i = 0; i < 10; i++) {
      pushes.push(client.broadcastView().push({ y: i }));
      assert.deepEqual(await client.view().apply(() => y).get(T), [i, i, i, i]);
      pushes.push(client.view([1, 2]).push({ y: -i }));
      assert.deepEqual(await client.broadcastView().apply(() => y).get(T), [i, -i, -i, i]);
      // A broadcast over both hosts starts at the hub; one over a host's engines at that host.
      pushes.push(client.broadcastView().push({ y: 2 * i }));
      assert.deepEqual(await client.broadcastView([0, 1]).apply(() => y).get(T), [2 * i, 2 * i]);
    }
    for (const push of pushes) await push.get(T);
  });

  test("a call waits only for the other view's calls on its own engines", async (backend) => {
    await using cluster = new Cluster({ ...backend.cluster, n: 2, hosts: 2, progress: false });
    const client = await cluster.startAndConnect();
    const held = client.broadcastView([1]).execute(
      "await new Promise((r) => setTimeout(r, 8000));",
    );
    const settled = held.get({ timeout: 60_000 }).catch(() => {});
    assert.deepEqual(await client.view([0]).apply(() => 7).get(T), [7]);
    assert.equal(held.ready(), false, "engine 0 answered while engine 1 still ran its task");
    await settled;
  }, { timeoutMs: 90_000 });
});
