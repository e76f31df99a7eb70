/**
 * The error classes of deno-parallel. Each carries its data as fields and, where there is one,
 * the underlying error as `cause`.
 *
 * @module
 */

/**
 * A value cannot be sent: it is found on the sender's side, before anything is written.
 *
 * @example A value the codec cannot carry
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, SerializationError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * await assert.rejects(async () => await client.view(0).push({ s: Symbol("s") }), SerializationError);
 * ```
 */
export class SerializationError extends TypeError {
  /** Where the bad value sits in what was sent, e.g. `$.args[1].callback`. */
  readonly path: string;
  /** Makes the error for the bad value at `path`, `reason` saying what is wrong with it. */
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`Cannot serialize value at ${path}: ${reason}`, options);
    this.name = "SerializationError";
    this.path = path;
  }
}

/**
 * An entry that is not a valid message of this cluster: undecodable, unsigned or wrongly signed.
 *
 * @example What a dead-lettered entry says
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidMessageError } from "./mod.ts";
 *
 * const error = new InvalidMessageError("jobs:inbox:engine.0", "1-0", "bad signature");
 * assert.equal(error.entryId, "1-0");
 * ```
 */
export class InvalidMessageError extends Error {
  /** The stream the entry was read from. */
  readonly stream: string;
  /** The transport's id of the entry. */
  readonly entryId: string;
  /** Makes the error for entry `entryId` of `stream`, `reason` saying what is wrong with it. */
  constructor(stream: string, entryId: string, reason: string, options?: ErrorOptions) {
    super(`Cannot accept entry ${entryId} of stream "${stream}": ${reason}`, options);
    this.name = "InvalidMessageError";
    this.stream = stream;
    this.entryId = entryId;
  }
}

/**
 * The transport is closed, or lost its server and could not get it back in time.
 *
 * @example A call after the client closed
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, TransportClosedError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.close();
 * await assert.rejects(async () => await client.view(0).apply(() => 1), TransportClosedError);
 * ```
 */
export class TransportClosedError extends Error {
  /** Makes the error with `message`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransportClosedError";
  }
}

/**
 * The transport's server refused a call: Redis answered it with an error instead of doing it. It
 * is out of memory at its `maxmemory` (`OOM`), the ACL user of the URL may not run the command or
 * touch the key (`NOPERM`), a key holds a value of another type (`WRONGTYPE`), or it could not
 * parse what it was sent (`ERR Protocol error`). The transport stays usable: once the cause is
 * gone (memory freed, the permission granted), the next call works.
 *
 * @example Tell a refusal from other failures
 * ```ts
 * import { TransportRefusedError } from "./mod.ts";
 *
 * const error = new TransportRefusedError(
 *   'append to stream "t1:inbox:engine.0"',
 *   ["t1:inbox:engine.0"],
 *   "OOM command not allowed when used memory > 'maxmemory'.",
 *   "127.0.0.1:6379",
 * );
 * if (error instanceof TransportRefusedError && error.code === "OOM") {
 *   console.log(`Redis is full: ${error.message}`);
 * }
 * ```
 */
export class TransportRefusedError extends Error {
  /** What the transport was asked to do, e.g. `append to stream "t1:inbox:engine.0"`. */
  readonly operation: string;
  /** The keys (streams and values) the refused call was about; empty when not known one by one. */
  readonly keys: readonly string[];
  /** The server's answer, e.g. `OOM command not allowed when used memory > 'maxmemory'.` */
  readonly reply: string;
  /** The answer's first word, its kind: `"OOM"`, `"NOPERM"`, `"WRONGTYPE"`, `"ERR"`, … */
  readonly code: string;
  /** The server that refused, as `host:port`. */
  readonly server: string;
  /** Makes the error for `operation` on `keys`, which the server at `server` refused with `reply`. */
  constructor(
    operation: string,
    keys: readonly string[],
    reply: string,
    server: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot ${operation}: Redis at ${server} refused it: ${reply}`, options);
    this.name = "TransportRefusedError";
    this.operation = operation;
    this.keys = [...keys];
    this.reply = reply;
    this.code = /^\S+/.exec(reply)?.[0] ?? "";
    this.server = server;
  }
}

/**
 * The cluster was stopped (`cluster.stop()`, or the end of its `await using` scope): its client
 * and views can no longer be used, and a stopped cluster cannot be started again (make a new
 * `Cluster`). A `TransportClosedError`, since the cluster's transport is closed with it.
 *
 * @example A call after the cluster stopped
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, ClusterStoppedError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * await cluster.stop();
 * await assert.rejects(async () => await client.view(0).apply(() => 1), ClusterStoppedError);
 * ```
 */
export class ClusterStoppedError extends TransportClosedError {
  /** The stopped cluster's name (its namespace). */
  readonly cluster: string;
  /** Makes the error for `action` (e.g. `"apply"`) on stopped cluster `cluster`. */
  constructor(action: string, cluster: string, options?: ErrorOptions) {
    super(`Cannot ${action}: cluster "${cluster}" was stopped`, options);
    this.name = "ClusterStoppedError";
    this.cluster = cluster;
  }
}

/**
 * A cluster was asked to start while it is starting or running (a second `start()` or
 * `startAndConnect()`): the running cluster is left as it is.
 *
 * @example Starting a running cluster again
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, ClusterStateError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * await assert.rejects(cluster.start(), ClusterStateError);
 * assert.equal(await client.view(0).apply(() => "still running"), "still running");
 * ```
 */
export class ClusterStateError extends Error {
  /** The cluster's name (its namespace). */
  readonly cluster: string;
  /** Makes the error for `action` on cluster `cluster`, `reason` saying what state it is in. */
  constructor(action: string, cluster: string, reason: string, options?: ErrorOptions) {
    super(`Cannot ${action} cluster "${cluster}": ${reason}`, options);
    this.name = "ClusterStateError";
    this.cluster = cluster;
  }
}

/**
 * A cluster was started on a namespace that another running cluster holds (on the same Redis or
 * embedded transport): it is refused before it starts anything, and the other cluster's streams
 * and values are left as they are. Choose another namespace, or leave it out for a random one.
 *
 * @example What a refused start says
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClusterStateError, NamespaceInUseError } from "./mod.ts";
 *
 * const error = new NamespaceInUseError("jobs", "redis://127.0.0.1:6379");
 * assert.ok(error instanceof ClusterStateError);
 * assert.equal(error.cluster, "jobs");
 * ```
 */
export class NamespaceInUseError extends ClusterStateError {
  /** Makes the error for cluster `cluster` on the transport at `url` (password hidden). */
  constructor(cluster: string, url: string, options?: ErrorOptions) {
    super(
      "start",
      cluster,
      `another running cluster holds the namespace "${cluster}" on ${url}; choose another ` +
        "namespace (or none, for a random one)",
      options,
    );
    this.name = "NamespaceInUseError";
  }
}

/**
 * A deadline passed before the awaited answer came.
 *
 * @example A task that takes longer than the call's timeout
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, TimeoutError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * const slow = () => new Promise((resolve) => setTimeout(resolve, 2_000));
 * const error = await client.view(0).applyWith({ timeout: 50 }, slow).get().catch((e) => e);
 * assert.ok(error instanceof TimeoutError);
 * assert.deepEqual(error.engineIds, [0]);
 * ```
 */
export class TimeoutError extends Error {
  /** The deadline, in milliseconds, that passed. */
  readonly timeoutMs: number;
  /** The engines that had not answered, when the wait was for engines. */
  readonly engineIds: readonly number[];
  /** Makes the error: `message`, the deadline that passed, the engines that had not answered. */
  constructor(
    message: string,
    timeoutMs: number,
    engineIds: readonly number[] = [],
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "TimeoutError";
    this.timeoutMs = timeoutMs;
    this.engineIds = engineIds;
  }
}

/**
 * What an error raised on an engine looks like once it has crossed the wire.
 *
 * @example The data of a thrown error, as it crosses the wire
 * ```ts
 * import assert from "node:assert/strict";
 * import { RemoteError, type RemoteErrorData } from "./mod.ts";
 *
 * const data: RemoteErrorData = { name: "RangeError", message: "too big", properties: { code: 7 } };
 * assert.equal(new RemoteError(2, data).remoteName, "RangeError");
 * ```
 */
export interface RemoteErrorData {
  /** The remote error's `name`, e.g. `"RangeError"`. */
  name: string;
  /** The remote error's message. */
  message: string;
  /** The remote error's stack, as the engine printed it. */
  stack?: string;
  /**
   * The own properties the remote error carried whose values are strings, finite numbers,
   * booleans or `null` (e.g. `code`, `status`, `errno`); others are left behind.
   */
  properties?: Record<string, string | number | boolean | null>;
}

/**
 * A task or handler threw on an engine or another actor.
 *
 * @example An error a task threw on an engine
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, RemoteError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * const error = await client.view(0).apply(() => {
 *   throw new RangeError("too big");
 * }).get().catch((e) => e);
 * assert.ok(error instanceof RemoteError);
 * assert.equal(error.remoteName, "RangeError");
 * assert.equal(error.engineId, 0);
 * ```
 */
export class RemoteError extends Error {
  /** The engine the task ran on, or -1 when the failing actor is not an engine. */
  readonly engineId: number;
  /** The address of the actor that failed, e.g. `"engine.3"`. */
  readonly address: string;
  /** The `name` of the error the task threw, e.g. `"ReferenceError"`. */
  readonly remoteName: string;
  /** The message of the error the task threw. */
  readonly remoteMessage: string;
  /** The stack of the error the task threw, as the engine printed it. */
  readonly remoteStack: string;
  /**
   * The own properties of the error the task threw that are plain values (`code`, `status`, …):
   * `throw Object.assign(new Error("gone"), { code: "ENOENT" })` gives `{ code: "ENOENT" }`.
   */
  readonly remoteProperties: Readonly<Record<string, string | number | boolean | null>>;
  /** Makes the error of engine `engineId` (-1 for other actors, named by `address`). */
  constructor(engineId: number, data: RemoteErrorData, address?: string, options?: ErrorOptions) {
    const where = engineId >= 0 ? `engine ${engineId}` : `actor "${address}"`;
    super(`Task failed on ${where}: ${data.name}: ${data.message}`, options);
    this.name = "RemoteError";
    this.engineId = engineId;
    this.address = address ?? `engine.${engineId}`;
    this.remoteName = data.name;
    this.remoteMessage = data.message;
    this.remoteStack = data.stack ?? "";
    const properties = data.properties;
    this.remoteProperties = typeof properties === "object" && properties !== null &&
        !Array.isArray(properties)
      ? { ...properties }
      : {};
  }
}

/**
 * One task of a load-balanced `map` (or `apply`) failed: the item at `index` threw on engine
 * `engineId`. A `RemoteError`, so code that catches those catches these too.
 *
 * @example
 * ```ts ignore
 * const ar = client.loadBalancedView().map((x: number) => {
 *   if (x === 3) throw new RangeError("no threes");
 *   return x;
 * }, [1, 2, 3]);
 * const values = await ar.get({ returnExceptions: true }); // [1, 2, TaskError]
 * console.log((values[2] as TaskError).index); // 2
 * ```
 */
export class TaskError extends RemoteError {
  /** The position of the failed item in the map's input (0 for `apply`). */
  readonly index: number;
  /** Makes the error of item `index`, which threw `data` on engine `engineId`. */
  constructor(index: number, engineId: number, data: RemoteErrorData, options?: ErrorOptions) {
    super(engineId, data, undefined, options);
    this.name = "TaskError";
    this.index = index;
    this.message = `Task ${index} failed on engine ${engineId}: ${data.name}: ${data.message}`;
  }
}

/**
 * An engine died (its host crashed, exited or was killed) while it owed an answer.
 *
 * @example A call on a killed engine
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, EngineDiedError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * cluster.kill(1);
 * const error = await client.view(1).apply(() => 1).get().catch((e) => e);
 * assert.ok(error instanceof EngineDiedError);
 * assert.equal(error.engineId, 1);
 * ```
 */
export class EngineDiedError extends Error {
  /** The engine that died. */
  readonly engineId: number;
  /** Makes the error for engine `engineId`, `reason` saying how it died. */
  constructor(engineId: number, reason: string, options?: ErrorOptions) {
    super(`Engine ${engineId} died: ${reason}`, options);
    this.name = "EngineDiedError";
    this.engineId = engineId;
  }
}

/**
 * The transport's server lost what it held (Redis restarted without persistence, or was flushed)
 * while an answer was awaited: the task, or its answer, may be gone, so the answer may never come.
 * The task may still have run. Later calls work as usual.
 *
 * @example What a lost answer says
 * ```ts
 * import assert from "node:assert/strict";
 * import { TransportDataLostError } from "./mod.ts";
 *
 * const error = new TransportDataLostError(3, "Redis restarted without its data");
 * assert.equal(error.address, "engine.3");
 * ```
 */
export class TransportDataLostError extends Error {
  /** The engine whose answer was awaited, or -1 when the awaited actor is not an engine. */
  readonly engineId: number;
  /** The address of the actor whose answer was awaited, e.g. `"engine.3"`. */
  readonly address: string;
  /** What the transport found, e.g. `Redis at 127.0.0.1:6379 restarted without its data (…)`. */
  readonly reason: string;
  /**
   * Makes the error for the answer awaited from engine `engineId` (-1 for other actors, named by
   * `address`), `reason` saying what the transport found.
   */
  constructor(engineId: number, reason: string, address?: string, options?: ErrorOptions) {
    const from = engineId >= 0 ? `engine ${engineId}` : `actor "${address}"`;
    super(`Cannot get answer from ${from}: ${reason}`, options);
    this.name = "TransportDataLostError";
    this.engineId = engineId;
    this.address = address ?? `engine.${engineId}`;
    this.reason = reason;
  }
}

/**
 * A task was cancelled on its engine before it started: its call was aborted (`ar.abort()`, or the
 * call's `signal`) while the task was still queued behind others.
 *
 * @example A call aborted while it waited behind another
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, TaskAbortedError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.view(0);
 * const running = view.apply(() => new Promise((resolve) => setTimeout(resolve, 300)));
 * const queued = view.apply(() => "never runs");
 * queued.abort();
 * await running.get();
 * assert.ok(await queued.get().catch((e) => e) instanceof TaskAbortedError);
 * ```
 */
export class TaskAbortedError extends Error {
  /** The engine the task was queued on. */
  readonly engineId: number;
  /** Makes the error for the task queued on engine `engineId`. */
  constructor(engineId: number, options?: ErrorOptions) {
    super(`Task aborted on engine ${engineId}: the call was aborted before it started`, options);
    this.name = "TaskAbortedError";
    this.engineId = engineId;
  }
}

/**
 * No stored result answers a call id: the id was never a call of this cluster, or the call's
 * results outlived their retention (`ClusterOptions.resultRetention`) and were deleted.
 *
 * @example An id no call has
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, ResultNotFoundError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 1, progress: false });
 * const client = await cluster.startAndConnect();
 * await assert.rejects(client.getResult("no-such-call"), ResultNotFoundError);
 * ```
 */
export class ResultNotFoundError extends Error {
  /** The call id that was looked up (an `AsyncResult.id`). */
  readonly id: string;
  /** The engine whose result is missing, when the call itself was found. */
  readonly engineId?: number;
  /** Makes the error for call `id` (and, when only its result is missing, engine `engineId`). */
  constructor(id: string, engineId?: number, options?: ErrorOptions) {
    super(
      engineId === undefined
        ? `Cannot get result of call "${id}": no such call, or its results expired`
        : `Cannot get result of call "${id}" on engine ${engineId}: it expired or was never stored`,
      options,
    );
    this.name = "ResultNotFoundError";
    this.id = id;
    if (engineId !== undefined) this.engineId = engineId;
  }
}

/**
 * Several engines failed in one call: `errors` holds each engine's error, in engine order.
 *
 * @example Every engine of a call failed
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, CompositeError } from "./mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const error = await client.view().apply(() => {
 *   throw new Error("no");
 * }).get().catch((e) => e);
 * assert.ok(error instanceof CompositeError);
 * assert.equal(error.errors.length, 2);
 * ```
 */
export class CompositeError extends AggregateError {
  /** The engines that failed, in the order of `errors`. */
  readonly engineIds: readonly number[];
  /** Makes the error from each failed engine's error, in engine order. */
  constructor(errors: readonly (Error & { engineId?: number })[], options?: ErrorOptions) {
    const lines = errors.map((e) => `  [engine ${engineOf(e) ?? "?"}] ${describe(e)}`);
    super(
      errors,
      `${errors.length} engine${errors.length === 1 ? "" : "s"} failed:\n${lines.join("\n")}`,
      options,
    );
    this.name = "CompositeError";
    this.engineIds = errors.map((e) => engineOf(e) ?? -1);
  }
}

/** The engine an error is about: its `engineId`, or the one engine a `TimeoutError` names. */
function engineOf(e: Error & { engineId?: number }): number | undefined {
  if (e.engineId !== undefined) return e.engineId;
  if (e instanceof TimeoutError && e.engineIds.length === 1) return e.engineIds[0];
  return undefined;
}

function describe(e: Error): string {
  const m = e instanceof RemoteError
    ? `${e.remoteName}: ${e.remoteMessage}`
    : `${e.name}: ${e.message}`;
  return m.split("\n", 1)[0];
}
