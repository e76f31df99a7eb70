/**
 * Starts engines that join a running cluster (IPython Parallel's `ipengine`):
 *
 * ```sh
 * deno run -A engine.ts --redis redis://host:6379 --cluster NAME --key-file FILE [--n 4]
 * ```
 *
 * Options: `--ids 0,1,2` (or `--n N` with `--first K`) chooses the engine ids; `--size N` is the
 * `size` their namespaces start with (default: the number of ids); `--key-stdin` reads the key
 * from standard input instead of a file; `--redis -` reads the URL from standard input (after the
 * key, on the next line, with `--key-stdin`), which keeps a password out of the process list;
 * `--result-retention MS` is how long each task's result is kept for `client.getResult` (default
 * 3600000, one hour; 0 keeps none).
 * The key and the password are never printed. `--heartbeat-ms N` sets how often the host sends a
 * heartbeat (default 250); clients take its engines for dead after `heartbeatTimeoutMs` (2.5 s
 * by default) without a beat, or once its beats say its event loop did not run for that long.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { EngineHost } from "./actors/engine_host.ts";
import { parseHexKey, readKeyFile } from "./actors/cluster.ts";
import { createTransport } from "./transport/mod.ts";

const USAGE = `Starts engines that join a running cluster (IPython Parallel's ipengine).

Usage: deno run -A engine.ts --redis URL --cluster NAME (--key-file FILE | --key-stdin) [options]

  --redis URL             the cluster's Redis (or REDIS_URL); "-" reads it from stdin
  --cluster NAME          the cluster's name (its namespace)
  --key-file FILE         the cluster key, in hex (see writeKeyFile)
  --key-stdin             read the key from stdin instead
  --n N, --first K        run engines K..K+N-1 (default: one engine, id 0)
  --ids 0,1,2             or run exactly these engine ids
  --size N                the size their namespaces start with (default: the number of ids)
  --result-retention MS   how long results are kept for client.getResult (default 3600000)
  --heartbeat-ms N        how often the host sends a heartbeat (default 250)
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
      "heartbeat-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    // deno-lint-ignore no-console
    console.log(USAGE);
    Deno.exit(0);
  }
  const stdin = values["key-stdin"] || values.redis === "-"
    ? (await new Response(Deno.stdin.readable).text()).split("\n").map((line) => line.trim())
    : [];
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
  const retention = values["result-retention"];
  const resultRetentionMs = retention === undefined ? undefined : Number(retention);
  if (
    resultRetentionMs !== undefined &&
    !(Number.isInteger(resultRetentionMs) && resultRetentionMs >= 0)
  ) {
    fail(`bad --result-retention ${JSON.stringify(retention)}: expected whole ms ≥ 0`);
  }
  const intervalMs = Number(values["heartbeat-ms"] ?? 250);
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    fail(`bad --heartbeat-ms: ${values["heartbeat-ms"]}`);
  }
  // An uncaught error or rejection in a task ends the process; say why in one line (the
  // cluster that started it reports that line as the reason its engines died).
  const crash = (event: Event, what: string, error: unknown) => {
    event.preventDefault();
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    // Not console.error: inside a task, the engine captures console output.
    const line = `engine.ts: engines ${ids.join(", ")} crashed: ${what} ${detail}\n`;
    Deno.stderr.writeSync(new TextEncoder().encode(line));
    Deno.exit(1);
  };
  globalThis.addEventListener("error", (e) => crash(e, "Uncaught", e.error ?? e.message));
  globalThis.addEventListener(
    "unhandledrejection",
    (e) => crash(e, "Uncaught (in promise)", e.reason),
  );
  const transport = await createTransport(url);
  const host = await EngineHost.start(transport, {
    namespace: values.cluster,
    key,
    engineIds: ids,
    size: Number(values.size ?? ids.length),
    hostId: values["host-id"] ?? `host-${Deno.pid}`,
    resultRetentionMs,
    heartbeat: { url, intervalMs },
  });
  const stop = async () => {
    await host.close();
    await transport.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await host.stopRequested;
  await stop();
}

function fail(message: string): never {
  // deno-lint-ignore no-console
  console.error(`engine.ts: ${message}`);
  Deno.exit(2);
}
