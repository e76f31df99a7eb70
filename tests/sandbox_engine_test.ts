/**
 * Runs the engine suite (`tests/engine_suite.ts`) on sandboxed `"process"` engines (`permissions`
 * given), whose tasks run in a task realm: everything a task does there behaves as on an
 * unsandboxed engine. (The `"worker"` launcher's sandbox needs `--unstable-worker-options` in the
 * test process: `tests/sandbox_realm_test.ts` covers it in a child process.)
 */
import { engineSuite } from "./engine_suite.ts";
import { fileRedis } from "./_redis_server.ts";

const { server, url: redisUrl, ignored: noRedis } = await fileRedis("sandbox_engine_test");
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
// The suite's task module imports the library: a task realm reads only what `read` grants.
const ACTORS = new URL("../actors/", import.meta.url).pathname;

engineSuite(
  "redis/process sandboxed",
  () => ({ transport: redisUrl!, launcher: "process", permissions: { read: [FIXTURES, ACTORS] } }),
  noRedis ? { ignore: noRedis } : {},
);

Deno.test({
  name: "redis-server of sandbox_engine_test stops",
  ignore: server === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await server![Symbol.asyncDispose]();
  },
});
