/**
 * `examples/map.ts` runs as a user runs it (`deno run -A examples/map.ts …`), on a small size, on
 * the embedded transport and on a private `redis-server`: it checks its load-balanced map against
 * a local map itself and exits non-zero when they differ.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { BACKENDS, forEachBackend } from "./_backends.ts";

const EXAMPLE = fileURLToPath(new URL("../examples/map.ts", import.meta.url));

async function runExample(args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      EXAMPLE,
      "--engines",
      "3",
      "--tasks",
      "40",
      "--max-iterations",
      "50000",
      ...args,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${out}\n${new TextDecoder().decode(stderr)}`);
  return out;
}

forEachBackend(BACKENDS, (test, { kind }) => {
  test(
    "examples/map.ts: the load-balanced map equals the local map and reports its makespan",
    async (backend) => {
      const out = await runExample(kind === "redis" ? ["--redis", backend.url] : []);
      assert.match(out, /parallel result equals local result \(40 counts\)/);
      assert.match(out, /π ≈ 3\.\d/);
      assert.match(out, /tasks per engine: \d+,\d+,\d+\n/);
      assert.match(out, /makespan: [\d.]+ s {2}ideal \(total work ÷ engines\): [\d.]+ s/);
    },
    { timeoutMs: 180_000 },
  );
});
