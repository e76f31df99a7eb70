/**
 * What engines answer: the result of one task on one engine, and how long hosts keep it.
 *
 * @module
 */
import type { RemoteErrorData } from "../../errors.ts";

/**
 * The outcome of one task on one engine, with its timing and captured output.
 *
 * @example What an engine printed for a call
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const ar = client.view(0).apply(() => console.log("hi"));
 * await ar.get();
 * assert.deepEqual(ar.stdout, ["hi\n"]);
 * ```
 */
export interface EngineResult {
  /** The engine that ran the task. */
  engineId: number;
  /** The task's value, when it succeeded. */
  value?: unknown;
  /** What the task threw, when it failed. */
  error?: RemoteErrorData;
  /** What the task printed with `console.log`/`info`/`debug`. */
  stdout: string;
  /** What the task printed with `console.error`/`warn`. */
  stderr: string;
  /** When the client sent the task (ms since the epoch, client's clock). */
  submitted: number;
  /** When the engine started it (engine's clock). */
  started: number;
  /** When the engine finished it (engine's clock). */
  completed: number;
  /** When the client stopped waiting, when the call had a timeout (ms since the epoch). */
  deadline?: number;
  /**
   * Set when the engine did not let the task run to its end: `"abort"` when the call was aborted
   * before the task started (`error` is then a `TaskAbortedError`), `"deadline"` when the
   * call's deadline passed before it started or while it ran (`error` is a `TimeoutError`).
   */
  cancelled?: "abort" | "deadline";
}

/** One item's outcome in the value of a `map` task: its value, or what it threw. */
export type MapItemResult = { value: unknown } | { error: RemoteErrorData };

/** Results are kept this long (ms) by default: see `ClusterOptions.resultRetention`. */
export const DEFAULT_RESULT_RETENTION_MS = 60 * 60_000;
