// Engines started by hand (engine.ts) send heartbeats from a thread of their own; a client
// notices when their process dies, and does not mistake a busy engine for a dead one.
import assert from "node:assert/strict";
import { Cluster, toHex } from "../actors/cluster.ts";
import type { Client } from "../actors/client.ts";
import { CompositeError, EngineDiedError } from "../errors.ts";
import { generateKey } from "../transport/envelope.ts";
import { hasRedisServer, startRedisServer, uniqueNamespace } from "./_redis_server.ts";

interface HandStarted extends AsyncDisposable {
  client: Client;
  process: Deno.ChildProcess;
}

async function startByHand(url: string, n: number): Promise<HandStarted> {
  const dir = await Deno.makeTempDir();
  const keyFile = `${dir}/key`;
  await Deno.writeTextFile(keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
  const cluster = uniqueNamespace();
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../engine.ts", import.meta.url).href,
      ...["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", String(n)],
    ],
    stdout: "null",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const client = await Cluster.connect({ transport: url, cluster, keyFile, n, timeout: 30_000 });
  return {
    client,
    process,
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGKILL");
      } catch { /* already gone */ }
      await process.status;
      await client.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const ignore = !hasRedisServer();

Deno.test({
  name: "Client fails calls on engines whose engine.ts process was SIGKILLed, with EngineDiedError",
  ignore,
  async fn() {
    await using server = await startRedisServer();
    await using engines = await startByHand(server.url, 2);
    const died: number[] = [];
    engines.client.addEventListener("enginedied", (e) => {
      died.push((e as CustomEvent<{ engineId: number }>).detail.engineId);
    });
    const view = engines.client.view();
    assert.deepEqual(await view.apply(() => 1).get({ timeout: 10_000 }), [1, 1]);
    const ar = view.apply(() => new Promise((resolve) => setTimeout(resolve, 120_000)));
    engines.process.kill("SIGKILL");
    // The deadline only guards against a hang: detection itself takes about 3 s.
    const error = await ar.get({ timeout: 20_000 }).then(() => null, (e) => e);
    assert.ok(error instanceof CompositeError, String(error));
    assert.deepEqual(error.engineIds, [0, 1]);
    for (const e of error.errors) {
      assert.ok(e instanceof EngineDiedError);
      assert.match(e.message, /sent no heartbeat/);
    }
    assert.deepEqual(died.sort(), [0, 1]);
    // Later calls fail at once.
    const again = await view.apply(() => 1).get({ timeout: 1000 }).then(() => null, (e) => e);
    assert.ok(again instanceof CompositeError);
  },
});

Deno.test({
  name: "Client does not take an engine busy with synchronous work for 5 s for dead",
  ignore,
  async fn() {
    await using server = await startRedisServer();
    await using engines = await startByHand(server.url, 1);
    const busy = engines.client.view().apply(() => {
      const end = Date.now() + 5000;
      let spins = 0;
      while (Date.now() < end) spins++;
      return spins > 0;
    });
    assert.deepEqual(await busy.get({ timeout: 30_000 }), [true]);
    assert.equal(engines.client.deadEngine(0), undefined);
  },
});
