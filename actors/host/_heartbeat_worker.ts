// An engine host's liveness thread: a Worker of the host's own, which goes on running whatever the
// host's event loop does. It answers the pings of tree reductions for the host's engines
// (`alive.<id>`), so that an engine busy in a long task is not taken for dead by its peers, and,
// for a host in a process, sends its heartbeats, each saying whether a task blocks the host past
// its call's deadline. It stops when the process or the host's Worker does.
import { workerScope } from "./_worker_scope.ts";
import { createTransport } from "../../transport/mod.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import type { Transport } from "../../transport/types.ts";
import { defineActor } from "../core/actor.ts";
import { HostClock } from "../_liveness.ts";
import { ActorSystem } from "../core/system.ts";
import type { Heartbeat } from "../protocol/host_messages.ts";
import { aliveAddress, HEARTBEATS } from "../protocol/addresses.ts";
import type { ToHeartbeatWorker } from "../protocol/worker_messages.ts";

let transport: Transport | undefined;
let system: ActorSystem | undefined;
let timer: ReturnType<typeof setInterval> | undefined;

workerScope.onmessage = async (event: MessageEvent<ToHeartbeatWorker>) => {
  const message = event.data;
  if (message.type === "start") {
    transport = message.port
      ? MemoryTransport.fromPort(message.port)
      : await createTransport(message.url);
    const alive = new ActorSystem({
      transport,
      key: message.key,
      namespace: message.namespace,
      id: `${message.hostId}.alive`,
      maxLen: 1000,
    });
    system = alive;
    for (const id of message.engineIds) {
      alive.spawn(
        aliveAddress(id),
        defineActor({ handlers: {}, control: { ping: () => ({ id, at: Date.now() }) } }),
      );
    }
    const { intervalMs } = message;
    if (intervalMs !== undefined) {
      const clock = new HostClock(message.clock);
      let seq = 0;
      const beat = () => {
        seq = Math.max(Date.now(), seq + 1);
        const overrun = clock.overrun();
        const content: Heartbeat = {
          hostId: message.hostId,
          engineIds: message.engineIds,
          at: Date.now(),
          seq,
          stalledMs: clock.stalledMs(),
          ...(overrun ? { overrun } : {}),
        };
        return alive.send(HEARTBEATS, "beat", content)
          .catch(() => {}); // the transport is away: the next beat tries again
      };
      await beat(); // before the host registers: a client that sees an engine sees a beat of it
      timer = setInterval(beat, intervalMs);
    }
    workerScope.postMessage("started");
  } else {
    clearInterval(timer);
    await system?.close();
    await transport?.close();
    workerScope.postMessage("stopped");
    workerScope.close();
  }
};
