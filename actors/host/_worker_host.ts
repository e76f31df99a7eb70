// The Worker side of the "worker" launcher: runs an EngineHost and reports to the parent.
import { workerScope } from "./_worker_scope.ts";
import { createTransport } from "../../transport/mod.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import type { Transport } from "../../transport/types.ts";
import { EngineHost } from "./engine_host.ts";
import { guardHost } from "./_host_guard.ts";
import type { FromWorker, ToWorker } from "../protocol/worker_messages.ts";

const post = (message: FromWorker) => workerScope.postMessage(message);

const close = workerScope.close.bind(workerScope);
guardHost({
  uncaught: (message) => post({ type: "uncaught", message }),
  replace: (refuse) => {
    Object.defineProperty(workerScope, "close", {
      configurable: true,
      value: () => refuse("self.close()"),
    });
  },
});

let host: EngineHost | undefined;
let transport: Transport | undefined;

workerScope.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "start") {
    try {
      transport = message.port
        ? MemoryTransport.fromPort(message.port)
        : await createTransport(message.url);
      host = await EngineHost.start(transport, {
        ...message.config,
        liveness: message.livenessPort ? { port: message.livenessPort } : { url: message.url },
      });
      post({ type: "started" });
    } catch (error) {
      post({ type: "failed", message: String((error as Error)?.stack ?? error) });
    }
  } else if (message.type === "stop") {
    await host?.close();
    await transport?.close();
    post({ type: "stopped" });
    close();
  }
};
