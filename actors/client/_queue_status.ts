/**
 * What `Client.queueStatus` reports: each engine's queue, asked of the engine itself.
 *
 * @module
 */
import { TimeoutError } from "../../errors.ts";
import type { ActorSystem } from "../core/system.ts";
import type { EngineQueueStatus } from "../protocol/queue_status.ts";

/** Default deadline of {@linkcode askQueueStatus}, in ms. */
export const QUEUE_STATUS_TIMEOUT_MS = 10_000;

/**
 * Asks engines `ids` for their {@linkcode EngineQueueStatus}, a control message each answers at
 * once (not queued behind its tasks). Rejects with `TimeoutError` naming the engines that did not
 * answer within `timeout` ms.
 */
export async function askQueueStatus(
  system: ActorSystem,
  ids: readonly number[],
  timeout = QUEUE_STATUS_TIMEOUT_MS,
): Promise<Record<number, EngineQueueStatus>> {
  const silent: number[] = [];
  const answers = await Promise.all(ids.map(async (id) => {
    try {
      return await system.ask<EngineQueueStatus>(`engine.${id}`, "status", {}, { timeout });
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      silent.push(id);
      return undefined;
    }
  }));
  if (silent.length > 0) {
    silent.sort((a, b) => a - b);
    throw new TimeoutError(
      `Cannot get queue status: engines ${silent.join(", ")} did not answer within ${timeout} ms`,
      timeout,
      silent,
    );
  }
  const status: Record<number, EngineQueueStatus> = {};
  ids.forEach((id, i) => {
    const { queued, running, completed } = answers[i]!;
    status[id] = { queued, running, completed };
  });
  return status;
}
