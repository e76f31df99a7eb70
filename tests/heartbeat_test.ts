/**
 * Heartbeats tell only what they can: a beat counts for the engines its host registered last (a
 * stopped host's old beats do not condemn the host that took over its ids), silence while the
 * client cannot hear Redis is not a death, and engine processes whose cluster is gone (its process
 * SIGKILLed) stop and take the cluster's keys with them. All on a `redis-server` of the test's own.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { toHex } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { delay, within } from "./_async.ts";
import { processAlive, runScriptCluster } from "./_engine_process.ts";
import {
  connectAdmin,
  hasRedisServer,
  startRedisServer,
  uniqueNamespace,
} from "./_redis_server.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../actors/_liveness.ts";

declare const id: number;

const ignore = !hasRedisServer();
const TEST_TIMEOUT_MS = 120_000;

/** Starts `engine.ts` for engines 0 and 1 of `cluster` as host `hostId`. */
function engineProcess(url: string, cluster: string, keyFile: string, hostId: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../engine.ts", import.meta.url).href,
      ...["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", "2"],
      ...["--host-id", hostId],
    ],
    stdout: "null",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** Collects the `engineId`s of the `"enginedied"` events of `target`. */
function deaths(target: EventTarget): number[] {
  const seen: number[] = [];
  target.addEventListener("enginedied", (event) => {
    seen.push((event as CustomEvent<{ engineId: number }>).detail.engineId);
  });
  return seen;
}

Deno.test({
  name: "Client trusts a heartbeat only for the engines its host registered last",
  ignore,
  async fn() {
    await within(
      (async () => {
        await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
        const dir = await Deno.makeTempDir();
        const keyFile = `${dir}/key`;
        await Deno.writeTextFile(keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
        const cluster = uniqueNamespace();
        const options = { transport: server.url, cluster, keyFile, n: 2, timeout: 60_000 };
        try {
          const a = engineProcess(server.url, cluster, keyFile, "hostA");
          const first = await Cluster.connect(options);
          assert.deepEqual(await first.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
          await first.close();
          a.kill("SIGTERM");
          await a.status;
          const b = engineProcess(server.url, cluster, keyFile, "hostB");
          try {
            const client = await Cluster.connect(options);
            const died = deaths(client);
            // hostA's beats stopped long ago: a client that blamed hostB's engines for them
            // would have spoken by now.
            await delay(DEFAULT_HEARTBEAT_TIMEOUT_MS + 2000);
            assert.deepEqual(died, []);
            assert.deepEqual(await client.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
            await client.close();
          } finally {
            b.kill("SIGKILL");
            await b.status;
          }
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      })(),
      TEST_TIMEOUT_MS,
      "stale heartbeats",
    );
  },
});

Deno.test({
  name: "Cluster takes no live engine for dead while Redis is away for 12 s",
  ignore,
  async fn() {
    await within(
      (async () => {
        await using server = await startRedisServer({
          appendonly: true,
          args: ["--loglevel", "warning"],
        });
        await using cluster = new Cluster({
          n: 2,
          hosts: 2,
          transport: server.url,
          launcher: "process",
          progress: false,
        });
        const client = await cluster.startAndConnect();
        const died = deaths(cluster);
        assert.deepEqual(await client.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
        await server.stop(); // longer than the transport's 10 s `commandTimeoutMs`
        await delay(12_000);
        await server.start();
        // Beats come again once the hosts hear Redis; until they do, no silence counts.
        await delay(DEFAULT_HEARTBEAT_TIMEOUT_MS + 2000);
        assert.deepEqual(died, []);
        assert.deepEqual(await client.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
      })(),
      TEST_TIMEOUT_MS,
      "outage",
    );
  },
});

Deno.test({
  name:
    "Engine processes stop and delete the cluster's keys when the process that started them is SIGKILLed",
  ignore,
  async fn() {
    await within(
      (async () => {
        await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
        await using admin = await connectAdmin(server.url);
        const { child, namespace, pids } = await runScriptCluster(server.url);
        assert.ok((await admin.send(["KEYS", `${namespace}:*`]) as string[]).length > 0);
        child.kill("SIGKILL");
        await child.status;
        while (pids.some(processAlive)) await delay(50);
        let keys = await admin.send(["KEYS", `${namespace}:*`]) as string[];
        while (keys.length > 0) {
          await delay(50);
          keys = await admin.send(["KEYS", `${namespace}:*`]) as string[];
        }
        assert.deepEqual(keys, []);
      })(),
      TEST_TIMEOUT_MS,
      "orphans",
    );
  },
});
