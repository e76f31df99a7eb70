// The Worker that runs a client's broadcast nodes, off the client's thread.
import { workerScope } from "./_worker_scope.ts";
import { createTransport } from "../../transport/mod.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import type { Transport } from "../../transport/types.ts";
import { BroadcastNodes } from "./broadcast_nodes.ts";
import { ActorSystem } from "../core/system.ts";
import { broadcastAddress } from "../protocol/addresses.ts";
import type { FromBroadcastWorker, ToBroadcastWorker } from "../protocol/worker_messages.ts";

const post = (message: FromBroadcastWorker) => workerScope.postMessage(message);
let system: ActorSystem | undefined;
let transport: Transport | undefined;

workerScope.onmessage = async (event: MessageEvent<ToBroadcastWorker>) => {
  const message = event.data;
  if (message.type === "start") {
    try {
      transport = message.port
        ? MemoryTransport.fromPort(message.port)
        : await createTransport(message.url);
      system = new ActorSystem({
        transport,
        key: message.key,
        namespace: message.namespace,
        id: message.hostId,
        // The nodes of one tree live here: hops between them need not cross the transport.
        localDelivery: true,
      });
      const nodes = new BroadcastNodes(message.hostId);
      for (let node = 0; node < message.nodes; node++) {
        system.spawn(broadcastAddress(message.hostId, node), nodes.actor(node));
      }
      post({ type: "started" });
    } catch (error) {
      post({ type: "failed", message: String((error as Error)?.stack ?? error) });
    }
  } else {
    await system?.close();
    await transport?.close();
    post({ type: "stopped" });
    workerScope.close();
  }
};
