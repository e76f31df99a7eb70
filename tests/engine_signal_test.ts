/**
 * `engine.ts` and the signals that stop it: a SIGTERM that comes while the host is still
 * starting (its engines registered, its host-id check not yet done) stops it as a later one
 * would, with exit status 0 and its engines unregistered, instead of killing the process.
 */
import assert from "node:assert/strict";
import { toHex } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { within } from "./_async.ts";
import {
  connectAdmin,
  hasRedisServer,
  startRedisServer,
  uniqueNamespace,
} from "./_redis_server.ts";

Deno.test({
  name: "engine.ts: a SIGTERM as soon as its engines registered stops it cleanly",
  ignore: !hasRedisServer(),
  async fn() {
    await using server = await startRedisServer();
    await using admin = await connectAdmin(server.url);
    const dir = await Deno.makeTempDir({ prefix: "deno-parallel-signal-" });
    try {
      const keyFile = `${dir}/cluster.key`;
      await Deno.writeTextFile(keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
      for (let round = 0; round < 3; round++) {
        const cluster = uniqueNamespace();
        const registry = `${cluster}:inbox:_registry`;
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("../engine.ts", import.meta.url).href,
            ...["--redis", server.url, "--cluster", cluster, "--key-file", keyFile, "--n", "2"],
          ],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const output = Promise.all([
          new Response(child.stdout).text(),
          new Response(child.stderr).text(),
        ]).then(([out, err]) => out + err);
        try {
          const read = await within(
            admin.send(["XREAD", "BLOCK", "20000", "STREAMS", registry, "0"]),
            25_000,
            "the engines' registration",
          );
          assert.ok(read, "engine.ts registers its engines");
          child.kill("SIGTERM");
          const status = await within(child.status, 20_000, "engine.ts to exit");
          assert.equal(status.code, 0, await output);
          const entries = await admin.send(["XRANGE", registry, "-", "+"]) as unknown[];
          // Two registrations, then the two unregistrations of a host that stopped.
          assert.equal(entries.length, 4, await output);
        } finally {
          try {
            child.kill("SIGKILL");
          } catch { /* exited */ }
          await child.status;
          await output;
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
