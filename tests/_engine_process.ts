/**
 * Engines started the way a user starts them on another machine: an `engine.ts` process, and a
 * client that joins them with `Cluster.connect`.
 *
 * @module
 */
import { Cluster } from "../actors/client/cluster.ts";
import { toHex } from "../transport/key.ts";
import type { Client } from "../actors/client/client.ts";
import { generateKey } from "../transport/envelope.ts";
import { uniqueNamespace } from "./_redis_server.ts";

/** An `engine.ts` process and its client; disposing kills the process and closes the client. */
export interface HandStarted extends AsyncDisposable {
  client: Client;
  process: Deno.ChildProcess;
}

/** A fresh cluster name and a key file for it, in a temporary directory (`dir`). */
export async function newHandCluster(): Promise<{ cluster: string; keyFile: string; dir: string }> {
  const dir = await Deno.makeTempDir();
  const keyFile = `${dir}/key`;
  await Deno.writeTextFile(keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
  return { cluster: uniqueNamespace(), keyFile, dir };
}

/**
 * Starts engines 0 to `n - 1` of `cluster` in one `engine.ts` process on the Redis at `url`,
 * as host `hostId` when given (else `engine.ts` names it).
 */
export function spawnEngines(
  url: string,
  cluster: string,
  keyFile: string,
  n: number,
  hostId?: string,
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../engine.ts", import.meta.url).href,
      ...["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", String(n)],
      ...(hostId === undefined ? [] : ["--host-id", hostId]),
    ],
    stdout: "null",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/**
 * Starts `n` engines in one `engine.ts` process on the Redis at `url` (a fresh cluster name and
 * key file) and connects a client to them, waiting up to `timeout` ms (default 30,000).
 */
export async function startByHand(
  url: string,
  n: number,
  options: { heartbeatTimeoutMs?: number; timeout?: number } = {},
): Promise<HandStarted> {
  const { cluster, keyFile, dir } = await newHandCluster();
  const process = spawnEngines(url, cluster, keyFile, n);
  const { timeout = 30_000, heartbeatTimeoutMs } = options;
  const client = await Cluster.connect({
    transport: url,
    cluster,
    keyFile,
    n,
    timeout,
    ...(heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs }),
  });
  return {
    client,
    process,
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGKILL");
      } catch { /* already gone */ }
      await process.status;
      await client.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A user's script running a cluster (`tests/fixtures/process_cluster.ts`), once it answered. */
export interface ScriptCluster {
  /** The script's process, left running: kill it as a user's `kill -9` would. */
  child: Deno.ChildProcess;
  /** Its cluster's namespace. */
  namespace: string;
  /** The pids its engines answered with (the script's own, for Worker engines). */
  pids: number[];
}

/**
 * Runs `tests/fixtures/process_cluster.ts` on the Redis at `url`, its engines launched by
 * `launcher`; resolves once its cluster answered a call and a broadcast.
 */
export async function runScriptCluster(
  url: string,
  launcher: "worker" | "process" = "process",
): Promise<ScriptCluster> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fixtures/process_cluster.ts", import.meta.url).href,
      url,
      launcher,
    ],
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`The script ended before its cluster ran: ${text}`);
    text += chunk.value;
  }
  await reader.cancel();
  const { namespace, pids } = JSON.parse(text.split("\n")[0]) as ScriptCluster;
  return { child, namespace, pids };
}

/** Whether process `pid` still exists. */
export function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // harmless: only asks whether the process exists
    return true;
  } catch {
    return false;
  }
}
