/**
 * Two `engine.ts` hosts started exactly as the README says (`--n 4`, then `--n 4 --first 4`) make
 * one cluster of 8: broadcasts spanning both answer, and every engine's `size` is 8. A host
 * started with a `--size` the cluster does not have is refused at connect, with a clear error.
 */
import assert from "node:assert/strict";
import { type Client, Cluster, ClusterStateError } from "../mod.ts";
import { within } from "./_async.ts";
import { redisTest } from "./_backends.ts";
import { clusterFiles, connectClient, startEngine } from "./_multihost.ts";

function readmeHost(url: string, cluster: string, keyFile: string, more: string[]): string[] {
  return ["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", "4", ...more];
}

redisTest(
  "engine.ts hosts started as the README says form one cluster: BroadcastView spans both hosts and size is 8",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using _a = startEngine(readmeHost(url, cluster, keyFile, []));
    await using _b = startEngine(readmeHost(url, cluster, keyFile, ["--first", "4"]));
    await using connected = await connectClient(url, files, 8);
    const { client } = connected;
    await spansBothHosts(client);
  },
);

async function spansBothHosts(client: Client): Promise<void> {
  assert.deepEqual(client.ids, [0, 1, 2, 3, 4, 5, 6, 7]);
  const bv = client.broadcastView();
  const sizes = await within(
    bv.apply(() => size).get(),
    10_000,
    "a broadcast apply over both hosts",
  );
  assert.deepEqual(sizes, [8, 8, 8, 8, 8, 8, 8, 8]);
  await within(
    bv.scatter("rank", client.ids, { flatten: true }).get(),
    10_000,
    "a broadcast scatter over both hosts",
  );
  await within(bv.push({ factor: 3 }).get(), 10_000, "a broadcast push over both hosts");
  const parts = await within(
    bv.apply(() => [rank * factor, size]).get(),
    10_000,
    "a broadcast apply reading what was scattered and pushed",
  );
  assert.deepEqual(parts, client.ids.map((id) => [id * 3, 8]));
  assert.deepEqual(await client.view().apply(() => size), [8, 8, 8, 8, 8, 8, 8, 8]);
}

redisTest(
  "a sandboxed engine.ts host (--task-permissions) of a two-host cluster gives its tasks the cluster's size",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    const sandboxed = ["--task-permissions", "{}"];
    await using _a = startEngine(readmeHost(url, cluster, keyFile, sandboxed), [], [
      "--unstable-worker-options",
    ]);
    await using _b = startEngine(readmeHost(url, cluster, keyFile, ["--first", "4"]));
    await using connected = await connectClient(url, files, 8);
    const { client } = connected;
    const bv = client.broadcastView();
    const sizes = await within(bv.apply(() => size).get(), 10_000, "a broadcast apply");
    assert.deepEqual(sizes, [8, 8, 8, 8, 8, 8, 8, 8]);
    await client.view([0]).push({ size: 3 });
    assert.deepEqual(await client.view([0, 4]).apply(() => size), [3, 8]);
  },
);

redisTest(
  "Cluster.connect() fails with ClusterStateError naming the host started with a --size the cluster does not have",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using _a = startEngine(readmeHost(url, cluster, keyFile, ["--size", "4"]));
    await using _b = startEngine(readmeHost(url, cluster, keyFile, ["--first", "4"]));
    const error = await within(
      Cluster.connect({ transport: url, cluster, keyFile, n: 8, timeout: 30_000 }).then(
        async (client) => {
          await client.close();
          return undefined;
        },
        (e) => e,
      ),
      40_000,
      "Cluster.connect()",
    );
    assert.ok(error instanceof ClusterStateError, `expected ClusterStateError, got ${error}`);
    assert.match(error.message, /engines 0, 1, 2, 3/);
    assert.match(error.message, /--size 4/);
    assert.match(error.message, /8 engines/);
  },
);

declare const size: number;
declare const rank: number;
declare const factor: number;
