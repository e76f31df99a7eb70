/**
 * The results of a load-balanced call as a client that did not make it finds them: each task's
 * answer, kept by the engine that ran it under the task's message id (`<call>~<chunk>`, and
 * `<call>~<chunk>.<attempt>` for a retry, which carries the items of the try before it that
 * failed, or all of them when its engine died).
 *
 * @module
 */
import {
  InvalidMessageError,
  ResultNotFoundError,
  TaskAbortedError,
  TaskError,
  TimeoutError,
} from "../../errors.ts";
import { AsyncMapResult } from "./async_map_result.ts";
import type { ViewHost } from "./_view_host.ts";
import type { EngineResult, MapItemResult } from "../protocol/results.ts";
import { resultKey, taskAttemptId } from "../protocol/addresses.ts";
import type { TaskRecord } from "../protocol/messages.ts";
import type { Reply } from "../core/system_types.ts";

/** The longest pause between two looks for a task's answer. */
const POLL_MAX_MS = 1000;

/**
 * The per-item results of load-balanced call `id` from the answers its engines kept, each task
 * waited for (polled) until it is found or `expires` (ms since the epoch) passes.
 */
export function storedTasks<T>(
  host: ViewHost,
  id: string,
  tasks: TaskRecord,
  expires: number,
): AsyncMapResult<T> {
  const { length, chunksize, retries } = tasks;
  const map = new AsyncMapResult<T>(id, length, true);
  for (let lo = 0, chunk = 0; lo < length; lo += chunksize, chunk++) {
    const indices: number[] = [];
    for (let i = lo; i < Math.min(length, lo + chunksize); i++) indices.push(i);
    fetchChunk(host, map as AsyncMapResult<unknown>, id, chunk, indices, retries, expires)
      .catch((error) => {
        for (const index of indices) map.settle({ index, engineId: -1, error });
      });
  }
  return map;
}

async function fetchChunk(
  host: ViewHost,
  map: AsyncMapResult<unknown>,
  id: string,
  chunk: number,
  indices: number[],
  retries: number,
  expires: number,
): Promise<void> {
  let pending = indices;
  let attempt = 0;
  let pause = 50;
  while (pending.length > 0) {
    let found = false;
    for (let a = attempt; a <= retries && pending.length > 0; a++) {
      const result = await loadAnswer(host, taskAttemptId(id, chunk, a));
      if (!result) continue;
      found = true;
      pending = settleTask(map, result, pending, a < retries);
      attempt = a + 1;
    }
    if (pending.length === 0 || found) continue;
    const closed = host.closedError("get result");
    const error = closed ??
      (Date.now() >= expires ? new ResultNotFoundError(id) : undefined);
    if (error) {
      for (const index of pending) map.settle({ index, engineId: -1, error });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(POLL_MAX_MS, pause * 2);
  }
}

/** The kept answer to task message `messageId`, or `null` while there is none. */
async function loadAnswer(host: ViewHost, messageId: string): Promise<EngineResult | null> {
  const key = resultKey(host.namespace, messageId);
  const envelope = await host.system.load(key);
  if (envelope === null) return null;
  if (
    envelope.type !== "reply" || envelope.parent !== messageId ||
    !envelope.from.startsWith("engine.")
  ) {
    throw new InvalidMessageError(key, "value", "it is not an engine's answer to this task");
  }
  const reply = envelope.content as Reply;
  if (!reply?.ok) {
    const engineId = Number(envelope.from.slice("engine.".length));
    const data = reply?.error ?? { name: "Error", message: "malformed reply" };
    return { engineId, error: data, stdout: "", stderr: "", submitted: 0 } as EngineResult;
  }
  return reply.value as EngineResult;
}

/**
 * Settles the items `indices` of one try of a task from its engine's answer, as the client that
 * made the call did; returns the items that were sent again (when `retry`).
 */
function settleTask(
  map: AsyncMapResult<unknown>,
  result: EngineResult,
  indices: number[],
  retry: boolean,
): number[] {
  const { engineId } = result;
  map.output(indices[0], result.stdout ?? "", result.stderr ?? "");
  for (const index of indices) map.attempted(index);
  const again: number[] = [];
  if (result.error) {
    for (const index of indices) {
      if (result.cancelled === "abort") {
        map.settle({ index, engineId, error: new TaskAbortedError(engineId) });
      } else if (result.cancelled === "deadline") {
        const ms = Math.max(0, (result.deadline ?? result.submitted) - result.submitted);
        map.settle({
          index,
          engineId,
          error: new TimeoutError(result.error.message, ms, [engineId]),
        });
      } else if (retry) again.push(index);
      else map.settle({ index, engineId, error: new TaskError(index, engineId, result.error) });
    }
    return again;
  }
  const values = result.value as MapItemResult[];
  indices.forEach((index, k) => {
    const item = values?.[k];
    if (item && "error" in item) {
      if (retry) again.push(index);
      else map.settle({ index, engineId, error: new TaskError(index, engineId, item.error) });
    } else map.settle({ index, engineId, value: item?.value });
  });
  return again;
}
