/**
 * Runs the engine suite (`tests/engine_suite.ts`) on the embedded transport, on Redis with the
 * `"worker"` and `"process"` launchers, and on engines started by hand with `engine.ts` and
 * joined with `Cluster.connect()`. Redis is a `redis-server` of each test's own (or `REDIS_URL`
 * when no server binary is installed).
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { toHex } from "../transport/key.ts";
import { TimeoutError } from "../errors.ts";
import { generateKey } from "../transport/envelope.ts";
import { createTransport } from "../transport/mod.ts";
import { type EngineFixture, engineSuite } from "./engine_suite.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { forEachBackend, LAUNCHERS, openBackend, unavailable } from "./_backends.ts";

const BY_HAND = { name: "redis/engine.ts", kind: "redis" } as const;

forEachBackend([...LAUNCHERS, BY_HAND], (test, variant) => {
  engineSuite(test, variant === BY_HAND ? { core: true, start: startByHand } : {});
});

/**
 * Starts `n` engines as an operator would on another machine (`deno run -A engine.ts --redis URL
 * --cluster NAME --key-file FILE --n N`) and attaches a client with `Cluster.connect()`.
 */
async function startByHand(
  n: number,
  options: { transport?: string },
): Promise<EngineFixture & { joined: { transport: string; cluster: string; keyFile: string } }> {
  const url = options.transport!;
  const cluster = uniqueNamespace();
  const dir = await Deno.makeTempDir({ prefix: "deno-parallel-key-" });
  const keyFile = `${dir}/cluster.key`;
  const keyHex = toHex(generateKey());
  await Deno.writeTextFile(keyFile, keyHex + "\n", { mode: 0o600 });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../engine.ts", import.meta.url).href,
      "--redis",
      url,
      "--cluster",
      cluster,
      "--key-file",
      keyFile,
      "--n",
      String(n),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()])
    .then(([out, err]) => out + err);
  const stopEngines = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
    ]);
    clearTimeout(timer);
    if (!exited) child.kill("SIGKILL");
    const status = await child.status;
    const printed = await output;
    const transport = await createTransport(url);
    try {
      await transport.deletePrefix(`${cluster}:`);
    } finally {
      await transport.close();
    }
    await Deno.remove(dir, { recursive: true });
    return { status, printed, exited };
  };
  let client;
  try {
    client = await Cluster.connect({ transport: url, cluster, keyFile, n, timeout: 20_000 });
  } catch (error) {
    const { printed } = await stopEngines();
    throw new Error(`Cannot start engines with engine.ts: ${printed}`, { cause: error });
  }
  return {
    client,
    joined: { transport: url, cluster, keyFile },
    async [Symbol.asyncDispose]() {
      await client.close();
      const { status, printed, exited } = await stopEngines();
      assert.ok(exited, "engine.ts exits on SIGTERM");
      assert.equal(status.code, 0, printed);
      assert.ok(!printed.includes(keyHex), "engine.ts never prints the key");
    },
  };
}

Deno.test({
  name: "Cluster.connect() names the engines that did not register, and sees none with a bad key",
  ignore: unavailable("redis") !== undefined,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    await using redis = await openBackend("redis");
    await using fx = await startByHand(2, { transport: redis.url });
    const error = await Cluster.connect({ ...fx.joined, n: 3, timeout: 500 }).catch((e) => e);
    assert.ok(error instanceof TimeoutError, String(error));
    assert.deepEqual(error.engineIds, [2]);
    assert.match(error.message, /engines 2 did not register within 500 ms/);
    // Without `n`, connect() takes the engines registered once the registry is quiet.
    const all = await Cluster.connect({ ...fx.joined, timeout: 5000 });
    try {
      assert.deepEqual(all.ids, [0, 1]);
      assert.deepEqual(await all.view().apply(() => 1).get({ timeout: 5000 }), [1, 1]);
    } finally {
      await all.close();
    }
    // Registrations signed with another key are not believed.
    const stranger = await Cluster.connect({
      ...fx.joined,
      keyFile: undefined,
      key: generateKey(),
      timeout: 500,
    })
      .catch((e) => e);
    assert.ok(stranger instanceof TimeoutError, String(stranger));
  },
});

Deno.test("Cluster() with the process launcher on the memory transport says to use Redis", () => {
  assert.throws(
    () => new Cluster({ launcher: "process", transport: "memory:" }),
    (e: unknown) => e instanceof TypeError && /Redis/.test(e.message),
  );
  assert.throws(() => new Cluster({ n: 0 }), RangeError);
  assert.throws(
    () => new Cluster({ launcher: "thread" as "worker" }),
    (e: unknown) => e instanceof TypeError && /"thread"/.test(e.message),
  );
});

Deno.test("Cluster({ streamOutput: true }) prints each engine's output prefixed with [engine N]", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fixtures/stream_output.ts", import.meta.url).href],
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(60_000),
  }).output();
  const out = new TextDecoder().decode(stdout).split("\n");
  const err = new TextDecoder().decode(stderr).split("\n");
  assert.equal(code, 0, err.join("\n"));
  for (const id of [0, 1, 2]) {
    assert.ok(out.includes(`[engine ${id}] line one`), out.join("\n"));
    assert.ok(out.includes(`[engine ${id}] line two`));
    assert.ok(out.includes(`[engine ${id}] cell on ${id}`));
    assert.ok(err.includes(`[engine ${id}] a warning`), err.join("\n"));
  }
});
