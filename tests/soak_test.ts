/**
 * Issue 6, item 7, CI-sized: many broadcasts over Redis leave nothing behind. What is checked is
 * structure, not bytes or time: once the calls are done and acknowledged entries have aged past
 * `retainAckedMs`, the cluster's streams hold no entry (but the engines' registrations), no
 * entry is pending in any group, and the client's and the broadcast nodes' bookkeeping is empty.
 * `bench/soak.ts` runs the full-size version and measures memory.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { inspectRedis, type NamespaceStats } from "./_stream_stats.ts";
import { delay } from "./_async.ts";
import { broadcastAddress, REGISTRY } from "../actors/protocol/addresses.ts";
import type { BroadcastNodeStats } from "../actors/protocol/messages.ts";

/** `rank` in the engines' namespaces. */
declare const rank: number;

const BROADCASTS = 1000;
const ENGINES = 8;

Deno.test({
  name: `BroadcastView: ${BROADCASTS} broadcasts on ${ENGINES} engines over Redis leave no ` +
    "entry, pending entry or bookkeeping behind",
  ignore: !hasRedisServer(),
  async fn() {
    await using server = await startRedisServer();
    await using redis = await inspectRedis(server.url);
    await using cluster = new Cluster({ n: ENGINES, transport: server.url, progress: false });
    const client = await cluster.startAndConnect();
    const bv = client.broadcastView();
    const ranks = client.ids;
    const prefix = `${cluster.namespace}:`;
    // Generous: the first broadcast starts the broadcast actors.
    assert.deepEqual(await bv.apply(() => rank).get({ timeout: 60_000 }), ranks);

    for (let i = 1; i <= BROADCASTS; i++) {
      const values = await bv.apply((i: number) => rank * i, i).get({ timeout: 30_000 });
      assert.deepEqual(values, ranks.map((r) => r * i));
    }
    // Each broadcast wrote 2 + 2 × ENGINES entries (the request, a task per engine, an answer
    // from each engine, the merged answer): all of them go once acknowledged and aged.

    const registry = `${prefix}inbox:${REGISTRY}`;
    let last: NamespaceStats | undefined;
    const deadline = Date.now() + 40_000;
    for (;;) {
      last = await redis.stats(prefix);
      const left = last.streams.filter((s) => s.key !== registry && s.length > 0);
      if (left.length === 0 && last.pending === 0) break;
      if (Date.now() > deadline) {
        assert.fail(`streams not trimmed after 40 s: ${JSON.stringify(last.streams)}`);
      }
      await delay(500);
    }
    assert.equal(last.streams.find((s) => s.key === registry)?.length, ENGINES);
    assert.equal(last.pending, 0);

    // The client waits for nothing and holds no entry; nor do the broadcast nodes.
    assert.equal(client.system.stats.waiting, 0);
    assert.equal(client.system.stats.inFlight, 0);
    assert.ok(client.system.stats.trimmed >= BROADCASTS, `${client.system.stats.trimmed}`);
    // Every host's nodes share their bookkeeping: node 0 of each (spawned on the hub for this)
    // answers for all of them.
    const hosts = new Set([
      await client.broadcastHost([0]),
      ...client.ids.map((i) => client.hostOf(i)),
    ]);
    for (const hostId of hosts) {
      const nodes = await client.system.ask<BroadcastNodeStats>(
        broadcastAddress(hostId, 0),
        "stats",
        undefined,
        { timeout: 10_000 },
      );
      assert.deepEqual([nodes.inFlight, nodes.children], [0, 0], hostId);
    }
    // And the cluster still works.
    assert.deepEqual(await bv.apply(() => rank).get({ timeout: 30_000 }), ranks);
  },
});
