/**
 * Runs the engine suite (`tests/engine_suite.ts`) on sandboxed `"process"` engines (`permissions`
 * given), whose tasks run in a task realm: everything a task does there behaves as on an
 * unsandboxed engine. (The `"worker"` launcher's sandbox needs `--unstable-worker-options` in the
 * test process: `tests/sandbox_realm_test.ts` covers it in a child process.)
 */
import { engineSuite, startCluster } from "./engine_suite.ts";
import { forEachBackend } from "./_backends.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
// The suite's task module imports the library: a task realm reads only what `read` grants.
const ACTORS = new URL("../actors/", import.meta.url).pathname;
const SANDBOXED = { name: "redis/process sandboxed", kind: "redis", launcher: "process" } as const;

forEachBackend([SANDBOXED], (test) => {
  engineSuite(test, {
    start: (n, options) =>
      startCluster(n, { ...options, permissions: { read: [FIXTURES, ACTORS] } }),
  });
});
