// Redis goes away for 5 s in the middle of a broadcast and comes back on the same port.
import assert from "node:assert/strict";
import { Cluster } from "../actors/cluster.ts";
import { createClient } from "../deps_redis.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { delay } from "./_async.ts";

/** `rank` in the engines' namespaces. */
declare const rank: number;

for (const appendonly of [true, false]) {
  Deno.test({
    name: `BroadcastView survives a 5 s Redis outage mid-call (appendonly ${appendonly})`,
    ignore: !hasRedisServer(),
    async fn() {
      await using server = await startRedisServer({ appendonly });
      await using cluster = new Cluster({ n: 4, transport: server.url, progress: false });
      const client = await cluster.startAndConnect();
      const view = client.broadcastView();
      assert.deepEqual(await view.apply(() => rank).get({ timeout: 10_000 }), [0, 1, 2, 3]);
      // A call that is running on the engines when Redis goes away.
      const slow = view.apply(() => new Promise((r) => setTimeout(() => r(rank * 10), 1000)));
      await delay(200);
      await server.stop();
      await delay(5000);
      await server.start();
      // It completes or fails with a typed error within its deadline; it never hangs.
      const outcome = await slow.get({ timeout: 30_000 }).then(
        (values) => ({ values }),
        (error: Error) => ({ error }),
      );
      if ("values" in outcome) assert.deepEqual(outcome.values, [0, 10, 20, 30]);
      else assert.ok(outcome.error instanceof Error && outcome.error.name !== "Error");
      // The next calls work, on both kinds of view.
      assert.deepEqual(await view.apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2, 3, 4]);
      assert.deepEqual(await client.view().apply(() => rank).get({ timeout: 30_000 }), [
        0,
        1,
        2,
        3,
      ]);
    },
  });
}

Deno.test({
  name: "BroadcastView call whose request Redis refuses fails at once and leaves no wait behind",
  ignore: !hasRedisServer(),
  async fn() {
    await using server = await startRedisServer();
    const admin = createClient({ url: server.url });
    admin.on("error", () => {});
    await admin.connect();
    try {
      await using cluster = new Cluster({ n: 2, transport: server.url, progress: false });
      const client = await cluster.startAndConnect();
      const view = client.broadcastView();
      assert.deepEqual(await view.apply(() => rank).get({ timeout: 60_000 }), [0, 1]);
      await admin.sendCommand(["CONFIG", "SET", "maxmemory", "1"]); // every write refused: OOM
      const values = await view.apply(() => rank).get({ timeout: 10_000, returnExceptions: true });
      for (const value of values) assert.match(String(value), /OOM/);
      // Nothing waits for an answer to a request that was never written.
      assert.equal(client.system.stats.waiting, 0);
      await admin.sendCommand(["CONFIG", "SET", "maxmemory", "0"]);
      assert.deepEqual(await view.apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2]);
    } finally {
      admin.destroy();
    }
  },
});
