/**
 * Finding a call's results by its id, from what the engines (and broadcast nodes) kept in the
 * transport: IPython Parallel's hub database, for `Client.getResult` and `Client.fetchResult`.
 *
 * @module
 */
import {
  CompositeError,
  InvalidMessageError,
  RemoteError,
  ResultNotFoundError,
  TaskError,
  TransportClosedError,
} from "../../errors.ts";
import { callKey, engineMessageId, resultKey } from "../protocol/addresses.ts";
import type { BroadcastPart, CallRecord } from "../protocol/messages.ts";
import { type KeptPiece, keptPieces } from "../protocol/placement.ts";
import type { EngineResult, MapItemResult } from "../protocol/results.ts";
import type { AsyncMapResult } from "./async_map_result.ts";
import { AsyncResult, type GetOptions, type Outcome, type Shape } from "./async_result.ts";
import { toOutcome } from "./broadcast_view.ts";
import { storedTasks } from "./_stored_tasks.ts";
import { firstOf, mapResult } from "./view.ts";
import type { ViewHost } from "./_view_host.ts";
import type { Reply } from "../core/system_types.ts";

/**
 * A call found by its id with {@linkcode Client.fetchResult}.
 *
 * @example Find a call again by its id
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, type FetchedCall } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const ar = client.view().apply(() => 1);
 * await ar.get();
 * const found: FetchedCall = await client.fetchResult(ar.id);
 * assert.deepEqual(found.engineIds, [0, 1]);
 * assert.deepEqual(await found.result.get(), [1, 1]);
 * ```
 */
export interface FetchedCall {
  /** The call's id (its `AsyncResult.id`). */
  readonly id: string;
  /** What the call asked of the engines: `"apply"`, `"execute"`, `"push"`, `"pull"`, `"clear"`. */
  readonly type: string;
  /** The engines it went to, in target order. */
  readonly engineIds: readonly number[];
  /** When it was sent (ms since the epoch, the sending client's clock). */
  readonly submitted: number;
  /**
   * Its results, as the client that made the call had them: values, errors, output and timings.
   * An engine whose result is not stored yet is waited for (polled) until it is, until the call's
   * retention ends (then `ResultNotFoundError`), or until this client closes.
   */
  readonly result: AsyncResult<unknown, Shape>;
  /**
   * For a load-balanced call (`type` `"map"` or `"apply"` of a `LoadBalancedView`): its per-item
   * results, each found where the engine that ran its task kept it (`result` then has no
   * engines; `engineIds` are the view's).
   */
  readonly tasks?: AsyncMapResult<unknown>;
}

/** The longest pause between two looks for a result that is not stored yet. */
const POLL_MAX_MS = 1000;

/**
 * The values of a `DirectView`/`BroadcastView` `map` from its engines' answers (each a list of
 * its partition's item outcomes), as one flat list; errors as `get(options)` gives them.
 */
export function flattenMap(
  perEngine: unknown[],
  engineIds: readonly number[],
  options: GetOptions,
): unknown[] {
  const values: unknown[] = [];
  const errors: Error[] = [];
  perEngine.forEach((list, e) => {
    if (!Array.isArray(list)) {
      errors.push(list as Error);
      values.push(list);
      return;
    }
    for (const item of list as MapItemResult[]) {
      if (item && "error" in item) {
        const engineError = new TaskError(values.length, engineIds[e], item.error);
        errors.push(engineError);
        values.push(engineError);
      } else values.push(item?.value);
    }
  });
  if (options.returnExceptions || errors.length === 0) return values;
  if (errors.length === 1) throw errors[0];
  throw new CompositeError(errors);
}

/**
 * Finds call `id` in the transport: its record, and an `AsyncResult` on its stored results
 * (see `Client.fetchResult`), each waited for until the call's retention ends or `closing` aborts.
 */
export async function fetchCall(
  host: ViewHost,
  id: string,
  closing: AbortSignal,
): Promise<FetchedCall> {
  const envelope = await host.system.load(callKey(host.namespace, id));
  if (envelope === null) throw new ResultNotFoundError(id);
  const record = envelope.content as CallRecord;
  if (
    envelope.type !== "call" || envelope.id !== id || typeof record !== "object" ||
    record === null || !Array.isArray(record.targets) ||
    !record.targets.every(Number.isInteger) || typeof record.type !== "string" ||
    typeof record.retentionMs !== "number"
  ) {
    throw new InvalidMessageError(
      callKey(host.namespace, id),
      "value",
      "it is not the record of this call",
    );
  }
  const targets = record.targets;
  const expires = envelope.sent + record.retentionMs;
  if (record.tasks) {
    const { length, chunksize, retries } = record.tasks;
    if (![length, chunksize, retries].every(Number.isInteger) || chunksize < 1) {
      throw new InvalidMessageError(
        callKey(host.namespace, id),
        "value",
        "its tasks are malformed",
      );
    }
    const tasks = storedTasks(host, id, record.tasks, expires);
    const result = new AsyncResult(id, [], [], () => {}, envelope.sent);
    return { id, type: record.type, engineIds: targets, submitted: envelope.sent, result, tasks };
  }
  const found = new Set<number>();
  const { tree } = record;
  const pieces = tree
    ? keptPieces(id, targets, tree.hosts, tree.hub, tree.fanout)
    : targets.map((engineId, i) => ({
      id: engineMessageId(id, engineId),
      from: `engine.${engineId}`,
      lo: i,
      hi: i + 1,
    }));
  const outcomes: Promise<Outcome>[] = [];
  for (const piece of pieces) {
    const stored = storedPiece(host, closing, id, piece, targets, expires);
    for (let i = piece.lo; i < piece.hi; i++) {
      outcomes[i] = stored.then((all) => {
        found.add(targets[i]);
        return all[i - piece.lo];
      });
    }
  }
  const stored = new AsyncResult(
    id,
    targets,
    outcomes,
    () => host.abortCall(id, targets.filter((e) => !found.has(e))),
    envelope.sent,
  );
  const listed = record.single === true ? mapResult(stored, firstOf, envelope.sent) : stored;
  const result = record.one === true && targets.length === 1 ? listed.reshaped("one") : listed;
  return { id, type: record.type, engineIds: targets, submitted: envelope.sent, result };
}

/**
 * The stored answer to message `piece.id` of call `id` (an engine's, or a broadcast node's for
 * its range), as the outcomes of the targets at positions `[piece.lo, piece.hi)`; waited for
 * until `expires`.
 */
async function storedPiece(
  host: ViewHost,
  closing: AbortSignal,
  id: string,
  piece: KeptPiece,
  targets: readonly number[],
  expires: number,
): Promise<Outcome[]> {
  const engineIds = targets.slice(piece.lo, piece.hi);
  const all = (error: (engineId: number) => Error) =>
    engineIds.map((engineId) => ({ engineId, error: error(engineId) }));
  const key = resultKey(host.namespace, piece.id);
  let pause = 50;
  for (;;) {
    try {
      const envelope = await host.system.load(key);
      if (envelope !== null) {
        if (
          envelope.type !== "reply" || envelope.parent !== piece.id ||
          envelope.from !== piece.from
        ) {
          throw new InvalidMessageError(key, "value", `it is not the answer of ${piece.from}`);
        }
        const reply = envelope.content as Reply;
        if (!reply?.ok) {
          const data = reply?.error ?? { name: "Error", message: "malformed reply" };
          return all((engineId) => new RemoteError(engineId, data, envelope.from));
        }
        if (piece.hi - piece.lo === 1 && envelope.from.startsWith("engine.")) {
          return [{ engineId: engineIds[0], result: reply.value as EngineResult }];
        }
        const parts = reply.value as BroadcastPart[];
        if (!Array.isArray(parts) || parts.length !== engineIds.length) {
          throw new InvalidMessageError(key, "value", "its parts do not match its range");
        }
        return parts.map((part) => toOutcome(part, host));
      }
    } catch (error) {
      return all(() => error as Error);
    }
    const dead = engineIds.map((engineId) => host.deadEngine(engineId));
    if (dead.every(Boolean)) {
      return engineIds.map((engineId, i) => ({ engineId, error: dead[i]! }));
    }
    if (Date.now() >= expires) {
      return all((engineId) => new ResultNotFoundError(id, engineId));
    }
    if (closing.aborted) {
      return all(() => new TransportClosedError("Cannot get result: the client is closed"));
    }
    await pauseFor(Math.min(pause, Math.max(1, expires - Date.now())), closing);
    pause = Math.min(POLL_MAX_MS, pause * 2);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pauseFor(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
