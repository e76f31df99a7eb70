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
