/**
 * `examples/md5.ts` imported by URL, as the README's first command runs it: the repository is
 * served over HTTP on 127.0.0.1 and the example runs as `deno run -A http://…/examples/md5.ts`,
 * on the embedded transport and on a private `redis-server` (or `REDIS_URL`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import {
  hasRedisServer,
  redisAvailable,
  type RedisServer,
  startRedisServer,
  testRedisUrl,
} from "./_redis_server.ts";

/** The repository's directory, with a trailing separator. */
const ROOT = join(fileURLToPath(new URL("../", import.meta.url)), sep);
/** How long the example may run, start to end. */
const RUN_TIMEOUT_MS = 180_000;

const CONTENT_TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".json": "application/json",
  ".md": "text/markdown",
  ".txt": "text/plain",
};

/** Serves the file of the repository that `request` names; 404 outside it or when absent. */
async function serveRepository(request: Request): Promise<Response> {
  const path = decodeURIComponent(new URL(request.url).pathname);
  const file = normalize(join(ROOT, path));
  if (!file.startsWith(ROOT)) {
    return new Response("not found", { status: 404 });
  }
  try {
    const body = await Deno.readFile(file);
    const type = CONTENT_TYPES[extname(file)] ?? "application/octet-stream";
    return new Response(body, { headers: { "content-type": type } });
  } catch {
    return new Response("not found", { status: 404 });
  }
}

/** Serves the repository on a free loopback port until disposed. */
function startFileServer(): AsyncDisposable & { readonly origin: string } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    serveRepository,
  );
  return {
    origin: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await server.finished;
    },
  };
}

/**
 * Runs `deno run -A <url> ...args` from an empty directory, so that no project config or lock
 * file is found or written; kills it after `RUN_TIMEOUT_MS`.
 */
async function runByUrl(url: string, args: string[]): Promise<{ code: number; output: string }> {
  const cwd = await Deno.makeTempDir({ prefix: "md5-url-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-config", "--no-lock", url, ...args],
      cwd,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
    }).output();
    const decoder = new TextDecoder();
    return {
      code,
      output: `${decoder.decode(stdout)}\n--- stderr ---\n${decoder.decode(stderr)}`,
    };
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("serveRepository() serves .ts as application/typescript and 404s the rest", async () => {
  const ok = await serveRepository(new Request("http://127.0.0.1/examples/md5.ts"));
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("content-type"), "application/typescript");
  assert.match(await ok.text(), /spmdTask/);
  const json = await serveRepository(new Request("http://127.0.0.1/deno.json"));
  assert.equal(json.headers.get("content-type"), "application/json");
  await json.body?.cancel();
  for (const path of ["/no/such/file.ts", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/"]) {
    const missing = await serveRepository(new Request(`http://127.0.0.1${path}`));
    assert.equal(missing.status, 404, path);
    await missing.body?.cancel();
  }
});

Deno.test("examples/md5.ts run by URL equals the local map at 8 engines (memory)", async () => {
  await using server = startFileServer();
  const { code, output } = await runByUrl(`${server.origin}/examples/md5.ts`, ["--engines", "8"]);
  assert.equal(code, 0, output);
  assert.match(output, /parallel result equals local result \(40 md5s\)/, output);
  assert.match(output, /engines: 8 \(memory:\)/, output);
});

const noRedis = redisAvailable() ? undefined : "no redis-server on PATH and no REDIS_URL";
if (noRedis) {
  // deno-lint-ignore no-console
  console.warn(`md5_url_test: Redis run ignored: ${noRedis}`);
}

Deno.test({
  name: "examples/md5.ts run by URL equals the local map at 8 engines (redis)",
  ignore: noRedis !== undefined,
  async fn() {
    let redis: RedisServer | undefined;
    if (hasRedisServer()) redis = await startRedisServer({ args: ["--loglevel", "warning"] });
    try {
      const url = redis?.url ?? testRedisUrl()!;
      await using server = startFileServer();
      const { code, output } = await runByUrl(`${server.origin}/examples/md5.ts`, [
        "--engines",
        "8",
        "--redis",
        url,
      ]);
      assert.equal(code, 0, output);
      assert.match(output, /parallel result equals local result \(40 md5s\)/, output);
      assert.match(output, /engines: 8 \(redis:/, output);
      assert.ok(!output.includes("memory:"), output);
    } finally {
      await redis?.[Symbol.asyncDispose]();
    }
  },
});
