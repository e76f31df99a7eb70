// Redis goes away for 5 s in the middle of a broadcast and comes back on the same port.
import assert from "node:assert/strict";
import type { BroadcastView, Client, DirectView } from "../mod.ts";
import { Cluster } from "../actors/client/cluster.ts";
import { TransportDataLostError } from "../errors.ts";
import {
  connectAdmin,
  hasRedisServer,
  type RedisServer,
  startRedisServer,
} from "./_redis_server.ts";
import { delay, within } from "./_async.ts";
import { broadcastAddress } from "../actors/protocol/addresses.ts";
import type { BroadcastNodeStats } from "../actors/protocol/messages.ts";

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
    await using admin = await connectAdmin(server.url);
    await using cluster = new Cluster({ n: 2, transport: server.url, progress: false });
    const client = await cluster.startAndConnect();
    const view = client.broadcastView();
    assert.deepEqual(await view.apply(() => rank).get({ timeout: 60_000 }), [0, 1]);
    await admin.send(["CONFIG", "SET", "maxmemory", "1"]); // every write refused: OOM
    const values = await view.apply(() => rank).get({ timeout: 10_000, returnExceptions: true });
    for (const value of values) assert.match(String(value), /OOM/);
    // Nothing waits for an answer to a request that was never written.
    assert.equal(client.system.stats.waiting, 0);
    await admin.send(["CONFIG", "SET", "maxmemory", "0"]);
    assert.deepEqual(await view.apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2]);
  },
});

/** Runs on an engine: marks that it started, then keeps its host busy (no reads) for `ms`. */
function spin(path: string, ms: number): number {
  if (rank !== 0) return rank;
  Deno.writeTextFileSync(path, "started");
  const end = Date.now() + ms;
  while (Date.now() < end) { /* CPU-bound */ }
  return rank;
}

/**
 * Keeps engine 0's host busy with a call through `busy` (by default a DirectView of engine 0; a
 * call of another view would wait in the client for it, not in Redis), runs `submit` (whose
 * messages to engine 0 then wait in Redis, unread), and restarts Redis without its data while
 * they wait: those messages are lost. Runs `during` while Redis is away. Returns when Redis is
 * back.
 */
async function loseQueuedCalls(
  client: Client,
  server: RedisServer,
  submit: () => void,
  during: () => void,
  busy: DirectView | BroadcastView = client.view([0]),
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "deno-parallel-lost-" });
  try {
    const started = `${dir}/started`;
    // Its own wait fails too (it was outstanding when Redis lost its data); no timeout.
    busy.apply(spin, started, 2500).get().catch(() => {});
    await within(
      (async () => {
        while (!await Deno.stat(started).then(() => true, () => false)) await delay(20);
      })(),
      30_000,
      "the busy task to start",
    );
    submit();
    await delay(300);
    await server.stop();
    during();
    await delay(2000);
    await server.start();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A cluster of two hosts (engine 0 on one, engine 1 on the other) on `server`. */
function twoHosts(server: RedisServer): Cluster {
  // Liveness would take the busy host for dead; this is about the transport.
  return new Cluster({
    n: 2,
    hosts: 2,
    transport: server.url,
    progress: false,
    heartbeatTimeoutMs: 30_000,
  });
}

Deno.test({
  name:
    "DirectView call without deadline whose task Redis lost rejects with TransportDataLostError",
  ignore: !hasRedisServer(),
  async fn() {
    await using server = await startRedisServer({ appendonly: false });
    await using cluster = twoHosts(server);
    const client = await cluster.startAndConnect();
    assert.deepEqual(await client.view().apply(() => rank).get({ timeout: 60_000 }), [0, 1]);
    let lost!: Promise<unknown>;
    let sentDuring!: Promise<unknown>;
    await loseQueuedCalls(client, server, () => {
      lost = client.view(0).apply(() => rank).get().then(() => "answered", (error) => error);
    }, () => {
      sentDuring = client.view(1).apply(() => rank).get().then((v) => v, (error) => error);
    });
    // No deadline: without the check it would wait forever.
    const error = await within(lost, 20_000, "the lost call to fail");
    assert.ok(error instanceof TransportDataLostError, `got ${error}`);
    assert.equal(error.engineId, 0);
    // A call sent while Redis was away was written once it was back, after the loss was seen:
    // nothing of it was lost, and it answers.
    assert.equal(await within(sentDuring, 20_000, "the call sent during the outage"), 1);
    assert.match(
      error.message,
      new RegExp(
        `^Cannot get answer from engine 0: Redis at 127\\.0\\.0\\.1:${server.port} ` +
          `restarted without its data`,
      ),
    );
    assert.equal(client.system.stats.waiting, 0);
    // The next calls work, on both kinds of view.
    assert.deepEqual(await client.view().apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2]);
    assert.deepEqual(await client.broadcastView().apply(() => rank).get({ timeout: 30_000 }), [
      0,
      1,
    ]);
  },
});

Deno.test({
  name: "BroadcastView call without deadline whose task Redis lost fails per engine, typed",
  ignore: !hasRedisServer(),
  async fn() {
    await using server = await startRedisServer({ appendonly: false });
    await using cluster = twoHosts(server);
    const client = await cluster.startAndConnect();
    const view = client.broadcastView();
    // Generous: the first broadcast starts the broadcast actors.
    assert.deepEqual(await view.apply(() => rank).get({ timeout: 60_000 }), [0, 1]);
    let lost!: Promise<unknown>;
    let sentDuring!: Promise<unknown>;
    await loseQueuedCalls(client, server, () => {
      lost = view.apply(() => rank).get({ returnExceptions: true });
    }, () => {
      sentDuring = view.apply(() => rank).get().then((v) => v, (error) => error);
    }, view);
    // Each engine's part ends: lost (its task went with Redis's data, or its answer did), or its
    // value, for an answer written to the new server and read before the loss was seen.
    const parts = await within(lost, 20_000, "the lost broadcast to end");
    assert.ok(Array.isArray(parts) && parts.length === 2, `got ${parts}`);
    for (const [i, part] of parts.entries()) {
      if (part === i) continue;
      assert.ok(part instanceof TransportDataLostError, `engine ${i}: got ${part}`);
      assert.equal(part.engineId, i);
      assert.match(part.message, /restarted without its data/);
    }
    // A broadcast sent while Redis was away was written once it was back, after the loss was
    // seen: nothing of it was lost, and it answers.
    const during = await within(sentDuring, 20_000, "the broadcast sent during the outage");
    assert.deepEqual(during, [0, 1]);
    assert.equal(client.system.stats.waiting, 0);
    // The hub's nodes stopped waiting for the lost part too (their own transport saw the loss).
    const hub = broadcastAddress(await client.broadcastHost([0]), 0);
    await within(
      (async () => {
        for (;;) {
          const nodes = await client.system.ask<BroadcastNodeStats>(hub, "stats", undefined, {
            timeout: 10_000,
          });
          if (nodes.inFlight === 0 && nodes.children === 0) return;
          await delay(100);
        }
      })(),
      20_000,
      "the hub's nodes to stop waiting",
    );
    // The next broadcasts work, and so do direct calls.
    assert.deepEqual(await view.apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2]);
    assert.deepEqual(await view.apply(() => rank + 2).get({ timeout: 30_000 }), [2, 3]);
    assert.deepEqual(await client.view().apply(() => rank).get({ timeout: 30_000 }), [0, 1]);
  },
});
