/**
 * What an engine answers to a `status` control message (`Client.queueStatus`).
 *
 * @module
 */

/** One engine's tasks, as `client.queueStatus()` reports them (IPython Parallel's `queue_status`). */
export interface EngineQueueStatus {
  /** Tasks the engine has read from its inbox and not started. */
  queued: number;
  /** Tasks it is running (one, or more while a task that timed out goes on in the background). */
  running: number;
  /** Tasks it finished since it started, failed and aborted ones included. */
  completed: number;
}
