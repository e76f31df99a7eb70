/**
 * Redis refuses a command (issue 14, point 8): out of memory at `maxmemory`, an ACL user without
 * the permission, a key of the wrong type, a protocol error. Each call fails with
 * `TransportRefusedError` naming the operation, the keys and Redis' reply, never with a node-redis
 * error, and the next call works once the cause is gone. Each test starts its own `redis-server`.
 *
 * Functions shipped to the engines are written here but run there: the names they use freely are
 * declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster, TransportClosedError, TransportRefusedError } from "../mod.ts";
import { RedisTransport } from "../transport/redis.ts";
import {
  connectAdmin,
  hasRedisServer,
  type RedisAdmin,
  startRedisServer,
} from "./_redis_server.ts";
import { within } from "./_async.ts";

declare const big: Uint8Array;
declare const small: number;

const noServer = hasRedisServer() ? false : "no redis-server on PATH";
/** Options for every call made here: no wait goes without a deadline. */
const T = { timeout: 15_000 } as const;
const MB = 1024 * 1024;

/**
 * Asserts that `error` is a `TransportRefusedError` with reply kind `code`, about a key that
 * `key` matches (when given), and that nothing of node-redis shows: not its class, not its stack.
 */
function assertRefused(error: unknown, code: string, key?: RegExp): TransportRefusedError {
  assert.ok(error instanceof TransportRefusedError, `${error} (${error?.constructor?.name})`);
  assert.equal(error.code, code);
  assert.ok(error.reply.startsWith(code), error.reply);
  assert.ok(error.message.includes(error.reply), error.message);
  assert.ok(error.message.startsWith(`Cannot ${error.operation}: Redis at `), error.message);
  if (key) {
    assert.ok(error.keys.some((k) => key.test(k)), `keys ${JSON.stringify(error.keys)}`);
    assert.ok(error.keys.some((k) => error.operation.includes(k)), error.operation);
  }
  assert.equal(error.cause, undefined);
  assert.doesNotMatch(error.stack ?? "", /@redis|node_modules|ErrorReply|SimpleError/);
  return error;
}

/** The rejection of `promise`; fails the test when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then((value) => assert.fail(`expected a rejection, got ${value}`), (e) => e);
}

/** Sets `maxmemory` a little over what the server holds now, with no eviction. */
async function fillUp(admin: RedisAdmin): Promise<void> {
  const info = String(await admin.send(["INFO", "memory"]));
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1]);
  assert.ok(used > 0, info);
  await admin.send(["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
  await admin.send(["CONFIG", "SET", "maxmemory", String(used + 2 * MB)]);
}

Deno.test({
  name: "Cluster push and apply that Redis refuses at maxmemory fail with TransportRefusedError",
  ignore: noServer !== false,
  async fn() {
    await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
    await using admin = await connectAdmin(server.url);
    await using cluster = new Cluster({ n: 2, transport: server.url, progress: false });
    const client = await within(cluster.startAndConnect(), 60_000, "start 2 engines");
    const view = client.view();
    const broadcast = client.broadcastView();
    assert.deepEqual(await view.apply(() => 1).get(T), [1, 1]);
    await fillUp(admin);
    const value = new Uint8Array(8 * MB).fill(7);
    const blob = new RegExp(`^${cluster.namespace}:blob:`);
    assertRefused(await rejection(view.push({ big: value }).get(T)), "OOM", blob);
    assertRefused(await rejection(broadcast.push({ big: value }).get(T)), "OOM", blob);
    const applied = view.apply((x: Uint8Array) => x.length, value);
    assertRefused(await rejection(applied.get(T)), "OOM", blob);
    // Each engine's outcome is the typed error too.
    for (const outcome of await applied.get({ ...T, returnExceptions: true })) {
      assertRefused(outcome, "OOM", blob);
    }
    // Every write refused: the call's own messages are, and their streams are named.
    await admin.send(["CONFIG", "SET", "maxmemory", "1"]);
    const inbox = new RegExp(`^${cluster.namespace}:inbox:`);
    assertRefused(await rejection(view.push({ small: 1 }).get(T)), "OOM", inbox);
    assertRefused(await rejection(client.view(1).apply(() => 1).get(T)), "OOM", inbox);
    // Memory freed: the next calls work.
    await admin.send(["CONFIG", "SET", "maxmemory", "0"]);
    await view.push({ big: value }).get(T);
    assert.deepEqual(await view.apply(() => big.length).get(T), [8 * MB, 8 * MB]);
    await broadcast.push({ small: 2 }).get(T);
    assert.deepEqual(await broadcast.apply(() => small).get(T), [2, 2]);
  },
});

Deno.test({
  name: "Cluster call that its ACL user may not make fails with TransportRefusedError (NOPERM)",
  ignore: noServer !== false,
  async fn() {
    await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
    await using admin = await connectAdmin(server.url);
    await admin.send(["ACL", "SETUSER", "worker", "on", ">worker-pw", "~*", "&*", "+@all"]);
    const url = `redis://worker:worker-pw@127.0.0.1:${server.port}`;
    await using cluster = new Cluster({ n: 2, transport: url, progress: false });
    const client = await within(cluster.startAndConnect(), 60_000, "start 2 engines");
    const view = client.view();
    assert.deepEqual(await view.apply(() => 1).get(T), [1, 1]);
    // Large values are stored with SET, which this user may no longer run.
    await admin.send(["ACL", "SETUSER", "worker", "-set"]);
    const value = new Uint8Array(MB).fill(1);
    const blob = new RegExp(`^${cluster.namespace}:blob:`);
    const error = assertRefused(await rejection(view.push({ big: value }).get(T)), "NOPERM", blob);
    assert.doesNotMatch(error.message, /worker-pw/);
    const outcomes = await view.apply((x: Uint8Array) => x.length, value)
      .get({ ...T, returnExceptions: true });
    for (const outcome of outcomes) assertRefused(outcome, "NOPERM", blob);
    // The permission granted again: the next calls work.
    await admin.send(["ACL", "SETUSER", "worker", "+set"]);
    await view.push({ big: value }).get(T);
    assert.deepEqual(await view.apply(() => big.length).get(T), [MB, MB]);
  },
});

Deno.test({
  name: "RedisTransport.connect() as a user that may not run EVAL says NOPERM, typed, no password",
  ignore: noServer !== false,
  async fn() {
    await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
    await using admin = await connectAdmin(server.url);
    await admin.send(["ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+@all", "-eval"]);
    const url = `redis://reader:reader-pw@127.0.0.1:${server.port}`;
    const error = await rejection(RedisTransport.connect(url, { connectTimeoutMs: 5000 }));
    assert.ok(error instanceof TransportClosedError, String(error));
    assert.match(error.message, /^Cannot connect to redis:\/\/reader:\*\*\*@.*NOPERM/);
    assert.doesNotMatch(error.message, /reader-pw/);
    const cause = assertRefused(error.cause, "NOPERM");
    assert.equal(cause.operation, "connect");
    // Allowed again: the same URL connects.
    await admin.send(["ACL", "SETUSER", "reader", "+eval"]);
    await using transport = await RedisTransport.connect(url, { connectTimeoutMs: 5000 });
    const id = await transport.append("s", new Uint8Array([1]));
    assert.deepEqual((await transport.range("s")).map((e) => e.id), [id]);
  },
});

Deno.test({
  name: "RedisTransport calls on a key of the wrong type reject with TransportRefusedError",
  ignore: noServer !== false,
  async fn() {
    await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
    await using admin = await connectAdmin(server.url);
    await using transport = await RedisTransport.connect(server.url, { commandTimeoutMs: 5000 });
    await admin.send(["SET", "s", "not a stream"]);
    await admin.send(["XADD", "v", "*", "m", "not a value"]);
    const bytes = new Uint8Array([1, 2, 3]);
    const calls: [string, () => Promise<unknown>, RegExp][] = [
      ["append", () => transport.append("s", bytes), /^s$/],
      ["appendMany", () => transport.appendMany([{ stream: "s", data: bytes }]), /^s$/],
      ["read", () => transport.read("g", "c", ["s"], { blockMs: 0 }), /^s$/],
      ["ack", () => transport.ack("s", "g", ["1-1"]), /^s$/],
      ["claim", () => transport.claim("s", "g", "c", 0), /^s$/],
      ["claimFrom", () => transport.claimFrom("s", "g", "a", "c"), /^s$/],
      ["range", () => transport.range("s"), /^s$/],
      ["backlog", () => transport.backlog("s", "g"), /^s$/],
      ["trim", () => transport.trim("s", 10), /^s$/],
      ["getBlob", () => transport.getBlob("v"), /^v$/],
    ];
    for (const [name, call, key] of calls) {
      const error = await rejection(call());
      assert.ok(error instanceof TransportRefusedError, `${name}: ${error}`);
      assertRefused(error, error.code, key);
      assert.match(error.reply, /WRONGTYPE/, name);
    }
    // The keys hold streams and values again: the same calls work.
    await admin.send(["DEL", "s", "v"]);
    const id = await transport.append("s", bytes);
    assert.deepEqual((await transport.range("s")).map((e) => e.id), [id]);
    assert.equal(await transport.getBlob("v"), null);
  },
});

Deno.test({
  name: "RedisTransport append the server cannot parse rejects with TransportRefusedError",
  ignore: noServer !== false,
  async fn() {
    await using server = await startRedisServer({
      args: ["--loglevel", "warning", "--proto-max-bulk-len", "4mb"],
    });
    await using admin = await connectAdmin(server.url);
    await using transport = await RedisTransport.connect(server.url, { commandTimeoutMs: 5000 });
    // Lowered after the transport read it: the server refuses the value itself.
    await admin.send(["CONFIG", "SET", "proto-max-bulk-len", String(MB)]);
    const error = assertRefused(
      await rejection(transport.append("s", new Uint8Array(2 * MB))),
      "ERR",
      /^s$/,
    );
    assert.match(error.reply, /Protocol error/);
    await admin.send(["CONFIG", "SET", "proto-max-bulk-len", String(4 * MB)]);
    const id = await transport.append("s", new Uint8Array(2 * MB));
    assert.deepEqual((await transport.range("s")).map((e) => e.id), [id]);
  },
});
