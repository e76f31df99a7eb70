/**
 * Every key of a cluster's namespace leaves Redis once no party keeps the cluster alive, however
 * the parties ended (issue 14 point 5, issue 20 point 6): keys are leased, and live parties renew
 * the lease (kept results up to their `resultRetention`, one hour here). And a live cluster keeps
 * its keys past the lease time, idle or busy in a long task. All on a `redis-server` of the
 * test's own.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { LEASE_SWEEP_MS, STREAM_LEASE_MS } from "../actors/core/_lease.ts";
import { toHex } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { delay, within } from "./_async.ts";
import { processAlive, runScriptCluster } from "./_engine_process.ts";
import {
  connectAdmin,
  hasRedisServer,
  type RedisServer,
  startRedisServer,
  uniqueNamespace,
} from "./_redis_server.ts";

declare const id: number;

const ignore = !hasRedisServer();
/** Long enough for a lease to run out after the last renewal, twice over. */
const TEST_TIMEOUT_MS = 3 * STREAM_LEASE_MS + 60_000;

/** The keys of `namespace` on `server`. */
async function keysOf(server: RedisServer, namespace: string): Promise<string[]> {
  await using admin = await connectAdmin(server.url);
  return ((await admin.send(["KEYS", `${namespace}:*`])) as string[]).map(String).sort();
}

/** Waits until `namespace` has no key left on `server`; fails naming those left, past the bound. */
async function untilNoKeys(server: RedisServer, namespace: string): Promise<void> {
  const bound = performance.now() + 2 * STREAM_LEASE_MS;
  for (;;) {
    const keys = await keysOf(server, namespace);
    if (keys.length === 0) return;
    if (performance.now() > bound) {
      throw new Error(`${keys.length} keys of ${namespace} stayed: ${keys.slice(0, 8).join(", ")}`);
    }
    await delay(500);
  }
}

for (const launcher of ["worker", "process"] as const) {
  Deno.test({
    name: `Every key of a cluster leaves Redis once its script and its ${launcher} engines are ` +
      "SIGKILLed",
    ignore,
    async fn() {
      await within(
        (async () => {
          await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
          const { child, namespace, pids } = await runScriptCluster(server.url, launcher);
          assert.ok((await keysOf(server, namespace)).length > 0);
          // Everyone at once, as a kernel restart or a crash of the machine's session would:
          // no party is left to stop the cluster or delete its keys.
          for (const pid of new Set(pids)) if (pid !== child.pid) Deno.kill(pid, "SIGKILL");
          child.kill("SIGKILL");
          await child.status;
          while (pids.some(processAlive)) await delay(50);
          await untilNoKeys(server, namespace);
        })(),
        TEST_TIMEOUT_MS,
        `keys after SIGKILL (${launcher})`,
      );
    },
  });
}

/** Starts `engine.ts` for engines 0 and 1 of `cluster`. */
function engineProcess(url: string, cluster: string, keyFile: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../engine.ts", import.meta.url).href,
      ...["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", "2"],
    ],
    stdout: "null",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
}

Deno.test({
  name: "An engine.ts cluster keeps its keys past the lease while it runs, busy and without a " +
    "client, and they leave Redis once its host is stopped",
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
        const host = engineProcess(server.url, cluster, keyFile);
        try {
          const first = await Cluster.connect(options);
          const call = first.view().apply(() => id);
          assert.deepEqual(await call.get({ timeout: 30_000 }), [0, 1]);
          // Engine 0 blocks its host's event loop well past the lease; no client stays.
          const busyMs = STREAM_LEASE_MS + 4 * LEASE_SWEEP_MS;
          const busy = first.view(0).apply((ms: number) => {
            const end = Date.now() + ms;
            while (Date.now() < end) { /* CPU-bound */ }
          }, busyMs);
          busy.get().catch(() => {}); // fails once the client closes
          await delay(500);
          await first.close();
          const before = (await keysOf(server, cluster)).filter((k) =>
            k.includes(":inbox:engine.")
          );
          assert.equal(before.length, 2);
          await delay(busyMs + 2000);
          assert.deepEqual(
            (await keysOf(server, cluster)).filter((k) => k.includes(":inbox:engine.")),
            before,
          );
          const second = await Cluster.connect(options);
          assert.deepEqual(await second.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
          // Kept for its hour, though longer ago than the lease.
          assert.deepEqual(await second.getResult(call.id, { timeout: 10_000 }), [0, 1]);
          await second.close();
          host.kill("SIGTERM");
          await host.status;
          // A stopped engine.ts host leaves its cluster's keys (other hosts may still run it);
          // with no party left, the lease runs out.
          await untilNoKeys(server, cluster);
        } finally {
          try {
            host.kill("SIGKILL");
          } catch { /* exited */ }
          await host.status;
          await Deno.remove(dir, { recursive: true });
        }
      })(),
      TEST_TIMEOUT_MS,
      "engine.ts keys",
    );
  },
});

Deno.test({
  name: "A Redis outage longer than the lease: no call hangs on what expired, the next call works",
  ignore,
  async fn() {
    await within(
      (async () => {
        await using server = await startRedisServer({
          appendonly: true,
          args: ["--loglevel", "warning"],
        });
        await using cluster = new Cluster({ n: 2, transport: server.url, progress: false });
        const client = await cluster.startAndConnect();
        assert.deepEqual(await client.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
        const lost: string[] = [];
        client.system.transport.onDataLost((reason) => lost.push(reason));
        // Running when Redis stops: its answers are written once Redis is back, to streams that
        // may have expired meanwhile.
        const running = client.view().apply(() => new Promise((r) => setTimeout(() => r(id), 2000)))
          .get().then((v) => v, (e: Error) => e);
        await delay(200);
        await server.stop();
        await delay(STREAM_LEASE_MS + 5000);
        await server.start();
        const outcome = await within(running, 60_000, "the call running through the outage");
        // Answered (the answers found a stream made again), or failed saying why: never waiting.
        if (outcome instanceof Error) assert.equal(outcome.name, "TransportDataLostError");
        else assert.deepEqual(outcome, [0, 1]);
        assert.deepEqual(await client.view().apply(() => id).get({ timeout: 30_000 }), [0, 1]);
        assert.deepEqual(
          await client.broadcastView().apply(() => id).get({ timeout: 30_000 }),
          [0, 1],
        );
        // The cluster's parties found their lease had run out, and said so.
        await waitUntilSaid(lost);
      })(),
      TEST_TIMEOUT_MS,
      "outage past the lease",
    );
  },
});

/** Waits (bounded) until `lost` has a reason that names the lease. */
async function waitUntilSaid(lost: string[]): Promise<void> {
  const bound = performance.now() + 2 * STREAM_LEASE_MS;
  while (!lost.some((r) => r.includes("lease ran out"))) {
    if (performance.now() > bound) throw new Error(`no lease loss reported: ${lost.join("; ")}`);
    await delay(200);
  }
}
