/**
 * The engine actor: owns a namespace and runs the tasks sent to its inbox (`execute`, `apply`,
 * `push`, `pull`, `clear`), capturing what they print.
 *
 * @module
 */
import { TaskAbortedError, TimeoutError } from "../../errors.ts";
import type { Transport } from "../../transport/types.ts";
import { readBlob } from "../blob.ts";
import { type ActorContext, type ActorDefinition, defineActor } from "../core/actor.ts";
import { Namespace } from "./engine_namespace.ts";
import { errorData } from "../core/system.ts";
import { TreeCommunicator } from "./tree_communicator.ts";
import { hostClock } from "../_liveness.ts";
import { captureConsole, type Output, withOutput } from "./_output_capture.ts";
import type { TaskRealm } from "./_task_realm.ts";
import { BlobRef, FunctionSource, ModuleFunction, Reference } from "../protocol/wire_types.ts";
import type { EngineQueueStatus } from "../protocol/queue_status.ts";
import type { ApplyContent, MapContent, TreeWiring } from "../protocol/messages.ts";
import {
  DEFAULT_RESULT_RETENTION_MS,
  type EngineResult,
  type MapItemResult,
} from "../protocol/results.ts";
import { callOfTask, resultKey } from "../protocol/addresses.ts";

/** Options of {@linkcode engineActor}. */
export interface EngineOptions {
  /** The engine's id. */
  id: number;
  /** The number of engines in the cluster: the default `size` in the namespace. */
  size: number;
  /** The transport, for fetching values stored as blobs. */
  transport: Transport;
  /** Extra values every namespace starts with (e.g. the tree communicator). */
  extras?: () => Record<string, unknown>;
  /**
   * How long (ms) the engine keeps each task's answer in the transport, for clients that fetch
   * it by call id (`client.getResult`). 0 keeps nothing. Default 1 hour.
   */
  resultRetentionMs?: number;
  /**
   * Run the tasks in this task realm (a sandboxed engine's) instead of this thread: the namespace
   * lives there (`Engine.namespace` stays empty), and what tasks see of this thread is nothing.
   */
  realm?: TaskRealm;
}

/** An engine: the actor definition and the namespace it runs tasks in. */
export interface Engine {
  /** The engine's id. */
  readonly id: number;
  /** The engine's namespace. */
  readonly namespace: Namespace;
  /**
   * Makes `size` the cluster's size: the default of later namespaces, and of the current one
   * where `size` still holds the old default (a value pushed there stays).
   */
  resize(size: number): void;
  /** The actor to spawn under `engine.<id>`. */
  readonly definition: ActorDefinition;
}

/** Makes an engine actor. */
export function engineActor(options: EngineOptions): Engine {
  captureConsole();
  const { id, transport, realm } = options;
  let size = options.size;
  const defaults = () => ({ id, rank: id, size, ...options.extras?.() });
  let namespace = new Namespace(defaults());

  const resolve = async (value: unknown): Promise<unknown> => {
    if (value instanceof BlobRef) {
      value = await readBlob(transport, value);
    }
    if (value instanceof Reference) {
      if (!Object.hasOwn(namespace.values, value.name)) {
        throw new ReferenceError(`${value.name} is not defined`);
      }
      return namespace.values[value.name];
    }
    return await namespace.materialize(value);
  };

  const retention = options.resultRetentionMs ?? DEFAULT_RESULT_RETENTION_MS;
  if (!(retention >= 0) || !Number.isFinite(retention)) {
    throw new RangeError(
      `Cannot make engine ${id}: resultRetentionMs must be a finite number ≥ 0, got ${retention}`,
    );
  }
  /**
   * Keeps the answer to the message being handled, signed, for `client.getResult`, when the answer
   * leaves this host; not when it goes to an actor here (a broadcast node here keeps the answers
   * of its range).
   */
  const keep = (ctx: ActorContext) => {
    const { replyTo } = ctx.envelope;
    if (retention > 0 && replyTo !== undefined && !ctx.system.deliversLocally(replyTo)) {
      ctx.keepReply(resultKey(ctx.system.namespace, ctx.envelope.id), retention);
    }
  };

  /** Runs `fn`, a task's own code, with its deadline on the host clock (see `HostClock`). */
  const blocking = <T>(ctx: ActorContext, fn: () => T): T =>
    hostClock ? hostClock.running(id, ctx.envelope.deadline, fn) : fn();

  const aborted = new Set<string>();
  const tasks = { running: 0, completed: 0 };
  const run = async (ctx: ActorContext, task: () => unknown): Promise<EngineResult> => {
    tasks.running++;
    try {
      return await runTask(ctx, task);
    } finally {
      tasks.running--;
      tasks.completed++;
    }
  };
  const runTask = async (ctx: ActorContext, task: () => unknown): Promise<EngineResult> => {
    const { sent, deadline } = ctx.envelope;
    const output: Output = { stdout: [], stderr: [] };
    const started = Date.now();
    const result: EngineResult = {
      engineId: id,
      stdout: "",
      stderr: "",
      submitted: sent,
      started,
      completed: started,
      ...(deadline !== undefined ? { deadline } : {}),
    };
    try {
      const call = callOfTask(ctx.envelope.id);
      if (aborted.delete(ctx.envelope.id) || (call !== undefined && aborted.has(call))) {
        result.cancelled = "abort";
        throw new TaskAbortedError(id);
      }
      if (deadline !== undefined && started >= deadline) {
        result.cancelled = "deadline";
        throw new TimeoutError(
          `Task timed out on engine ${id}: its deadline (${deadline - sent} ms) passed while it ` +
            "was queued, so it was not started",
          deadline - sent,
          [id],
        );
      }
      const work = Promise.resolve(withOutput(output, task));
      if (deadline === undefined) result.value = await work;
      else {
        const finished = await untilDeadline(work, deadline);
        if (!finished) {
          // A task cannot be stopped from outside: it goes on in the background, its value and
          // its later output are dropped, and the engine moves on to the next task.
          result.cancelled = "deadline";
          throw new TimeoutError(
            `Task timed out on engine ${id}: it did not finish within its deadline ` +
              `(${deadline - sent} ms); the engine stopped waiting for it`,
            deadline - sent,
            [id],
          );
        }
        result.value = finished.value;
      }
    } catch (error) {
      result.error = errorData(error);
    }
    result.completed = Date.now();
    result.stdout = output.stdout.length ? output.stdout.join("\n") + "\n" : "";
    result.stderr = output.stderr.length ? output.stderr.join("\n") + "\n" : "";
    return result;
  };

  const definition = defineActor({
    handlers: {
      apply: (content: ApplyContent, ctx) => {
        keep(ctx);
        checkApply(content);
        if (realm) return run(ctx, () => realm.run(id, "apply", content, ctx.envelope.deadline));
        return run(ctx, async () => {
          const fn = await resolve(content.fn);
          if (typeof fn !== "function") throw new TypeError("Cannot apply: not a function");
          const args = await Promise.all(content.args.map(resolve));
          return await blocking(ctx, () => fn(...args));
        });
      },
      map: (content: MapContent, ctx) => {
        keep(ctx);
        checkMap(content);
        if (realm) return run(ctx, () => realm.run(id, "map", content, ctx.envelope.deadline));
        return run(ctx, async () => {
          const fn = await resolve(content.fn);
          if (typeof fn !== "function") throw new TypeError("Cannot map: not a function");
          const out: MapItemResult[] = [];
          for (const args of content.items) {
            try {
              out.push({ value: await fn(...await Promise.all(args.map(resolve))) });
            } catch (error) {
              out.push({ error: errorData(error) });
            }
          }
          return out;
        });
      },
      execute: (content: { code: string }, ctx) => {
        keep(ctx);
        if (!isRecord(content) || typeof content.code !== "string") {
          throw new TypeError("Cannot execute: content must be { code: string }");
        }
        if (realm) return run(ctx, () => realm.run(id, "execute", content, ctx.envelope.deadline));
        return run(ctx, () => blocking(ctx, () => namespace.execute(content.code)));
      },
      push: (content: { values: Record<string, unknown> }, ctx) => {
        keep(ctx);
        if (!isRecord(content) || !isRecord(content.values) || Array.isArray(content.values)) {
          throw new TypeError("Cannot push: content must be { values: { name: value } }");
        }
        if (realm) return run(ctx, () => realm.run(id, "push", content, ctx.envelope.deadline));
        return run(ctx, async () => {
          for (const [name, value] of Object.entries(content.values)) {
            namespace.values[name] = await resolve(value);
          }
        });
      },
      pull: (content: { names: string[] }, ctx) => {
        keep(ctx);
        if (
          !isRecord(content) || !Array.isArray(content.names) ||
          !content.names.every((name) => typeof name === "string")
        ) {
          throw new TypeError("Cannot pull: content must be { names: string[] }");
        }
        if (realm) return run(ctx, () => realm.run(id, "pull", content, ctx.envelope.deadline));
        return run(ctx, () =>
          content.names.map((name) => {
            if (!Object.hasOwn(namespace.values, name)) {
              throw new ReferenceError(`${name} is not defined`);
            }
            return namespace.values[name];
          }));
      },
      clear: (_: unknown, ctx) => {
        keep(ctx);
        if (realm) return run(ctx, () => realm.run(id, "clear", {}, ctx.envelope.deadline));
        return run(ctx, () => {
          namespace = new Namespace(defaults());
        });
      },
      wireTree: (content: TreeWiring, ctx) => {
        checkWiring(content);
        return run(ctx, async () => {
          const com = await TreeCommunicator.wire(ctx.system, id, content);
          if (realm) return await realm.wire(id, com);
          namespace.values.com = com;
        });
      },
    },
    control: {
      ping: () => ({ id, at: Date.now() }),
      status: (_: unknown, ctx): EngineQueueStatus => ({
        queued: ctx.system.queueLength(ctx.self),
        ...tasks,
      }),
      abort: (content: { id: string }) => {
        if (!isRecord(content) || typeof content.id !== "string") {
          throw new TypeError("Cannot abort: content must be { id: string }");
        }
        // An abort that arrives after its task ran is never consumed: bound what they cost.
        if (aborted.size >= 10_000) aborted.clear();
        aborted.add(content.id);
      },
    },
  });
  return {
    id,
    get namespace() {
      return namespace;
    },
    resize(next) {
      if (namespace.values.size === size) namespace.values.size = next;
      size = next;
    },
    definition,
  };
}

/**
 * Waits for `work` until `deadline` (ms since the epoch): `{ value }` when it finished in time,
 * `undefined` when the deadline passed first. Rejects when `work` rejects in time; a rejection
 * after the deadline is dropped (it must not end the host as an unhandled rejection).
 */
async function untilDeadline<T>(
  work: Promise<T>,
  deadline: number,
): Promise<{ value: T } | undefined> {
  const finished = work.then((value) => ({ value }));
  finished.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    // Re-armed in steps: a timer longer than 2^31 - 1 ms would fire at once.
    const arm = () => {
      const left = deadline - Date.now();
      if (left <= 0) resolve(undefined);
      else timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
    };
    arm();
  });
  try {
    return await Promise.race([finished, late]);
  } finally {
    clearTimeout(timer);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/**
 * Checks the shape of an `apply` message before anything runs: a message that is not a task
 * (sent by a foreign or buggy client) fails as a whole with `TypeError`, unlike a task that throws.
 */
function checkApply(content: ApplyContent): void {
  if (!isRecord(content)) throw new TypeError("Cannot apply: content must be { fn, args }");
  const fn: unknown = content.fn;
  if (
    !(fn instanceof FunctionSource || fn instanceof ModuleFunction || fn instanceof Reference ||
      fn instanceof BlobRef)
  ) {
    throw new TypeError(
      "Cannot apply: fn must be a FunctionSource, ModuleFunction, Reference or BlobRef",
    );
  }
  if (fn instanceof FunctionSource && typeof fn.source !== "string") {
    throw new TypeError("Cannot apply: fn.source must be a string");
  }
  if (
    fn instanceof ModuleFunction &&
    (typeof fn.url !== "string" || typeof fn.exportName !== "string")
  ) {
    throw new TypeError("Cannot apply: fn.url and fn.exportName must be strings");
  }
  if (!Array.isArray(content.args)) throw new TypeError("Cannot apply: args must be an array");
}

/** Checks the shape of a `map` message, as {@linkcode checkApply} does for `apply`. */
function checkMap(content: MapContent): void {
  if (!isRecord(content)) throw new TypeError("Cannot map: content must be { fn, items }");
  checkApply({ fn: content.fn, args: [] });
  if (!Array.isArray(content.items) || !content.items.every(Array.isArray)) {
    throw new TypeError("Cannot map: items must be an array of argument lists");
  }
}

/** Checks the shape of a `wireTree` message (see `TreeWiring`). */
function checkWiring(content: TreeWiring): void {
  const ok = isRecord(content) && typeof content.wiring === "string" &&
    Array.isArray(content.ids) && content.ids.every((n) => Number.isInteger(n)) &&
    Array.isArray(content.tree) &&
    content.tree.every((pair) =>
      Array.isArray(pair) && pair.length === 2 && Number.isInteger(pair[0]) &&
      (pair[1] === null || Number.isInteger(pair[1]))
    ) &&
    typeof content.heartbeatMs === "number" && typeof content.livenessMs === "number" &&
    typeof content.measureBacklog === "boolean";
  if (!ok) throw new TypeError("Cannot wire tree: content is not a tree wiring");
}
