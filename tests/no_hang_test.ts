/**
 * No call without an answer (issue 14): values too large for the server, bad numbers, failed
 * connects, a server out of memory, bad arguments. Each test checks the typed error and that the
 * next call works. Redis tests run on a `redis-server` each test starts with the setting it needs.
 *
 * Functions shipped to the engines are written here but run there: the names they use freely are
 * declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster, type ClusterOptions } from "../actors/client/cluster.ts";
import { CompositeError, RemoteError, SerializationError } from "../errors.ts";
import { RedisTransport } from "../transport/redis.ts";
import {
  connectAdmin,
  hasRedisServer,
  type RedisServer,
  startRedisServer,
  uniqueNamespace,
} from "./_redis_server.ts";
import { within } from "./_async.ts";

declare const id: number;

const noServer = hasRedisServer() ? false : "no redis-server on PATH";
/** Options for every call made here: no wait goes without a deadline. */
const T = { timeout: 15_000 } as const;
const MB = 1024 * 1024;

/** A `redis-server` of this test only, with `args`. */
function redisWith(...args: string[]): Promise<RedisServer> {
  return startRedisServer({ args: ["--loglevel", "warning", ...args] });
}

/** A started cluster of `n` engines on `url`, stopped by `await using`. */
async function startCluster(
  url: string,
  n: number,
  options: ClusterOptions = {},
): Promise<{ cluster: Cluster; client: Awaited<ReturnType<Cluster["startAndConnect"]>> }> {
  const cluster = new Cluster({
    n,
    transport: url,
    namespace: uniqueNamespace(),
    progress: false,
    ...options,
  });
  const client = await within(cluster.startAndConnect(), 30_000, `start ${n} engines`);
  return { cluster, client };
}

function isOversized(e: unknown): boolean {
  assert.ok(e instanceof SerializationError, String(e));
  assert.match(e.message, /over the 1048576-byte limit of one value .*proto-max-bulk-len/);
  return true;
}

Deno.test({
  name: "RedisTransport refuses a value over the server's proto-max-bulk-len before writing it",
  ignore: noServer !== false,
  async fn() {
    await using server = await redisWith("--proto-max-bulk-len", "1mb");
    await using transport = await RedisTransport.connect(server.url);
    await using admin = await connectAdmin(server.url);
    const big = new Uint8Array(2 * MB);
    await assert.rejects(transport.append("s", big), isOversized);
    await assert.rejects(
      transport.appendMany([{ stream: "s", data: new Uint8Array(3) }, { stream: "s", data: big }]),
      isOversized,
    );
    await assert.rejects(transport.putBlob("b", big, 60_000), isOversized);
    // Nothing was written, not even the small entry sent with the big one.
    assert.equal(await admin.send(["XLEN", "s"]), 0);
    assert.equal(await admin.send(["EXISTS", "b"]), 0);
    // The connection still works.
    await transport.append("s", new Uint8Array(MB - 100));
    assert.equal((await transport.range("s")).length, 1);
  },
});

Deno.test({
  name:
    "RedisTransport replaces a connection the server refused a value on, and the next call works",
  ignore: noServer !== false,
  async fn() {
    await using server = await redisWith("--proto-max-bulk-len", "4mb");
    await using transport = await RedisTransport.connect(server.url, { commandTimeoutMs: 5000 });
    await using admin = await connectAdmin(server.url);
    // Lowered after the transport read it: the server itself refuses the value, and drops the
    // connection.
    await admin.send(["CONFIG", "SET", "proto-max-bulk-len", String(MB)]);
    const error = await transport.append("s", new Uint8Array(2 * MB)).then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    assert.ok(error instanceof Error, String(error));
    assert.match(error.message, /Protocol error/);
    // Each later call gets its own answer, on a new connection.
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await transport.append("s", new Uint8Array([i])));
    assert.deepEqual((await transport.range("s")).map((e) => e.id), ids);
    // It read the new limit again.
    await assert.rejects(transport.append("s", new Uint8Array(2 * MB)), isOversized);
  },
});

Deno.test({
  name: "Cluster fails a value over Redis' limit with SerializationError and keeps working",
  ignore: noServer !== false,
  async fn() {
    await using server = await redisWith("--proto-max-bulk-len", "1mb");
    const { cluster, client } = await startCluster(server.url, 2);
    await using _ = cluster;
    const view = client.view();
    // Pushed: refused on the client, before anything is written.
    await assert.rejects(view.push({ x: new Uint8Array(2 * MB) }, T).get(T), isOversized);
    // Returned: each engine's answer fails, and the engine goes on.
    const error = await view.apply(() => new Uint8Array(2 * 1024 * 1024)).get(T).catch((e) => e);
    assert.ok(error instanceof CompositeError, String(error));
    for (const e of error.errors) {
      assert.ok(e instanceof RemoteError, String(e));
      assert.equal(e.remoteName, "SerializationError");
      assert.match(e.remoteMessage, /proto-max-bulk-len/);
    }
    assert.deepEqual(await view.apply(() => id).get(T), [0, 1]);
    assert.deepEqual(await client.broadcastView().apply(() => id).get(T), [0, 1]);
    await within(cluster.stop(), 20_000, "stop the cluster");
  },
});

for (const transport of ["memory", "redis"] as const) {
  Deno.test({
    name: `Cluster and calls refuse numbers they cannot honour with RangeError (${transport})`,
    ignore: transport === "redis" && noServer !== false,
    async fn() {
      for (const bad of [{ n: 1e6 }, { n: 1e5 }, { hosts: 0 }, { hosts: -1 }, { hosts: NaN }]) {
        assert.throws(() => new Cluster({ transport: "memory:", ...bad }), RangeError);
      }
      for (const bad of [{ hosts: 1.5 }, { engineTimeout: -5 }, { engineTimeout: 3e9 }]) {
        assert.throws(() => new Cluster({ n: 2, transport: "memory:", ...bad }), RangeError);
      }
      await using server = transport === "redis" ? await redisWith() : undefined;
      const { cluster, client } = await startCluster(server?.url ?? "memory:", 2);
      await using _ = cluster;
      const view = client.view();
      assert.throws(() => view.applyWith({ timeout: 3e9 }, () => id), RangeError);
      const ar = view.apply(() => id);
      await assert.rejects(ar.get({ timeout: 3e9 }), RangeError);
      await assert.rejects(ar.wait(3e9), RangeError);
      // The longest timer there is, and none at all, still wait for the answer.
      assert.deepEqual(await ar.get({ timeout: 2 ** 31 - 1 }), [0, 1]);
      assert.equal(await ar.wait(Infinity), true);
      assert.deepEqual(await view.applyWith({ timeout: 2 ** 31 - 1 }, () => id).get(T), [0, 1]);
    },
  });
}
