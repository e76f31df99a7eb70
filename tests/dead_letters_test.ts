/**
 * Caps on what a writer to Redis without the key can make a cluster hold (issue 13, point 6):
 * entries over `maxMessageBytes` are dead-lettered unread, and the dead-letter stream is bounded
 * in entries, in bytes per letter and in age. The forged entries are written with a plain Redis
 * connection, as an attacker would.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { redisTest } from "./_backends.ts";
import { waitUntil } from "./_async.ts";
import { attacker } from "./_attacker.ts";

const T = { timeout: 30_000 } as const;

/** The JSON record at the head of a dead letter, and the payload bytes it kept. */
function parseLetter(letter: Uint8Array): { record: Record<string, unknown>; kept: number } {
  const length = new DataView(letter.buffer, letter.byteOffset).getUint32(0);
  const record = JSON.parse(new TextDecoder().decode(letter.subarray(4, 4 + length)));
  return { record, kept: letter.byteLength - 4 - length };
}

redisTest(
  "Cluster({ maxMessageBytes }): forged entries over the bound are dead-lettered unread, each letter keeping 1 KiB and the size; the engines answer",
  async (redis) => {
    await using cluster = new Cluster({
      n: 2,
      transport: redis.url,
      progress: false,
      maxMessageBytes: 256 * 1024,
    });
    const client = await cluster.startAndConnect();
    assert.deepEqual(await client.view().apply(() => 1).get(T), [1, 1]);
    await using spy = await attacker(redis);
    const [dispatch] = await spy.keys(`${cluster.namespace}:inbox:dispatch.*`);
    assert.ok(dispatch, "a dispatcher's inbox");
    const forged = new Uint8Array(2 * 1024 * 1024).fill(7);
    for (let i = 0; i < 5; i++) await spy.add(dispatch, forged);

    const dead = `${cluster.namespace}:dead`;
    await waitUntil("5 dead letters", async () => (await spy.payloads(dead)).length >= 5);
    for (const letter of await spy.payloads(dead)) {
      const { record, kept } = parseLetter(letter);
      assert.equal(record.bytes, forged.byteLength);
      assert.match(String(record.reason), /exceeds/);
      assert.equal(kept, 1024);
    }
    const ttl = Number(await spy.send(["PTTL", dead]));
    assert.ok(ttl > 0 && ttl <= 24 * 3600_000, `the dead-letter stream expires (PTTL ${ttl})`);
    assert.deepEqual(await client.view().apply(() => 2).get(T), [2, 2]);
  },
);

redisTest(
  "the dead-letter stream holds about 1,000 letters however many forged entries arrive",
  async (redis) => {
    await using cluster = new Cluster({ n: 1, transport: redis.url, progress: false });
    const client = await cluster.startAndConnect();
    assert.deepEqual(await client.view().apply(() => 1).get(T), [1]);
    await using spy = await attacker(redis);
    const [dispatch] = await spy.keys(`${cluster.namespace}:inbox:dispatch.*`);
    for (let i = 0; i < 3000; i++) await spy.add(dispatch, new TextEncoder().encode(`forged ${i}`));

    await waitUntil(
      "the letter of the last forged entry",
      async () => {
        const length = Number(await spy.send(["XLEN", `${cluster.namespace}:dead`]));
        const [last] = (await spy.payloads(`${cluster.namespace}:dead`)).slice(-1);
        return length > 0 && /forged 2999/.test(new TextDecoder().decode(last));
      },
      30_000,
    );
    const length = Number(await spy.send(["XLEN", `${cluster.namespace}:dead`]));
    assert.ok(length >= 1000 && length <= 1200, `${length} dead letters kept`);
    assert.deepEqual(await client.view().apply(() => 2).get(T), [2]);
  },
  { timeoutMs: 90_000 },
);

Deno.test("Cluster() and Cluster.connect() refuse a maxMessageBytes that is not a whole number > 0", async () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => new Cluster({ maxMessageBytes: bad }), RangeError);
    await assert.rejects(
      Cluster.connect({
        transport: "memory:",
        cluster: "x",
        n: 1,
        key: new Uint8Array(32),
        maxMessageBytes: bad,
      }),
      RangeError,
    );
  }
});
