/**
 * Attacks on a cluster by someone who can write to its Redis but does not hold the cluster key
 * (issue 13): forged and replayed entries and values written with a plain Redis connection, as an
 * attacker would. Each test runs a real `redis-server` (or `REDIS_URL`).
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { FunctionSource, ModuleFunction } from "../actors/protocol/wire_types.ts";
import { RemoteError } from "../errors.ts";
import { encodeValue } from "../transport/codec.ts";
import { connectAdmin, type RedisAdmin } from "./_redis_server.ts";
import { type Backend, redisTest } from "./_backends.ts";
import { delay, within } from "./_async.ts";

// A name that exists in the engines' namespaces, not here.
declare const big: Float64Array;

const T = { timeout: 20_000 } as const;
/** Sanitizers off, as before; the deadline is a hang guard. */
const CASE = { sanitize: false, timeoutMs: 120_000 } as const;

/** The keys matching `pattern`, polled until there is one (at most `ms`). */
async function keysOf(admin: RedisAdmin, pattern: string, ms = 10_000): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    const keys = (await admin.send(["KEYS", pattern]) as unknown[]).map(String);
    if (keys.length > 0 || Date.now() > until) return keys;
    await delay(10);
  }
}

/** A cluster of `n` engines on the file's Redis, and an admin connection to that Redis. */
async function start(
  redis: Backend,
  n = 1,
  options: ConstructorParameters<typeof Cluster>[0] = {},
) {
  const cluster = new Cluster({ n, hosts: 1, transport: redis.url, progress: false, ...options });
  const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
  const admin = await connectAdmin(redis.url);
  return {
    cluster,
    client,
    admin,
    async [Symbol.asyncDispose]() {
      await admin[Symbol.asyncDispose]();
      await cluster.stop();
    },
  };
}

redisTest(
  "a blob swapped in Redis is refused before it is decoded: no code of it runs",
  async (redis) => {
    await using fx = await start(redis);
    const dv = fx.client.view();
    const dir = await Deno.makeTempDir({ prefix: "deno-parallel-attack-" });
    const module = `${dir}/evil.ts`;
    await Deno.writeTextFile(
      module,
      "(globalThis as Record<string, unknown>).pwnedByModule = true;\n" +
        "export default function evil() {}\n",
    );
    const swaps: [string, Uint8Array][] = [
      ["source", encodeValue(new FunctionSource("(globalThis.pwnedBySource = true, () => 0)"))],
      ["module", encodeValue(new ModuleFunction(new URL(`file://${module}`)))],
    ];
    for (const [what, evil] of swaps) {
      // The engine is busy, so the push waits in its inbox while its blob is swapped.
      const busy = dv.apply(() => new Promise((resolve) => setTimeout(resolve, 1000)));
      const push = dv.push({ big: new Float64Array(20_000) });
      const [key] = await keysOf(fx.admin, `${fx.client.namespace}:blob:*`);
      assert.ok(key, `the ${what} push stored no blob`);
      await fx.admin.send(["SET", key, evil, "KEEPTTL"]);
      await busy.get(T);
      const error = await push.get(T).then(() => undefined, (e) => e);
      assert.ok(error instanceof RemoteError, `the swapped ${what} blob was used: ${error}`);
      assert.match(error.message, /SHA-256/);
      await fx.admin.send(["DEL", key]);
    }
    const [seen] = await dv.apply(() => {
      const g = globalThis as Record<string, unknown>;
      return [g.pwnedBySource ?? null, g.pwnedByModule ?? null];
    }).get(T);
    assert.deepEqual(seen, [null, null]);
    // A blob that is not swapped still works.
    await dv.push({ big: new Float64Array(20_000).fill(2) }).get(T);
    assert.deepEqual(await dv.apply(() => big[19_999]).get(T), [2]);
    await Deno.remove(dir, { recursive: true });
  },
  CASE,
);
