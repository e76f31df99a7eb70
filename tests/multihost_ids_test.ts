/**
 * Host ids and engine ids of `engine.ts` hosts: default host ids are unique even where process
 * ids are not (containers, where every host is PID 1), and a second host that would share a live
 * host's engine ids or `--host-id` is refused with a clear error instead of splitting calls.
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { waitUntil, within } from "./_async.ts";
import { redisTest } from "./_backends.ts";
import {
  clusterFiles,
  connectClient,
  PID_NAMESPACE,
  pidNamespaceUnavailable,
  startEngine,
} from "./_multihost.ts";

const noPidNamespace = pidNamespaceUnavailable();

function hostArgs(url: string, cluster: string, keyFile: string, more: string[]): string[] {
  return ["--redis", url, "--cluster", cluster, "--key-file", keyFile, ...more];
}

if (noPidNamespace) {
  // deno-lint-ignore no-console
  console.warn(`multihost_ids_test: the PID-namespace case is ignored: ${noPidNamespace}`);
}

redisTest(
  "engine.ts hosts that are both PID 1 (containers) get distinct default host ids, and every DirectView call works",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    const wrap = PID_NAMESPACE;
    await using _a = startEngine(hostArgs(url, cluster, keyFile, ["--n", "4"]), wrap);
    await using _b = startEngine(
      hostArgs(url, cluster, keyFile, ["--n", "4", "--first", "4"]),
      wrap,
    );
    await using connected = await connectClient(url, files, 8);
    const { client } = connected;
    const hosts = client.ids.map((id) => client.hostOf(id));
    assert.equal(new Set(hosts).size, 2, `host ids: ${hosts}`);
    assert.match(
      hosts[0],
      /-1-[0-9a-f]{6}$/,
      "the default id holds the pid (1) and a random part",
    );
    const ids = await within(client.view().apply(() => id).get(), 10_000, "DirectView apply");
    assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7]);
    for (const engine of client.ids) {
      assert.equal(await client.view(engine).apply(() => id), engine);
    }
  },
  { ignore: noPidNamespace !== undefined },
);

redisTest(
  "a second engine.ts started with a live host's engine ids (no --first) is refused, naming that host",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using _a = startEngine(
      hostArgs(url, cluster, keyFile, ["--n", "4", "--host-id", "first"]),
    );
    await using connected = await connectClient(url, files, 4);
    const { client } = connected;
    await using b = startEngine(hostArgs(url, cluster, keyFile, ["--n", "4"]));
    const { code, stderr } = await within(b.ended, 20_000, "the second host to be refused");
    assert.equal(code, 1, stderr);
    assert.match(stderr, /engines 0, 1, 2, 3 run on host "first" \(pid \d+\), which is alive/);
    assert.match(stderr, /--first/);
    assert.deepEqual(await client.view().apply(() => id), [0, 1, 2, 3]);
    assert.deepEqual(client.ids.map((id) => client.hostOf(id)), [
      "first",
      "first",
      "first",
      "first",
    ]);
  },
);

redisTest(
  "a second engine.ts started with a live host's --host-id is refused, naming the id",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using _a = startEngine(
      hostArgs(url, cluster, keyFile, ["--n", "4", "--host-id", "same"]),
    );
    await using connected = await connectClient(url, files, 4);
    const { client } = connected;
    await using b = startEngine(
      hostArgs(url, cluster, keyFile, ["--n", "4", "--first", "4", "--host-id", "same"]),
    );
    const { code, stderr } = await within(b.ended, 20_000, "the second host to be refused");
    assert.equal(code, 1, stderr);
    assert.match(stderr, /a live host \(pid \d+\) has the host id "same" \(engines 0, 1, 2, 3\)/);
    assert.match(stderr, /--host-id/);
    assert.deepEqual(await client.view().apply(() => id), [0, 1, 2, 3]);
  },
);

redisTest(
  "an engine.ts host started again with the ids of one that was killed starts",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    {
      await using _a = startEngine(hostArgs(url, cluster, keyFile, ["--n", "2"]));
      const client = await Cluster.connect({ transport: url, cluster, keyFile, n: 2 });
      await client.close();
    } // SIGKILLed: it never unregistered
    await using _b = startEngine(
      hostArgs(url, cluster, keyFile, ["--n", "2", "--host-id", "again"]),
    );
    // The registry still holds the killed host's registrations: wait for the new host's.
    let client = await Cluster.connect({ transport: url, cluster, keyFile, n: 2 });
    await waitUntil("the new host to register", async () => {
      if (client.ids.every((id) => client.hostOf(id) === "again")) return true;
      await client.close();
      client = await Cluster.connect({ transport: url, cluster, keyFile, n: 2 });
      return false;
    }, 20_000);
    try {
      assert.deepEqual(await client.view().apply(() => id), [0, 1]);
    } finally {
      await client.close();
    }
  },
);

redisTest(
  "of two engine.ts hosts started at once with the same engine ids, one is refused and the other serves them",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using a = startEngine(hostArgs(url, cluster, keyFile, ["--n", "4", "--host-id", "a"]));
    await using b = startEngine(hostArgs(url, cluster, keyFile, ["--n", "4", "--host-id", "b"]));
    const [loser, winner] = await within(
      Promise.race([a.ended.then(() => ["a", "b"]), b.ended.then(() => ["b", "a"])]),
      20_000,
      "one of the two hosts to be refused",
    );
    const { code, stderr } = await (loser === "a" ? a : b).ended;
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`engines 0, 1, 2, 3 .*host "${winner}"`));
    assert.match(stderr, /--first/);
    await using connected = await connectClient(url, files, 4);
    const { client } = connected;
    assert.deepEqual(client.ids.map((id) => client.hostOf(id)), [winner, winner, winner, winner]);
    assert.deepEqual(await client.view().apply(() => id), [0, 1, 2, 3]);
  },
);

redisTest(
  "of two engine.ts hosts started at once with the same --host-id, one is refused and the registry keeps only the other's engines",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    const same = ["--n", "4", "--host-id", "same"];
    await using a = startEngine(hostArgs(url, cluster, keyFile, same));
    await using b = startEngine(hostArgs(url, cluster, keyFile, [...same, "--first", "4"]));
    const loser = await within(
      Promise.race([a.ended.then(() => a), b.ended.then(() => b)]),
      20_000,
      "one of the two hosts to be refused",
    );
    const { code, stderr } = await loser.ended;
    assert.equal(code, 1, stderr);
    assert.match(stderr, /host id "same"/);
    const ids = loser === a ? [4, 5, 6, 7] : [0, 1, 2, 3];
    const client = await Cluster.connect({ transport: url, cluster, keyFile, timeout: 5_000 });
    try {
      assert.deepEqual(client.ids, ids);
      assert.deepEqual(await client.view().apply(() => id), ids);
    } finally {
      await client.close();
    }
  },
);

declare const id: number;
