/**
 * Starts engines that join a running cluster (IPython Parallel's `ipengine`):
 *
 * ```sh
 * deno run -A engine.ts --redis redis://host:6379 --cluster NAME --key-file FILE [--n 4]
 * ```
 *
 * Options: `--ids 0,1,2` (or `--n N` with `--first K`) chooses the engine ids; `--size N` fixes the
 * `size` their namespaces hold (default: the number of engines the first client that connects
 * finds, which it tells every host; a client that finds another size than a fixed one fails to
 * connect); `--host-id ID` names the host (default: the machine's name, the pid and 6 random hex
 * digits, unique even in containers where every process is pid 1); the host refuses to start when
 * a live host of the cluster has its host id or one of its engine ids (`--skip-id-check` skips
 * that, as the `Cluster`'s `"process"` launcher does); `--key-stdin` reads the key
 * from standard input instead of a file; `--redis -` reads the URL from standard input (after the
 * key, on the next line, with `--key-stdin`), which keeps a password out of the process list;
 * `--task-permissions JSON` runs the tasks in a Worker of their own with exactly those
 * permissions (a sandboxed engine: see "Sandboxed engines" in `docs/protocol.md`; needs
 * `deno run --unstable-worker-options`);
 * `--exit-with-stdin` makes the engines stop, and delete the cluster's keys, when standard input
 * ends (the `"process"` launcher passes it and keeps the pipe open, so its engines end with the
 * process that started them, however it ends; SIGINT, a Ctrl-C or Jupyter's signal to a
 * kernel's process group, is then left to that process); `--result-retention MS` is how long each task's result is kept for `client.getResult` (default
 * 3600000, one hour; 0 keeps none).
 * The key and the password are never printed. `--heartbeat-ms N` sets how often the host sends a
 * heartbeat (default 250), from a thread of its own: clients take its engines for dead after
 * `heartbeatTimeoutMs` (2.5 s by default) without a beat, which happens when the process is gone
 * or stopped or its link is cut, never because a task computes for long.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { EngineHost } from "./actors/host/engine_host.ts";
import { parseHexKey, readKeyFile } from "./transport/key.ts";
import { createTransport } from "./transport/mod.ts";
import { guardHost } from "./actors/host/_host_guard.ts";

let exit: (code?: number) => never = Deno.exit;

const USAGE = `Starts engines that join a running cluster (IPython Parallel's ipengine).

Usage: deno run -A engine.ts --redis URL --cluster NAME (--key-file FILE | --key-stdin) [options]

  --redis URL             the cluster's Redis (or REDIS_URL); "-" reads it from stdin
  --cluster NAME          the cluster's name (its namespace)
  --key-file FILE         the cluster key, in hex (see writeKeyFile)
  --key-stdin             read the key from stdin instead
  --n N, --first K        run engines K..K+N-1 (default: one engine, id 0)
  --ids 0,1,2             or run exactly these engine ids
  --size N                fix the size engines see (default: the cluster's, told by the
                          client that connects); a client finding another size fails
  --host-id ID            this host's id, unique in the cluster (default: hostname-pid-random)
  --result-retention MS   how long results are kept for client.getResult (default 3600000)
  --replay-window MS      an entry appended this long after it was signed is a replay (default 60000)
  --max-message-bytes N   entries larger than this are dead-lettered unread (default 536870912)
  --heartbeat-ms N        how often the host sends a heartbeat (default 250), from a
                          thread of its own: a busy engine keeps beating
  --task-permissions JSON run tasks in a Worker of their own with exactly these Deno
                          permissions (Worker deno.permissions shape, omitted kinds
                          denied), away from the key and the Redis connection; needs
                          deno run --unstable-worker-options
  --exit-with-stdin       stop (and delete the cluster's keys) when stdin ends
  --skip-id-check         start even if a live host has this host id or one of these engine
                          ids (by default such a host is named and this one exits)
  -h, --help              print this and exit`;

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      redis: { type: "string" },
      cluster: { type: "string" },
      "key-file": { type: "string" },
      "key-stdin": { type: "boolean" },
      ids: { type: "string" },
      n: { type: "string" },
      first: { type: "string" },
      size: { type: "string" },
      "host-id": { type: "string" },
      "result-retention": { type: "string" },
      "replay-window": { type: "string" },
      "max-message-bytes": { type: "string" },
      "heartbeat-ms": { type: "string" },
      "task-permissions": { type: "string" },
      "exit-with-stdin": { type: "boolean" },
      "skip-id-check": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    // deno-lint-ignore no-console
    console.log(USAGE);
    Deno.exit(0);
  }
  const wanted = (values["key-stdin"] ? 1 : 0) + (values.redis === "-" ? 1 : 0);
  const input = stdinLines();
  const stdin = wanted > 0 || values["exit-with-stdin"] ? await input.lines(wanted) : [];
  const url = values.redis === "-"
    ? stdin[values["key-stdin"] ? 1 : 0]
    : values.redis ?? Deno.env.get("REDIS_URL");
  if (!url || !values.cluster) fail("pass --redis URL (or set REDIS_URL) and --cluster NAME");
  const key = values["key-stdin"]
    ? parseHexKey(stdin[0], "the key on stdin")
    : values["key-file"]
    ? await readKeyFile(values["key-file"]).catch((e) => fail(e.message))
    : fail("pass --key-file FILE or --key-stdin");
  const ids = values.ids
    ? values.ids.split(",").map(Number)
    : Array.from({ length: Number(values.n ?? 1) }, (_, i) => Number(values.first ?? 0) + i);
  if (ids.some((id) => !Number.isInteger(id) || id < 0)) fail(`bad engine ids: ${ids}`);
  const size = Number(values.size ?? ids.length);
  if (!Number.isInteger(size) || size < 1) {
    fail(`bad --size ${JSON.stringify(values.size)}: expected a whole number ≥ 1`);
  }
  const retention = values["result-retention"];
  const resultRetentionMs = retention === undefined ? undefined : Number(retention);
  if (
    resultRetentionMs !== undefined &&
    !(Number.isInteger(resultRetentionMs) && resultRetentionMs >= 0)
  ) {
    fail(`bad --result-retention ${JSON.stringify(retention)}: expected whole ms ≥ 0`);
  }
  const window = values["replay-window"];
  const replayWindowMs = window === undefined ? undefined : Number(window);
  if (replayWindowMs !== undefined && !(replayWindowMs > 0 && Number.isFinite(replayWindowMs))) {
    fail(`bad --replay-window ${JSON.stringify(window)}: expected ms > 0`);
  }
  const maxBytes = values["max-message-bytes"];
  const maxMessageBytes = maxBytes === undefined ? undefined : Number(maxBytes);
  if (
    maxMessageBytes !== undefined && !(Number.isSafeInteger(maxMessageBytes) && maxMessageBytes > 0)
  ) {
    fail(
      `bad --max-message-bytes ${JSON.stringify(maxBytes)}: expected a whole number of bytes > 0`,
    );
  }
  const intervalMs = Number(values["heartbeat-ms"] ?? 250);
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    fail(`bad --heartbeat-ms: ${values["heartbeat-ms"]}`);
  }
  const taskPermissions = values["task-permissions"] === undefined
    ? undefined
    : parsePermissions(values["task-permissions"]);
  // Listening from here on: a SIGTERM during the start must stop the host once it has started,
  // not kill the process with its registration left behind.
  const signalled = new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGTERM", resolve);
    // An engine whose stdin is its owner's ignores SIGINT: a Ctrl-C, or Jupyter's SIGINT to a
    // kernel's process group, is for its owner, which stops it, or dies and so ends its stdin.
    Deno.addSignalListener("SIGINT", values["exit-with-stdin"] ? () => {} : resolve);
  });
  const transport = await createTransport(url).catch((error) => fail(String(error?.message), 1));
  const host = await EngineHost.start(transport, {
    namespace: values.cluster,
    key,
    engineIds: ids,
    size,
    fixedSize: values.size !== undefined,
    hostId: values["host-id"] ?? defaultHostId(),
    refuseTaken: !values["skip-id-check"],
    resultRetentionMs,
    replayWindowMs,
    maxMessageBytes,
    heartbeat: { url, intervalMs },
    taskPermissions,
  }).catch((error) => fail(String(error?.message), 1));
  // A task's uncaught error or rejection does not end the host: say it in one line and go on.
  // (Not console.error: inside a task, the engine captures console output.)
  exit = guardHost({
    uncaught: (message) => {
      const line =
        `engine.ts warning: engines ${ids.join(", ")}: a task's background work failed ` +
        `(the engines go on): ${message}\n`;
      Deno.stderr.writeSync(new TextEncoder().encode(line));
    },
  });
  const stop = async () => {
    await host.close();
    await transport.close();
    exit(0);
  };
  if (values["exit-with-stdin"]) {
    // Standard input ends when the process that started this one is gone (even by SIGKILL): its
    // cluster will not stop these engines, so they stop, and take the cluster's keys with them.
    input.ended().then(async () => {
      await host.close();
      await transport.deletePrefix(`${values.cluster}:`).catch(() => {});
      await transport.close();
      exit(0);
    });
  }
  await Promise.race([host.stopRequested, signalled]);
  await stop();
}

/**
 * Standard input as lines: `lines(n)` reads the first `n` (trimmed; fewer at its end), and
 * `ended()` resolves when it ends after them.
 */
function stdinLines(): { lines(n: number): Promise<string[]>; ended(): Promise<void> } {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let done = false;
  return {
    async lines(n) {
      while (!done && text.split("\n").length <= n) {
        const chunk = await reader.read();
        if (chunk.done) done = true;
        else text += chunk.value;
      }
      return text.split("\n").slice(0, n).map((line) => line.trim());
    },
    async ended() {
      while (!done) done = (await reader.read()).done;
    },
  };
}

/**
 * A host id unique across machines and containers: the machine's name, the process id (1 in
 * many containers) and 6 random hex digits, e.g. `node7-4242-3fa9c1`.
 */
function defaultHostId(): string {
  let name = "host";
  try {
    name = Deno.hostname().replace(/[^A-Za-z0-9-]+/g, "-").slice(0, 40) || name;
  } catch { /* no --allow-sys: the random part keeps it unique */ }
  return `${name}-${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
}

function parsePermissions(text: string): Deno.PermissionOptionsObject {
  let permissions: unknown;
  try {
    permissions = JSON.parse(text);
  } catch {
    fail(`bad --task-permissions: not JSON`);
  }
  if (typeof permissions !== "object" || permissions === null || Array.isArray(permissions)) {
    fail(`bad --task-permissions: expected an object such as {"read":["./data"]}`);
  }
  return permissions as Deno.PermissionOptionsObject;
}

function fail(message: string, code = 2): never {
  // deno-lint-ignore no-console
  console.error(`engine.ts: ${message}`);
  exit(code);
}
