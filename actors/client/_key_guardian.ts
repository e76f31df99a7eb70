/**
 * The process that deletes a cluster's keys once the Jupyter kernel that started it is gone (see
 * `_kernel_guard.ts`). Reads, on stdin, the transport URL and the namespace, one a line; then
 * waits for stdin to end, which it does when the kernel exits, however it exits. If the line
 * `stopped` came first, the cluster stopped itself and took its keys: it exits. Otherwise it
 * deletes every key of the namespace, and exits.
 *
 * Jupyter signals the kernel's whole process group (SIGINT, then SIGTERM and SIGKILL if the kernel
 * is still there): this process outlives the first two, and goes on to delete the keys.
 *
 * @module
 */
import { createTransport } from "../../transport/mod.ts";

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  Deno.addSignalListener(signal, () => {});
}

let text = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  text += chunk;
}
const [url, namespace, ...rest] = text.split("\n").map((line) => line.trim());
if (url && namespace && !rest.includes("stopped")) {
  const transport = await createTransport(url);
  await transport.deletePrefix(`${namespace}:`).catch(() => {});
  await transport.close();
}
Deno.exit(0);
