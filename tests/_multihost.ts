/**
 * Engine hosts started as a user starts them on several machines: `engine.ts` processes with the
 * README's options, each one's stderr kept, against one Redis.
 *
 * @module
 */
import { toHex } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { type Client, Cluster } from "../mod.ts";

/** `unshare --pid --fork` runs each host as PID 1 of a PID namespace of its own, as containers do. */
export const PID_NAMESPACE = ["unshare", "--pid", "--fork", "--kill-child"];

let pidNamespaceProbe: { why: string | undefined } | undefined;

/** Why {@linkcode PID_NAMESPACE} cannot be used here, or `undefined` when it can. */
export function pidNamespaceUnavailable(): string | undefined {
  return (pidNamespaceProbe ??= {
    why: (() => {
      try {
        const { success } = new Deno.Command(PID_NAMESPACE[0], {
          args: [...PID_NAMESPACE.slice(1), "true"],
          stdout: "null",
          stderr: "null",
        }).outputSync();
        return success ? undefined : "unshare --pid fails here (needs root)";
      } catch {
        return "no unshare binary";
      }
    })(),
  }).why;
}

/** A cluster's name and key file, as the user makes them before starting hosts. */
export interface ClusterFiles extends AsyncDisposable {
  cluster: string;
  keyFile: string;
}

/** A fresh cluster name and key file (mode 0600) in a temporary directory. */
export async function clusterFiles(): Promise<ClusterFiles> {
  const dir = await Deno.makeTempDir();
  const keyFile = `${dir}/cluster.key`;
  await Deno.writeTextFile(keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
  return {
    cluster: uniqueNamespace(),
    keyFile,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** An `engine.ts` process; disposing kills it (SIGKILL) and waits for it. */
export interface EngineProcess extends AsyncDisposable {
  process: Deno.ChildProcess;
  /** Resolves with its exit status and everything it wrote to stderr, once it exits. */
  ended: Promise<{ code: number; stderr: string }>;
}

/**
 * Starts `deno run -A <denoFlags> engine.ts <args>`; `wrap` runs it under another command (for
 * instance `["unshare", "--pid", "--fork"]`).
 */
export function startEngine(
  args: string[],
  wrap: string[] = [],
  denoFlags: string[] = [],
): EngineProcess {
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    ...denoFlags,
    new URL("../engine.ts", import.meta.url).href,
    ...args,
  ];
  const [command, ...rest] = [...wrap, ...deno];
  const process = new Deno.Command(command, {
    args: rest,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const ended = (async () => {
    const stderr = await new Response(process.stderr).text();
    const { code } = await process.status;
    return { code, stderr };
  })();
  return {
    process,
    ended,
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGKILL");
      } catch { /* already gone */ }
      await ended;
    },
  };
}

/** A client connected with `Cluster.connect` to `files`' cluster on `url`; disposing closes it. */
export interface ConnectedClient extends AsyncDisposable {
  client: Client;
}

/** Connects to `files`' cluster on `url` once `n` engines registered (within 30 s). */
export async function connectClient(
  url: string,
  files: ClusterFiles,
  n: number,
): Promise<ConnectedClient> {
  const { cluster, keyFile } = files;
  const client = await Cluster.connect({ transport: url, cluster, keyFile, n, timeout: 30_000 });
  return { client, [Symbol.asyncDispose]: () => client.close() };
}
