/**
 * Sandboxed engines (`permissions`): a hostile task on a `"process"` engine of a
 * password-protected Redis tries to read what lies outside its grant — a cluster key written in
 * the library's root, the library's `.git`, a file outside the granted directory — and gets
 * `NotCapable` for each; normal sandboxed work (apply, push/pull, execute, stdout) still runs.
 * Each Redis test starts its own `redis-server`.
 *
 * Run as a script (`deno run -A --unstable-worker-options tests/sandbox_test.ts worker-reads
 * <allowed> <outside> <keyFile>`), this file is the child process of the `"worker"` launcher's
 * test: Worker permissions need that flag.
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { toHex, writeKeyFile } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { within } from "./_async.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const greeting: string;

const PASSWORD = "sandbox-Pa55word";
const T = { timeout: 20_000 } as const;
const noRedis = hasRedisServer() ? undefined : "no redis-server on PATH";
const LIBRARY_ROOT = new URL("../", import.meta.url).pathname;

/** What a hostile task got from each read: the text, or the error's name. */
async function hostileReads(paths: string[]): Promise<Record<string, string>> {
  const got: Record<string, string> = {};
  for (const path of paths) {
    try {
      got[path] = `read: ${await Deno.readTextFile(path)}`;
    } catch (error) {
      got[path] = (error as Error).name;
    }
  }
  return got;
}

/** The `"worker"` launcher's hostile reads, on the embedded transport: prints what they gave. */
async function workerReadsScenario(paths: string[], keyFile: string): Promise<void> {
  await using cluster = new Cluster({
    n: 1,
    transport: "memory:",
    keyFile,
    permissions: { read: [paths[0].slice(0, paths[0].lastIndexOf("/"))] },
    progress: false,
  });
  const client = await cluster.startAndConnect();
  const [got] = await client.view().apply(hostileReads, paths).get(T);
  // deno-lint-ignore no-console
  console.log(JSON.stringify(got));
}

/** The reads a hostile task tries, the first inside its grant, and what each must give. */
function readsAndExpected(allowed: string, outside: string, keyFile: string) {
  const paths = [
    `${allowed}/inside.txt`,
    keyFile,
    `${LIBRARY_ROOT}.git`,
    `${LIBRARY_ROOT}deno.json`,
    outside,
  ];
  const expected = Object.fromEntries(
    paths.map((path, i) => [path, i === 0 ? "read: inside" : "NotCapable"]),
  );
  return { paths, expected };
}

if (import.meta.main) {
  const [mode, allowed, outside, keyFile] = Deno.args;
  if (mode !== "worker-reads") throw new TypeError(`Unknown mode "${mode}"`);
  await workerReadsScenario(readsAndExpected(allowed, outside, keyFile).paths, keyFile);
}

Deno.test({
  name: "Sandboxed worker engine: a task cannot read the library root, its .git, or outside",
  ignore: import.meta.main,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const allowed = await Deno.makeTempDir({ prefix: "deno-parallel-sandbox-" });
    const outside = await Deno.makeTempFile({ prefix: "deno-parallel-outside-" });
    const keyFile = `${LIBRARY_ROOT}sandbox-test-${crypto.randomUUID().slice(0, 8)}.key`;
    const key = generateKey();
    try {
      await Deno.writeTextFile(`${allowed}/inside.txt`, "inside");
      await Deno.writeTextFile(outside, "outside");
      await writeKeyFile(keyFile, key);
      const self = new URL(import.meta.url).pathname;
      const child = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--unstable-worker-options",
          self,
          "worker-reads",
          allowed,
          outside,
          keyFile,
        ],
        stdin: "null",
        env: { NO_COLOR: "1" },
      }).output();
      const output = new TextDecoder().decode(child.stdout) +
        new TextDecoder().decode(child.stderr);
      assert.equal(child.code, 0, output);
      const got = JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
      assert.deepEqual(got, readsAndExpected(allowed, outside, keyFile).expected);
      assert.ok(!output.includes(toHex(key)));
    } finally {
      await Deno.remove(allowed, { recursive: true });
      await Deno.remove(outside);
      await Deno.remove(keyFile).catch(() => {});
    }
  },
});

Deno.test({
  name: "Sandboxed process engine: a task cannot read the library root, its .git, or outside",
  ignore: import.meta.main || noRedis !== undefined,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    await using server = await startRedisServer({
      args: ["--loglevel", "warning", "--requirepass", PASSWORD],
    });
    const url = `redis://:${PASSWORD}@127.0.0.1:${server.port}`;
    const allowed = await Deno.makeTempDir({ prefix: "deno-parallel-sandbox-" });
    const outside = await Deno.makeTempFile({ prefix: "deno-parallel-outside-" });
    const keyFile = `${LIBRARY_ROOT}sandbox-test-${crypto.randomUUID().slice(0, 8)}.key`;
    const key = generateKey();
    try {
      await Deno.writeTextFile(`${allowed}/inside.txt`, "inside");
      await Deno.writeTextFile(outside, "outside");
      await writeKeyFile(keyFile, key);
      await using cluster = new Cluster({
        n: 1,
        transport: url,
        launcher: "process",
        keyFile,
        permissions: { read: [allowed] },
        engineTimeout: 20_000,
        progress: false,
      });
      const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
      const { paths, expected } = readsAndExpected(allowed, outside, keyFile);
      const [got] = await client.view().apply(hostileReads, paths).get(T);
      assert.deepEqual(got, expected);
      assert.ok(!JSON.stringify(got).includes(toHex(key)));
    } finally {
      await Deno.remove(allowed, { recursive: true });
      await Deno.remove(outside);
      await Deno.remove(keyFile).catch(() => {});
    }
  },
});

Deno.test({
  name: "Sandboxed process engine: apply, push/pull, execute and stdout still work",
  ignore: import.meta.main || noRedis !== undefined,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    await using server = await startRedisServer({
      args: ["--loglevel", "warning", "--requirepass", PASSWORD],
    });
    const allowed = await Deno.makeTempDir({ prefix: "deno-parallel-sandbox-" });
    try {
      await using cluster = new Cluster({
        n: 2,
        hosts: 1,
        transport: `redis://:${PASSWORD}@127.0.0.1:${server.port}`,
        launcher: "process",
        permissions: { read: [allowed] },
        engineTimeout: 20_000,
        progress: false,
      });
      const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
      const view = client.view();
      assert.deepEqual(await view.apply((a: number, b: number) => a + b, 2, 3).get(T), [5, 5]);
      await view.push({ greeting: "hi" }).get(T);
      assert.deepEqual(await view.pull("greeting").get(T), ["hi", "hi"]);
      await view.execute("const doubled = id * 2;").get(T);
      assert.deepEqual(await view.pull("doubled").get(T), [0, 2]);
      // deno-lint-ignore no-console
      const printing = view.apply(() => console.log(`${greeting} from ${id}`));
      await printing.get(T);
      assert.deepEqual(printing.stdout, ["hi from 0\n", "hi from 1\n"]);
    } finally {
      await Deno.remove(allowed, { recursive: true });
    }
  },
});
