/// <reference lib="deno.worker" />
// The Worker side of the "worker" launcher: runs an EngineHost and reports to the parent.
import { createTransport } from "../transport/mod.ts";
import { MemoryTransport } from "../transport/memory.ts";
import type { Transport } from "../transport/types.ts";
import { EngineHost, type EngineHostConfig } from "./engine_host.ts";

/** Messages from the parent. */
export type ToWorker =
  | { type: "start"; config: EngineHostConfig; port?: MessagePort; url?: string }
  | { type: "stop" };
/** Messages to the parent. */
export type FromWorker =
  | { type: "started" }
  | { type: "failed"; message: string }
  | { type: "exiting"; code: number }
  | { type: "crashed"; message: string }
  | { type: "stopped" };

const post = (message: FromWorker) => self.postMessage(message);

const exit = Deno.exit;
Object.defineProperty(Deno, "exit", {
  configurable: true,
  value: (code = 0) => {
    post({ type: "exiting", code });
    return exit(code);
  },
});

// An uncaught error or rejection in a task ends the host, as it ends an engine process. Report
// it as the reason the engines died rather than let the runtime print it on the parent's stderr.
function crashed(event: Event, what: string, error: unknown): void {
  event.preventDefault();
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  post({ type: "crashed", message: `${what} ${message}` });
  self.close();
}
self.addEventListener("error", (event) => crashed(event, "Uncaught", event.error ?? event.message));
self.addEventListener(
  "unhandledrejection",
  (event) => crashed(event, "Uncaught (in promise)", event.reason),
);

let host: EngineHost | undefined;
let transport: Transport | undefined;

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "start") {
    try {
      transport = message.port
        ? MemoryTransport.fromPort(message.port)
        : await createTransport(message.url);
      host = await EngineHost.start(transport, message.config);
      post({ type: "started" });
    } catch (error) {
      post({ type: "failed", message: String((error as Error)?.stack ?? error) });
    }
  } else if (message.type === "stop") {
    await host?.close();
    await transport?.close();
    post({ type: "stopped" });
    self.close();
  }
};
