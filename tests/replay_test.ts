/**
 * Replays and redirections by someone who can write to a cluster's Redis but does not hold the
 * cluster key (issue 13, points 3 and 4): signed entries copied with a plain Redis connection into
 * another cluster's streams, into another actor's stream, or into the same stream long after, and
 * heartbeats copied to keep a frozen host "alive"; and a second cluster on a namespace in use.
 * Each test runs a real `redis-server` (or `REDIS_URL`).
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { EngineDiedError, NamespaceInUseError } from "../errors.ts";
import { generateKey } from "../transport/envelope.ts";
import { type Backend, redisTest } from "./_backends.ts";
import { delay, within } from "./_async.ts";
import { attacker } from "./_attacker.ts";

const T = { timeout: 20_000 } as const;
/** Sanitizers off, as before; the deadline is a hang guard. */
const CASE = { sanitize: false, timeoutMs: 120_000 } as const;

type Options = ConstructorParameters<typeof Cluster>[0];

/** A cluster of `n` engines on one host on the file's Redis, started and connected. */
async function start(redis: Backend, options: Options = {}) {
  const cluster = new Cluster({
    n: 1,
    hosts: 1,
    transport: redis.url,
    progress: false,
    ...options,
  });
  const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
  return { cluster, client, [Symbol.asyncDispose]: () => cluster.stop() };
}

/** How many times the engines of `client` ran a `hit()` task. */
function hits(client: Awaited<ReturnType<typeof start>>["client"]) {
  return client.view().apply(() => (globalThis as { hits?: number }).hits ?? 0).get(T);
}

const hit = () => {
  const g = globalThis as { hits?: number };
  return g.hits = (g.hits ?? 0) + 1;
};

redisTest(
  "a captured stop copied to a host of another cluster sharing the key does not stop it",
  async (redis) => {
    const key = generateKey();
    await using spy = await attacker(redis);
    await using b = await start(redis, { key, launcher: "process" });
    const a = await start(redis, { key, launcher: "process" });
    const [hostA] = await spy.keys(`${a.cluster.namespace}:inbox:host.*`);
    const [hostB] = await spy.keys(`${b.cluster.namespace}:inbox:host.*`);
    assert.ok(hostA && hostB, "no host inbox found");
    // The spy waits on A's host inbox for the stop that `a.cluster.stop()` writes there.
    await using watcher = await attacker(redis);
    const next = watcher.send(["XREAD", "BLOCK", "0", "STREAMS", hostA, "$"]) as Promise<
      [unknown, [unknown, unknown[]][]][]
    >;
    await delay(100);
    const stopping = a.cluster.stop();
    const [[, [[, fields]]]] = await within(next, 10_000, "capture the stop");
    await stopping;
    const stop = new Uint8Array(fields[1] as Uint8Array);
    await spy.add(hostB, stop);
    await delay(1500);
    assert.deepEqual(await b.client.view().apply(() => 6 * 7).get(T), [42]);
  },
  CASE,
);

redisTest(
  "a captured task copied to another cluster sharing the key does not run there",
  async (redis) => {
    const key = generateKey();
    await using spy = await attacker(redis);
    await using a = await start(redis, { key });
    await using b = await start(redis, { key });
    assert.deepEqual(await a.client.view().apply(hit).get(T), [1]);
    const [dispatchA] = await spy.keys(`${a.cluster.namespace}:inbox:dispatch.*`);
    const [dispatchB] = await spy.keys(`${b.cluster.namespace}:inbox:dispatch.*`);
    const captured = await spy.payloads(dispatchA);
    assert.ok(captured.length > 0, "no task captured");
    for (const task of captured) {
      await spy.add(dispatchB, task);
      // The same stream name in the other cluster's namespace would be read there too.
      await spy.add(dispatchB.replace(b.cluster.namespace, a.cluster.namespace), task);
    }
    await delay(1500);
    assert.deepEqual(await hits(b.client), [0]);
    assert.deepEqual(await hits(a.client), [1]);
  },
  CASE,
);

redisTest(
  "a dispatch copied to another host's dispatcher does not fail the live call",
  async (redis) => {
    await using spy = await attacker(redis);
    await using fx = await start(redis, { n: 2, hosts: 2 });
    const ns = fx.cluster.namespace;
    const hostOf0 = fx.client.hostOf(0);
    const hostOf1 = fx.client.hostOf(1);
    assert.notEqual(hostOf0, hostOf1);
    const live = fx.client.view(0).apply(() =>
      new Promise((r) => setTimeout(() => r("done"), 2000))
    );
    const from = `${ns}:inbox:dispatch.${hostOf0}`;
    let captured: Uint8Array[] = [];
    for (let i = 0; i < 200 && captured.length === 0; i++) {
      captured = await spy.payloads(from);
      if (captured.length === 0) await delay(5);
    }
    assert.ok(captured.length > 0, "no dispatch captured");
    for (const dispatch of captured) await spy.add(`${ns}:inbox:dispatch.${hostOf1}`, dispatch);
    assert.equal(await live.get(T), "done");
    assert.deepEqual(await fx.client.view().apply(() => 1).get(T), [1, 1]);
  },
  CASE,
);

redisTest(
  "a task copied into its own stream after 10,500 more calls does not run again",
  async (redis) => {
    await using spy = await attacker(redis);
    await using fx = await start(redis, { replayWindowMs: 5000 });
    const dv = fx.client.view(0);
    assert.equal(await dv.apply(hit).get(T), 1);
    const [stream] = await spy.keys(`${fx.cluster.namespace}:inbox:dispatch.*`);
    const [task] = await spy.payloads(stream);
    assert.ok(task, "no task captured");
    for (let done = 0; done < 10_500; done += 500) {
      await Promise.all(Array.from({ length: 500 }, () => dv.apply(() => 0).get(T)));
    }
    await spy.add(stream, task);
    await delay(1500);
    assert.equal(await dv.apply(() => (globalThis as { hits?: number }).hits).get(T), 1);
  },
  CASE,
);

redisTest(
  "heartbeats copied or forged do not keep a frozen host alive: its call ends EngineDiedError",
  async (redis) => {
    await using spy = await attacker(redis);
    await using fx = await start(redis, { launcher: "process", heartbeatTimeoutMs: 1500 });
    const [pid] = await fx.client.view().apply(() => Deno.pid).get(T);
    const beats = `${fx.cluster.namespace}:inbox:_heartbeats`;
    const signed = await spy.payloads(beats);
    assert.ok(signed.length > 0, "no heartbeat captured");
    const call = fx.client.view(0).apply(() => new Promise((r) => setTimeout(r, 60_000)));
    await delay(200);
    Deno.kill(pid, "SIGSTOP");
    let replaying = true;
    const replay = (async () => {
      for (let i = 0; replaying; i++) {
        // Every beat seen so far, the newest last, and one never signed.
        await spy.add(beats, signed[i % signed.length]).catch(() => {});
        await spy.add(beats, signed.at(-1)!).catch(() => {});
        await spy.add(beats, crypto.getRandomValues(new Uint8Array(120))).catch(() => {});
        await delay(50);
      }
    })();
    try {
      const error = await within(
        call.get({ timeout: 60_000 }).then(() => undefined, (e) => e),
        20_000,
        "the frozen host's call",
      );
      assert.ok(error instanceof EngineDiedError, `the call ended with ${error}`);
    } finally {
      replaying = false;
      await replay;
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  },
  CASE,
);

redisTest(
  "a second cluster on a namespace in use is refused with NamespaceInUseError",
  async (redis) => {
    await using a = await start(redis);
    const dv = a.client.view();
    // A call queued behind a busy engine: a second cluster's stop must not delete it.
    const busy = dv.apply(() => new Promise((r) => setTimeout(() => r("busy"), 1000)));
    const queued = dv.apply(() => "queued");
    const b = new Cluster({
      n: 1,
      hosts: 1,
      transport: redis.url,
      progress: false,
      namespace: a.cluster.namespace,
    });
    const error = await b.startAndConnect().then(() => undefined, (e) => e);
    await b.stop();
    assert.ok(error instanceof NamespaceInUseError, `the second cluster got ${error}`);
    assert.match(error.message, new RegExp(a.cluster.namespace));
    assert.deepEqual(await busy.get(T), ["busy"]);
    assert.deepEqual(await queued.get(T), ["queued"]);
    assert.deepEqual(await dv.apply(() => 2).get(T), [2]);
  },
  CASE,
);

redisTest("a namespace is free again once its cluster stopped", async (redis) => {
  const namespace = `replay-${crypto.randomUUID().slice(0, 8)}`;
  {
    await using a = await start(redis, { namespace });
    assert.deepEqual(await a.client.view().apply(() => 1).get(T), [1]);
  }
  await using b = await start(redis, { namespace });
  assert.deepEqual(await b.client.view().apply(() => 2).get(T), [2]);
}, CASE);
