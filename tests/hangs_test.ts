/**
 * No call without an answer, continued (issue 14): a failed connect lets the process exit, a
 * server at its memory limit, bad arguments, calls of one client ordered per engine across its
 * views, calls after stop, and a task that cannot end its host. Each test checks the typed error
 * and that the next call works.
 *
 * Functions shipped to the engines are written here but run there: the names they use freely are
 * declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster, RemoteError } from "../mod.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";
import { fakeRedisPort } from "./_fake_redis_port.ts";

declare const x: number[];

const noServer = hasRedisServer() ? false : "no redis-server on PATH";
/** How long a script whose work is done may take to exit before it counts as hung. */
const EXIT_BOUND_MS = 30_000;

/** Runs tests/fixtures/failed_connect.ts; kills it (and fails) if it has not exited in time. */
async function runFailedConnect(
  mode: "transport" | "cluster",
  badUrl: string,
  goodUrl: string,
): Promise<{ name: string; message: string; typed: boolean; next: unknown }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fixtures/failed_connect.ts", import.meta.url).href,
      mode,
      badUrl,
      goodUrl,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, EXIT_BOUND_MS);
  const { stdout, stderr, code } = await child.output();
  clearTimeout(timer);
  const out = new TextDecoder().decode(stdout).trim();
  const err = new TextDecoder().decode(stderr).trim();
  assert.ok(out !== "", `the script printed nothing (exit ${code}); stderr:\n${err}`);
  const line = JSON.parse(out.split("\n").at(-1)!);
  assert.equal(hung, false, `the script was still running ${EXIT_BOUND_MS} ms on: ${out}`);
  assert.equal(code, 0, `exit ${code}; stderr:\n${err}`);
  return line;
}

for (const kind of ["tls", "garbage"] as const) {
  for (const mode of ["transport", "cluster"] as const) {
    Deno.test({
      name: `a failed connect (${mode}) to a ${kind} port throws TransportClosedError, ` +
        "and the script then exits on its own",
      ignore: noServer !== false,
      async fn() {
        await using server = await startRedisServer();
        await using fake = fakeRedisPort(kind);
        const result = await runFailedConnect(mode, fake.url, server.url);
        assert.equal(result.typed, true, `${result.name}: ${result.message}`);
        assert.match(result.message, new RegExp(`Cannot connect to ${fake.url}`));
        assert.deepEqual(result.next, mode === "cluster" ? [42] : true);
      },
    });
  }
}

const T = { timeout: 15_000 };

forEachBackend(BACKENDS, (test) => {
  test("scatter refuses what is not an array or a typed array with TypeError", async (backend) => {
    await using cluster = new Cluster({ n: 2, transport: backend.url, progress: false });
    const client = await cluster.startAndConnect();
    for (const view of [client.view(), client.broadcastView()]) {
      for (const bad of [42, { length: 3 }, null, "abc", new DataView(new ArrayBuffer(4))]) {
        assert.throws(
          () => view.scatter("x", bad as never),
          (e: unknown) =>
            e instanceof TypeError && !(e instanceof RemoteError) &&
            /Cannot scatter "x": the sequence must be an array or a typed array/.test(e.message),
        );
      }
      await view.scatter("x", [1, 2, 3], T).get(T);
      assert.deepEqual(await view.apply(() => x).get(T), [[1, 2], [3]]);
    }
  });

  test("a task making a Worker with deno.permissions fails with RemoteError, and its host lives on", async (backend) => {
    await using cluster = new Cluster({ n: 2, transport: backend.url, progress: false });
    const client = await cluster.startAndConnect();
    const error = await client.view(0).apply(() => {
      const options = { type: "module", deno: { permissions: "inherit" } } as WorkerOptions;
      new Worker("data:text/javascript,", options).terminate();
      return "made";
    }).get(T).catch((e) => e);
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.engineId, 0);
    assert.equal(error.remoteName, "NotCapable");
    assert.match(error.remoteMessage, /deno\.permissions/);
    // A Worker without it still works, and both engines of the host answer.
    const made = await client.view(0).apply(() => {
      new Worker("data:text/javascript,", { type: "module" }).terminate();
      return "made";
    }).get(T);
    assert.equal(made, "made");
    assert.deepEqual(await client.view().apply(() => 6 * 7).get(T), [42, 42]);
  });
});
