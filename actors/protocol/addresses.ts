/**
 * The addresses of the actors clients and engine hosts talk to, and the ids and keys derived from
 * a call: how each side names what the other runs.
 *
 * @module
 */

/** The address engines register at: its inbox is the cluster's registry stream. */
export const REGISTRY = "_registry";

/** The address engine hosts send heartbeats to: its inbox is the cluster's heartbeat stream. */
export const HEARTBEATS = "_heartbeats";

/**
 * The address that answers liveness pings for engine `id`: its host's liveness thread answers
 * them, so an engine busy in a long task still answers.
 */
export function aliveAddress(id: number): string {
  return `alive.${id}`;
}

/** The address of the dispatcher of host `hostId`. */
export function dispatcherAddress(hostId: string): string {
  return `dispatch.${hostId}`;
}

/** The address of broadcast node `node` on the engine host `hostId`. */
export function broadcastAddress(hostId: string, node: number): string {
  return `bcast.${hostId}.${node}`;
}

/** The consumer group the engines read task streams through. */
export const TASK_GROUP = "tasks";

/** The address of the task reader of host `hostId`. */
export function taskReaderAddress(hostId: string): string {
  return `tasks.${hostId}`;
}

/** The consumer name of engine `engineId` of host `hostId` in a task stream's group. */
export function taskConsumer(hostId: string, engineId: number): string {
  return `${hostId}:${engineId}`;
}

/**
 * The address whose stream holds the tasks of a load-balanced view on `targets` (all engines
 * when `undefined`): one stream per set of engines.
 */
export function taskAddress(targets: readonly number[] | undefined): string {
  return `_tasks.${targets ? [...targets].sort((a, b) => a - b).join("-") : "all"}`;
}

/**
 * The id of the message that carries call `callId` to engine `engineId` (IPython Parallel's
 * `${taskId}_${engineId}`). Views of every kind use it, so that a client can name an engine's part
 * of a call: to abort it, or to fetch its result.
 */
export function engineMessageId(callId: string, engineId: number): string {
  return `${callId}_${engineId}`;
}

/**
 * The id of the message that carries task `seq` of load-balanced call `callId` (whichever engine
 * takes it). An `abort` naming `callId` skips every task of the call that has not started.
 */
export function taskMessageId(callId: string, seq: number): string {
  return `${callId}~${seq}`;
}

/** The call a message id belongs to when it is a load-balanced task's, else `undefined`. */
export function callOfTask(messageId: string): string | undefined {
  const at = messageId.lastIndexOf("~");
  return at > 0 ? messageId.slice(0, at) : undefined;
}

/** The transport key an engine keeps the answer to message `messageId` under. */
export function resultKey(namespace: string, messageId: string): string {
  return `${namespace}:result:${messageId}`;
}

/** The message id of try `attempt` (0 for the first) of the task of chunk `chunk` of `callId`. */
export function taskAttemptId(callId: string, chunk: number, attempt: number): string {
  const id = taskMessageId(callId, chunk);
  return attempt === 0 ? id : `${id}.${attempt}`;
}

/** The transport key of the record of call `id`. */
export function callKey(namespace: string, id: string): string {
  return `${namespace}:call:${id}`;
}
