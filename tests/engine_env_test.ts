/**
 * What a process-launched engine inherits (issue 13, point 6): the Redis URL and its password
 * reach it on its stdin only, never in its environment or its command line, which any process of
 * the same user can read from `/proc`. Each test starts its own password-protected `redis-server`.
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";

const PASSWORD = "env-Pa55word-9f3";
const ON_LINUX = Deno.build.os === "linux";

async function procText(pid: number, file: "environ" | "cmdline"): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/${file}`)).replaceAll("\0", "\n");
}

for (const sandboxed of [false, true]) {
  Deno.test({
    name: `${
      sandboxed ? "a sandboxed" : "an unsandboxed"
    } process engine's environment and argv hold no Redis URL or password`,
    ignore: !hasRedisServer() || !ON_LINUX,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using server = await startRedisServer({ args: ["--requirepass", PASSWORD] });
      const url = `redis://:${PASSWORD}@127.0.0.1:${server.port}`;
      Deno.env.set("REDIS_URL", url);
      Deno.env.set("DP_COPY_OF_URL", `see ${url}`);
      Deno.env.set("DP_PLAIN", "plain-value");
      try {
        await using cluster = new Cluster({
          n: 2,
          hosts: 1,
          launcher: "process",
          progress: false,
          ...(sandboxed ? { permissions: { env: ["REDIS_URL", "DP_PLAIN"] } } : {}),
        });
        const client = await cluster.startAndConnect();
        const pid = await client.view(0).apply(() => Deno.pid);
        const environ = await procText(pid, "environ");
        const cmdline = await procText(pid, "cmdline");
        for (const text of [environ, cmdline]) assert.ok(!text.includes(PASSWORD), text);
        assert.ok(!environ.includes("REDIS_URL="));
        assert.ok(environ.includes("DP_PLAIN=plain-value"), "granted variables still pass");
        // The engines reach Redis all the same, with the URL from their stdin.
        assert.deepEqual(await client.broadcastView().apply((x: number) => x + 1, 1), [2, 2]);
      } finally {
        Deno.env.delete("REDIS_URL");
        Deno.env.delete("DP_COPY_OF_URL");
        Deno.env.delete("DP_PLAIN");
      }
    },
  });
}

Deno.test({
  name: "a sandboxed process engine gets none of the parent's variables it was not granted",
  ignore: !hasRedisServer() || !ON_LINUX,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await startRedisServer();
    Deno.env.set("DP_NOT_GRANTED", "private-value");
    try {
      await using cluster = new Cluster({
        n: 1,
        launcher: "process",
        transport: server.url,
        progress: false,
        permissions: { read: [] },
      });
      const client = await cluster.startAndConnect();
      const pid = await client.view(0).apply(() => Deno.pid);
      assert.ok(!(await procText(pid, "environ")).includes("private-value"));
    } finally {
      Deno.env.delete("DP_NOT_GRANTED");
    }
  },
});
