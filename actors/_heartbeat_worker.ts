/// <reference lib="deno.worker" />
// Beats for an engine host from a thread of its own, so that a task that keeps the host's event
// loop busy for minutes does not make its engines look dead; the beats stop when the process does.
import { createTransport } from "../transport/mod.ts";
import type { ClusterKey } from "../transport/envelope.ts";
import type { Transport } from "../transport/types.ts";
import { type Heartbeat, HEARTBEATS } from "./engine_host.ts";
import { ActorSystem } from "./system.ts";

/** Messages from the engine host. */
export type ToHeartbeatWorker =
  | {
    type: "start";
    url: string;
    key: ClusterKey;
    namespace: string;
    beat: Omit<Heartbeat, "at">;
    intervalMs: number;
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
    const beat = () =>
      beats.send(HEARTBEATS, "beat", { ...message.beat, at: Date.now() } satisfies Heartbeat)
        .catch(() => {}); // Redis away: the next beat tries again
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
