/// <reference lib="deno.worker" />
// Beats for an engine host from a thread of its own, so that beats leave on time whatever the
// host's event loop is doing. Each beat says how long ago that loop last ran (the host stores the
// time in a shared buffer every few ms): a host whose loop is stuck in a task that never yields
// keeps beating, but its beats show the loop stalled, and watchers take it for dead after their
// timeout. The beats stop when the process or the host's Worker does.
import { createTransport } from "../transport/mod.ts";
import type { ClusterKey } from "../transport/envelope.ts";
import type { Transport } from "../transport/types.ts";
import { type Heartbeat, HEARTBEATS } from "./engine_host.ts";
import { stalledMs } from "./_liveness.ts";
import { ActorSystem } from "./system.ts";

/** Messages from the engine host. */
export type ToHeartbeatWorker =
  | {
    type: "start";
    /** The transport URL (password included). */
    url: string;
    key: ClusterKey;
    namespace: string;
    beat: Omit<Heartbeat, "at" | "stalledMs">;
    intervalMs: number;
    /** A `BigInt64Array`'s buffer: when the host's event loop last ran, ms since the epoch. */
    tick: SharedArrayBuffer;
  }
  | { type: "stop" };

let transport: Transport | undefined;
let system: ActorSystem | undefined;
let timer: ReturnType<typeof setInterval> | undefined;

self.onmessage = async (event: MessageEvent<ToHeartbeatWorker>) => {
  const message = event.data;
  if (message.type === "start") {
    transport = await createTransport(message.url);
    const beats = new ActorSystem({
      transport,
      key: message.key,
      namespace: message.namespace,
      id: `${message.beat.hostId}.beat`,
      maxLen: 1000,
    });
    system = beats;
    const beat = () => {
      const content: Heartbeat = {
        ...message.beat,
        at: Date.now(),
        stalledMs: stalledMs(message.tick),
      };
      return beats.send(HEARTBEATS, "beat", content)
        .catch(() => {}); // the transport is away: the next beat tries again
    };
    await beat(); // before the host registers: a client that sees an engine sees a beat of it
    timer = setInterval(beat, message.intervalMs);
    self.postMessage("started");
  } else {
    clearInterval(timer);
    await system?.close();
    await transport?.close();
    self.postMessage("stopped");
    self.close();
  }
};
