/**
 * Blobs (values of 64 KiB or more, stored once in Redis) live as long as their call (issue 14,
 * point 8): a call deletes the blobs it stored once every engine answered, and a call that fails
 * before it is sent deletes those it stored so far, so large pushes do not fill a Redis at
 * `maxmemory`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { redisTest } from "./_backends.ts";
import { waitUntil } from "./_async.ts";
import { redisKeys } from "./_redis_server.ts";

// Names that exist in the engines' namespaces, not here.
declare const big: Float64Array;
declare const other: Float64Array;

const T = { timeout: 30_000 } as const;
const BIG = 256 * 1024;

/** Waits until no blob of `namespace` is left in the Redis at `url`. */
async function noBlobsLeft(url: string, namespace: string): Promise<void> {
  await waitUntil(
    "no blob left",
    async () => (await redisKeys(url, `${namespace}:blob:`)).length === 0,
  );
}

redisTest(
  "a push, an apply and a broadcast push delete their blobs once every engine answered",
  async (redis) => {
    await using cluster = new Cluster({ n: 2, transport: redis.url, progress: false });
    const client = await cluster.startAndConnect();
    const value = new Float64Array(BIG / 8).fill(1);

    await client.view().push({ big: value }).get(T);
    assert.deepEqual(await client.view().apply(() => big.length).get(T), [BIG / 8, BIG / 8]);
    await noBlobsLeft(redis.url, cluster.namespace);

    const sums = await client.view().apply((a: Float64Array) => a.reduce((s, x) => s + x), value)
      .get(T);
    assert.deepEqual(sums, [BIG / 8, BIG / 8]);
    await noBlobsLeft(redis.url, cluster.namespace);

    await client.broadcastView().push({ other: value }).get(T);
    assert.deepEqual(await client.view().apply(() => other.length).get(T), [BIG / 8, BIG / 8]);
    await noBlobsLeft(redis.url, cluster.namespace);
  },
);

redisTest(
  "a push that fails before it is sent deletes the blobs it already stored",
  async (redis) => {
    await using cluster = new Cluster({ n: 1, transport: redis.url, progress: false });
    const client = await cluster.startAndConnect();
    const error = await client.view().push({
      big: new Uint8Array(BIG).fill(3),
      bad: { s: Symbol("x") },
    }).get(T).catch((e) => e);
    assert.equal(error.name, "SerializationError", String(error));
    await noBlobsLeft(redis.url, cluster.namespace);
    assert.deepEqual(await client.view().apply(() => 1).get(T), [1]);
  },
);
