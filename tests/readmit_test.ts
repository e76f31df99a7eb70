/**
 * A false death is not for good: a host that went silent (its process stopped, as a cut link
 * looks from the client) has its engines declared dead, and once its heartbeats resume they are
 * re-admitted, with an `"enginerestarted"` event saying so, and calls on them work again. On a
 * `redis-server` of the test's own, with a real `engine.ts` process SIGSTOPped and SIGCONTed.
 * (`multihost_net_test.ts` cuts a real link.)
 *
 * @module
 */
import assert from "node:assert/strict";
import { EngineDiedError } from "../mod.ts";
import type { EngineRestartedDetail } from "../mod.ts";
import { delay, waitUntil, within } from "./_async.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { startByHand } from "./_engine_process.ts";

Deno.test({
  name: "Engines of a host whose heartbeats resume after a false death are re-admitted",
  ignore: !hasRedisServer(),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await within(
      (async () => {
        await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
        await using started = await startByHand(server.url, 2, { heartbeatTimeoutMs: 1000 });
        const { client, process } = started;
        const died: number[] = [];
        const back: EngineRestartedDetail[] = [];
        client.addEventListener("enginedied", (e) => died.push((e as CustomEvent).detail.engineId));
        client.addEventListener("enginerestarted", (e) => back.push((e as CustomEvent).detail));
        assert.deepEqual(await client.view().apply(() => 1), [1, 1]);
        await client.view().push({ kept: "before" });

        process.kill("SIGSTOP");
        await waitUntil(() => `deaths, saw ${died}`, () => died.length === 2, 10_000);
        await assert.rejects(async () => await client.view(0).apply(() => 1), EngineDiedError);
        process.kill("SIGCONT");

        await waitUntil(
          () => `re-admissions, saw ${JSON.stringify(back)}`,
          () => back.length === 2,
          15_000,
        );
        assert.deepEqual(back.map((d) => d.engineId).sort(), [0, 1]);
        assert.ok(back.every((d) => d.readmitted === true), JSON.stringify(back));
        assert.equal(client.deadEngine(0), undefined);
        assert.deepEqual(await client.view().apply(() => 2), [2, 2]);
        assert.deepEqual(await client.broadcastView().apply(() => 3), [3, 3]);
        // The same engines came back, namespaces and all: nothing restarted them.
        assert.deepEqual(await client.view().pull("kept"), ["before", "before"]);
        await delay(0);
      })(),
      60_000,
      "a stopped host re-admitted",
    );
  },
});
