/**
 * In Deno's Jupyter kernel, a cluster's keys do not outlive the kernel. Jupyter restarts and shuts
 * down a kernel with SIGINT, then a shutdown request, on which Deno's kernel (2.9.6) exits at once:
 * no `unload` event, no turn of the event loop in which `cluster.stop()` could finish. Its Workers
 * die with it, and engine processes stop and delete the cluster's keys when their stdin ends (see
 * `engine.ts --exit-with-stdin`); the keys of Worker hosts on Redis would stay. So a cluster on
 * Redis with Worker hosts, started in that kernel, starts a small process (`_key_guardian.ts`)
 * that deletes them once the kernel is gone, and tells it to exit when it stops itself.
 *
 * Only in the kernel: elsewhere a program stops its cluster (`await using`), and a process killed
 * before it could is the case of every other client.
 *
 * @module
 */
import { engineEnvironment } from "./_engine_env.ts";
import { inJupyterKernel } from "./_jupyter_kernel.ts";

/** A started guardian: `release()` when the cluster stopped and deleted its keys itself. */
export interface KeyGuard {
  release(): Promise<void>;
}

/**
 * Starts the guardian of `namespace`'s keys on `url`, in Deno's Jupyter kernel when the hosts are
 * Workers and the transport is not the embedded one; otherwise `undefined`.
 */
export async function guardKeys(
  url: string,
  namespace: string,
  launcher: "worker" | "process",
): Promise<KeyGuard | undefined> {
  if (launcher !== "worker" || url.startsWith("memory:") || !inJupyterKernel()) return undefined;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_key_guardian.ts", import.meta.url).href],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
    clearEnv: true,
    env: engineEnvironment(url, undefined),
  }).spawn();
  const status = child.status.catch(() => {});
  // The URL (it may hold a password) goes through the pipe, not the process list or environment.
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(`${url}\n${namespace}\n`));
  return {
    async release() {
      await writer.write(new TextEncoder().encode("stopped\n")).catch(() => {});
      await writer.close().catch(() => {});
      await status;
    },
  };
}
