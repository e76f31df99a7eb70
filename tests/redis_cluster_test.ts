/**
 * The Redis Cluster transport against a local cluster of three masters: the unchanged transport
 * contract, where each namespace's keys land (one slot), and a cluster of engines through the
 * public API. Each test starts a cluster of its own and removes it.
 */
import assert from "node:assert/strict";
import { Cluster, Reference } from "../mod.ts";
import { createTransport, redactUrl } from "../transport/mod.ts";
import { clusterKey, slotOf } from "../transport/_cluster_keys.ts";
import { RedisClusterTransport } from "../transport/redis_cluster.ts";
import { clusterUnavailable, startRedisCluster } from "./_redis_cluster.ts";
import { transportContract } from "./transport_contract.ts";
import { startRedisServer, uniqueNamespace } from "./_redis_server.ts";
import { delay, within } from "./_async.ts";

const unavailable = await clusterUnavailable();
if (unavailable !== undefined) {
  // deno-lint-ignore no-console
  console.warn(`Redis Cluster tests ignored: ${unavailable}`);
}
const ignore = unavailable !== undefined;

transportContract("RedisClusterTransport", async () => {
  const cluster = await startRedisCluster();
  try {
    const transport = await createTransport(cluster.url);
    return {
      transport,
      async [Symbol.asyncDispose]() {
        await transport.close();
        await cluster[Symbol.asyncDispose]();
      },
    };
  } catch (error) {
    await cluster[Symbol.asyncDispose]();
    throw error;
  }
}, { ignore });

Deno.test({
  name: "RedisClusterTransport keeps each namespace's keys in one slot, namespaces spread",
  ignore,
  async fn() {
    await using cluster = await startRedisCluster();
    await using transport = await RedisClusterTransport.connect(cluster.url);
    const namespaces = Array.from({ length: 12 }, uniqueNamespace);
    const owners = new Set<number>();
    for (const ns of namespaces) {
      transport.leaseKeys(`${ns}:`, 60_000);
      await transport.append(`${ns}:inbox:a`, new TextEncoder().encode("x"));
      await transport.read("g", "c", [`${ns}:inbox:a`, `${ns}:inbox:b`], { blockMs: 0 });
      await transport.putBlob(`${ns}:result:1`, new Uint8Array([1]), 120_000);
      assert.equal(await transport.renewLease(`${ns}:`, 0), true);
      // Every key of the namespace, lease and keep keys too, on the master of its one slot.
      const slot = slotOf(clusterKey(`${ns}:x`));
      let found: string[] = [];
      for (const node of cluster.nodes) {
        const keys = (await cluster.cli(node.port, "--scan", "--pattern", `*${ns}*`)).trim();
        if (keys === "") continue;
        found = keys.split("\n").sort();
        owners.add(node.port);
        for (const key of found) {
          assert.equal(Number(await cluster.cli(node.port, "CLUSTER", "KEYSLOT", key)), slot, key);
        }
      }
      assert.deepEqual(found, [
        `{${ns}}:inbox:a`,
        `{${ns}}:inbox:b`,
        `{${ns}}:keep`,
        `{${ns}}:lease`,
        `{${ns}}:result:1`,
      ]);
      const [entry] = await transport.range(`${ns}:inbox:a`);
      assert.equal(entry.stream, `${ns}:inbox:a`);
      await transport.deletePrefix(`${ns}:`);
    }
    assert.ok(owners.size >= 2, `12 namespaces all on one master (${[...owners]})`);
    for (const node of cluster.nodes) {
      const left = (await cluster.cli(node.port, "--scan", "--pattern", "{t*")).trim();
      assert.equal(left, "", `keys left on ${node.port}`);
    }
    await assert.rejects(
      transport.read("g", "c", [`${namespaces[0]}:a`, `${namespaces[1]}:a`], { blockMs: 0 }),
      TypeError,
    );
    assert.throws(() => transport.leaseKeys("nocolon", 1000), RangeError);
  },
});

Deno.test({
  name: "redis+cluster:// URLs: password hidden, bad forms refused, no node answering is typed",
  ignore,
  async fn() {
    assert.equal(
      redactUrl("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001"),
      "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001",
    );
    assert.equal(
      redactUrl("rediss+cluster://u:p@ss@h1:1,h2:2?ca=/ca.pem"),
      "rediss+cluster://u:***@h1:1,h2:2?ca=/ca.pem",
    );
    assert.doesNotMatch(redactUrl("redis+cluster://:s3cret@h1"), /s3cret/);
    await assert.rejects(createTransport("redis+cluster://:s3cret@h1/2"), TypeError);
    const error = await createTransport("redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2", {
      connectTimeoutMs: 500,
    }).catch((e) => e);
    assert.equal(error?.name, "TransportClosedError", String(error));
    assert.doesNotMatch(`${error.message}\n${error.stack}`, /s3cret/);
    // A plain Redis is no cluster: refused at connect, typed, password hidden.
    await using plain = await startRedisServer({ args: ["--requirepass", "s3cret"] });
    const refused = await createTransport(`redis+cluster://:s3cret@127.0.0.1:${plain.port}`)
      .catch((e) => e);
    assert.equal(refused?.name, "TransportClosedError", String(refused));
    assert.match(refused.message, /cluster support disabled/);
    assert.doesNotMatch(`${refused.message}\n${refused.stack}`, /s3cret/);
  },
});

for (const launcher of ["worker", "process"] as const) {
  Deno.test({
    name:
      `Cluster of 4 engines (${launcher} hosts) on a Redis Cluster: DirectView, BroadcastView and map equal local`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using redis = await startRedisCluster();
      await within(
        (async () => {
          await using cluster = new Cluster({
            n: 4,
            hosts: 2,
            launcher,
            progress: false,
            transport: redis.url,
          });
          const client = await cluster.startAndConnect();
          const f = (x: number) => x * x + 1;
          const ranks = await client.view().apply((r: number) => r, new Reference("rank"));
          assert.deepEqual(ranks, [0, 1, 2, 3]);
          const direct = await client.view().apply((a: number, b: number) => a * b, 6, 7);
          assert.deepEqual(direct, [42, 42, 42, 42]);
          const broadcast = await client.broadcastView().apply((a: number) => a + 1, 41);
          assert.deepEqual(broadcast, [42, 42, 42, 42]);
          const xs = Array.from({ length: 200 }, (_, i) => i);
          assert.deepEqual(await client.loadBalancedView().map(f, xs), xs.map(f));
          assert.deepEqual(await client.view().map(f, xs), xs.map(f));
          assert.deepEqual(await client.broadcastView().map(f, xs), xs.map(f));
          const ns = cluster.namespace;
          const owners = await redis.holders(ns);
          assert.equal(owners.length, 1, `the namespace's keys are on one master: ${owners}`);
        })(),
        120_000,
        "cluster on Redis Cluster",
      );
    },
  });
}

Deno.test({
  name:
    "RedisClusterTransport rides out a master's failover: calls succeed on the promoted replica",
  ignore,
  async fn() {
    await using cluster = await startRedisCluster({ replicas: 1 });
    await using transport = await RedisClusterTransport.connect(cluster.url);
    const ns = uniqueNamespace();
    const s = `${ns}:s`;
    const text = (entries: { data: Uint8Array | null }[]) =>
      entries.map((e) => new TextDecoder().decode(e.data!));
    for (const m of ["a", "b", "c"]) await transport.append(s, new TextEncoder().encode(m));
    const taken = await transport.read("g", "c1", [s], { count: 2, blockMs: 0 });
    assert.deepEqual(text(taken), ["a", "b"]); // pending, never acknowledged
    const [master] = await cluster.holders(ns);
    assert.ok(master !== undefined, "no master holds the namespace");
    // Replication is asynchronous: wait until the replica has all the master wrote.
    await within(
      (async () => {
        for (;;) {
          const info = await cluster.cli(master, "INFO", "replication");
          const offset = /master_repl_offset:(\d+)/.exec(info)?.[1];
          const replica = /slave0:[^\n]*offset=(\d+)/.exec(info)?.[1];
          if (offset !== undefined && offset === replica) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })(),
      10_000,
      "replica in sync",
    );
    await cluster.nodes.find((node) => node.port === master)!.kill();
    const started = Date.now();
    await transport.append(s, new TextEncoder().encode("d"));
    const tookMs = Date.now() - started;
    // deno-lint-ignore no-console
    console.log(`append during failover took ${tookMs} ms`);
    assert.ok(tookMs < 25_000, `append took ${tookMs} ms`);
    const promoted = await cluster.masters();
    assert.ok(!promoted.includes(master), `${master} still a master`);
    assert.equal(promoted.length, 3);
    // On the new master the consumer first gets its own pending entries again, then the rest.
    const again = await transport.read("g", "c1", [s], { blockMs: 0 });
    assert.deepEqual(text(again), ["a", "b"]);
    assert.ok(again.every((e) => e.deliveries >= 2));
    assert.deepEqual(text(await transport.read("g", "c1", [s], { blockMs: 0 })), ["c", "d"]);
    assert.deepEqual(text(await transport.range(s)), ["a", "b", "c", "d"]);
    await transport.deletePrefix(`${ns}:`);
  },
});

Deno.test({
  name: "RedisClusterTransport reports a master that restarted without its data",
  ignore,
  async fn() {
    await using cluster = await startRedisCluster();
    await using transport = await RedisClusterTransport.connect(cluster.url);
    const reasons: string[] = [];
    transport.onDataLost((reason) => reasons.push(reason));
    const ns = uniqueNamespace();
    await transport.append(`${ns}:s`, new TextEncoder().encode("x"));
    const [port] = await cluster.holders(ns);
    const master = cluster.nodes.find((node) => node.port === port);
    assert.ok(master, "no master holds the namespace");
    await master.restart();
    // The next call reconnects, finds the master's epoch key gone, and reports it first.
    assert.deepEqual(await transport.range(`${ns}:s`), []);
    assert.equal(reasons.length, 1, `reasons: ${reasons}`);
    assert.match(
      reasons[0],
      new RegExp(`127\\.0\\.0\\.1:${master.port} restarted without its data`),
    );
    await transport.deletePrefix(`${ns}:`);
  },
});

Deno.test({
  name: "RedisClusterTransport: a failover longer than commandTimeoutMs fails the call, typed",
  ignore,
  async fn() {
    await using cluster = await startRedisCluster({ replicas: 1 });
    await using transport = await RedisClusterTransport.connect(cluster.url, {
      commandTimeoutMs: 500,
    });
    const ns = uniqueNamespace();
    await transport.append(`${ns}:s`, new TextEncoder().encode("a"));
    const [master] = await cluster.holders(ns);
    assert.ok(master !== undefined, "no master holds the namespace");
    // Replication is asynchronous: the first entry outlives the master only once its replica has
    // it (the replica acknowledges its offset every second).
    const replication = () => cluster.cli(master, "INFO", "replication");
    const written = Number(/master_repl_offset:(\d+)/.exec(await replication())?.[1]);
    await within(
      (async () => {
        const copied = async () => Number(/slave0:.*offset=(\d+)/.exec(await replication())?.[1]);
        while (!(await copied() >= written)) await delay(50);
      })(),
      10_000,
      "the replica's copy of the first entry",
    );
    await cluster.nodes.find((node) => node.port === master)!.kill();
    // The replica takes over after cluster-node-timeout (1 s) and an election: later than 500 ms.
    const error = await transport.append(`${ns}:s`, new TextEncoder().encode("b")).catch((e) => e);
    assert.equal(error?.name, "TransportClosedError", String(error));
    await within(
      (async () => {
        while ((await cluster.masters()).includes(master)) await delay(100);
      })(),
      20_000,
      "the failover",
    );
    // Once the replica took over, calls go there (as soon as the node asked knows it).
    let appended = false;
    for (let i = 0; i < 50 && !appended; i++) {
      const c = new TextEncoder().encode("c");
      appended = await transport.append(`${ns}:s`, c).then(() => true, () => false);
      if (!appended) await delay(200);
    }
    assert.ok(appended, "no append succeeded after the failover");
    const kept = (await transport.range(`${ns}:s`)).map((e) => new TextDecoder().decode(e.data!));
    assert.equal(kept[0], "a");
    assert.equal(kept[kept.length - 1], "c");
    await transport.deletePrefix(`${ns}:`);
  },
});

for (const launcher of ["worker", "process"] as const) {
  Deno.test({
    name:
      `Cluster of engines (${launcher} hosts) on a Redis Cluster: a call made as the master fails over ends`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using redis = await startRedisCluster({ replicas: 1 });
      await within(
        (async () => {
          await using cluster = new Cluster({
            n: 2,
            launcher,
            progress: false,
            transport: redis.url,
          });
          const client = await cluster.startAndConnect();
          const f = (x: number) => x * 2;
          assert.deepEqual(await client.view().apply(f, 21), [42, 42]);
          const ns = cluster.namespace;
          const [master] = await redis.holders(ns);
          assert.ok(master !== undefined, "no master holds the namespace");
          await redis.nodes.find((node) => node.port === master)!.kill();
          const started = Date.now();
          const outcome = await client.view().apply(f, 21).then(
            (value) => ({ value, shown: JSON.stringify(value) }),
            (error) => ({ error, shown: String(error) }),
          );
          const tookMs = Date.now() - started;
          // deno-lint-ignore no-console
          console.log(
            `${launcher} hosts, call during failover: ${outcome.shown} after ${tookMs} ms`,
          );
          if ("value" in outcome) assert.deepEqual(outcome.value, [42, 42]);
          else assert.ok(outcome.error instanceof Error && outcome.error.name.endsWith("Error"));
          // Once over, the cluster serves again.
          assert.deepEqual(await client.view().apply(f, 1), [2, 2]);
        })(),
        120_000,
        "failover under a Cluster",
      );
    },
  });
}
