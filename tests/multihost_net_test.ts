/**
 * Many machines for real, on one: Redis, the client and two engine hosts each in a network
 * namespace of their own (`_netns.ts`), the hosts started with `engine.ts` as the README says,
 * the client a `Cluster.connect` in its own namespace (`_netns_client.ts`). Links are cut with
 * `ip link set … down`. Skipped, saying why, where namespaces cannot be made (not root, no
 * iproute2).
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Bed, type Driver, makeBed, netnsUnavailable } from "./_netns.ts";
import { delay, waitUntil, within } from "./_async.ts";

const why = await netnsUnavailable();
if (why) {
  // deno-lint-ignore no-console
  console.log(`multihost_net_test.ts skipped: ${why}`);
}

const IDS = [0, 1, 2, 3, 4, 5, 6, 7];
const EIGHT_ONES = IDS.map(() => 1);

/** Runs `fn` on a bed of two engine machines, engines 0–3 and 4–7, with a connected driver. */
function bedTest(
  name: string,
  fn: (bed: Bed, client: Driver) => Promise<void>,
  delayMs = 0,
): void {
  Deno.test({
    name,
    ignore: why !== undefined,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await using bed = await makeBed({ hosts: 2, delayMs });
      bed.startHost(0, IDS.slice(0, 4), 8);
      bed.startHost(1, IDS.slice(4), 8);
      const client = bed.driver();
      await within(
        (async () => {
          assert.deepEqual(await client.send(bed.connect(8)), IDS);
          await fn(bed, client);
          await client.send({ op: "close" });
        })(),
        90_000,
        name,
      );
    },
  });
}

Deno.test({
  name: "Hosts started exactly as the README says (--n 4, then --n 4 --first 4) form one cluster " +
    "of 8 across the machines",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using bed = await makeBed({ hosts: 2, delayMs: 0 });
    bed.startEngineTs(0, ["--n", "4"]);
    bed.startEngineTs(1, ["--n", "4", "--first", "4"]);
    const c = bed.driver();
    await within(
      (async () => {
        assert.deepEqual(await c.send(bed.connect(8)), IDS);
        // Every engine sees the cluster's size, and a broadcast spanning both machines answers.
        assert.deepEqual(await c.send({ op: "call", kind: "size" }), IDS.map(() => 8));
        assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
        assert.equal(await c.send({ op: "call", kind: "direct", engineId: 6 }), 1);
        assert.deepEqual(await c.send({ op: "call", kind: "allreduce" }), IDS.map(() => 8));
        await c.send({ op: "close" });
      })(),
      90_000,
      "the README's flow",
    );
  },
});

/** The ids of the events of `type` the client dispatched. */
function seen(client: Driver, type: string): number[] {
  return client.events.filter((e) => e.event === type).map((e) => e.detail.engineId).sort((a, b) =>
    a - b
  );
}

bedTest("Engines on two machines answer broadcasts, direct calls and allreduce", async (_, c) => {
  assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
  assert.equal(await c.send({ op: "call", kind: "direct", engineId: 6 }), 1);
  assert.deepEqual(await c.send({ op: "call", kind: "allreduce" }), IDS.map(() => 8));
});

bedTest(
  "A 5 s link blip on an engine machine: its engines die, then are re-admitted",
  async (bed, c) => {
    assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
    const cutAt = performance.now();
    await bed.cut(bed.hosts[1]);
    await waitUntil(
      () => `engines 4–7 declared dead, saw ${seen(c, "enginedied")}`,
      () => seen(c, "enginedied").length === 4,
      10_000,
    );
    assert.deepEqual(seen(c, "enginedied"), [4, 5, 6, 7]);
    await assert.rejects(
      c.send({ op: "call", kind: "direct", engineId: 5 }),
      (e: Error) => e.name === "EngineDiedError",
    );
    await delay(5000 - (performance.now() - cutAt));
    await bed.restore(bed.hosts[1]);
    await waitUntil(
      () => `engines 4–7 re-admitted, saw ${JSON.stringify(c.events)}`,
      () => seen(c, "enginerestarted").length === 4,
      30_000,
    );
    assert.deepEqual(seen(c, "enginerestarted"), [4, 5, 6, 7]);
    assert.ok(
      c.events.filter((e) => e.event === "enginerestarted").every((e) => e.detail.readmitted),
    );
    assert.equal(await c.send({ op: "call", kind: "direct", engineId: 5 }), 1);
    assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
    assert.deepEqual(await c.send({ op: "call", kind: "allreduce" }), IDS.map(() => 8));
  },
);

const CUTS = [["client", 11, 0], ["Redis", 11, 0], ["client", 12, 10]] as const;
for (const [who, seconds, delayMs] of CUTS) {
  bedTest(
    `The ${who} machine's link down ${seconds} s (${delayMs} ms per link): no engine is declared dead, ` +
      `calls work after`,
    async (bed, c) => {
      assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
      const machine = who === "client" ? bed.client : bed.redis;
      await bed.cut(machine);
      // A call made while the link is down ends: with its result, or a typed error.
      const during = c.send({ op: "call", kind: "broadcast", timeout: 60_000 }).then(
        (value) => ({ value }),
        (error: Error) => ({ error }),
      );
      await delay(seconds * 1000);
      await bed.restore(machine);
      const ended = await within(during, 60_000, "the call made while the link was down");
      if ("error" in ended) {
        // One error, or one per engine (a CompositeError listing each engine's).
        const { name, message } = ended.error;
        const each = [...message.matchAll(/^\s*\[engine \d+\] (\w+):/gm)].map((m) => m[1]);
        const names = name === "CompositeError" ? each : [name];
        assert.ok(names.length > 0, message);
        for (const n of names) {
          assert.ok(["TransportClosedError", "TimeoutError"].includes(n), `${name}: ${message}`);
        }
      } else assert.deepEqual(ended.value, EIGHT_ONES);
      // Calls made once the link is back end with every engine's answer…
      assert.deepEqual(
        await c.send({ op: "call", kind: "broadcast", timeout: 30_000 }),
        EIGHT_ONES,
      );
      // …and the heartbeats read after it (a timeout and more) condemn no one.
      await delay(4000);
      assert.deepEqual(await c.send({ op: "call", kind: "broadcast" }), EIGHT_ONES);
      assert.deepEqual(c.events, []);
    },
    delayMs,
  );
}
