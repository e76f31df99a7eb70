/**
 * The messages between a thread and the Workers it starts: an engine host's Worker (the
 * `"worker"` launcher), and a host's liveness thread.
 *
 * @module
 */
import type { ClusterKey } from "../../transport/envelope.ts";
import type { EngineHostConfig } from "./host_messages.ts";

/** Messages from the parent. */
export type ToWorker =
  | {
    type: "start";
    config: EngineHostConfig;
    port?: MessagePort;
    url?: string;
    /** A second port of the embedded transport, for the host's liveness thread. */
    livenessPort?: MessagePort;
  }
  | { type: "stop" };

/** Messages to the parent. */
export type FromWorker =
  | { type: "started" }
  | { type: "failed"; message: string }
  | { type: "uncaught"; message: string }
  | { type: "stopped" };

/** Messages from the engine host. */
export type ToHeartbeatWorker =
  | {
    type: "start";
    /** The transport URL (password included), or a port of the embedded transport. */
    url?: string;
    port?: MessagePort;
    key: ClusterKey;
    namespace: string;
    hostId: string;
    engineIds: number[];
    /** How often to send a heartbeat, in ms; none are sent when absent. */
    intervalMs?: number;
    /** The host's `HostClock` buffer. */
    clock: SharedArrayBuffer;
  }
  | { type: "stop" };
