/**
 * The arithmetic of a tree reduction on one engine: folding a local list, combining two values
 * (and whether the result may travel without a copy), and a failure turned into the cause that
 * travels in an abort, and back.
 *
 * @module
 */
import { EngineDiedError, RemoteError, TimeoutError } from "../../errors.ts";
import { errorData } from "../core/system.ts";
import type { AbortMessage, Carried, Cause } from "../protocol/tree_messages.ts";

// deno-lint-ignore no-explicit-any
export type Reducer = (a: any, b: any) => unknown;

/** Folds a list locally; an empty list yields nothing to combine. */
export async function fold(f: Reducer, list: unknown, id: number): Promise<Carried> {
  if (list === null || typeof list !== "object" || !(Symbol.iterator in list)) {
    throw new TypeError(
      `Cannot reduce on engine ${id}: with flat: false the value must be a list, ` +
        `got ${typeof list}`,
    );
  }
  let acc: Carried = { empty: true };
  for (const item of list as Iterable<unknown>) {
    acc = await combine(f, acc, { empty: false, value: item });
  }
  return acc;
}

export async function combine(f: Reducer, a: Carried, b: Carried): Promise<Carried> {
  if (b.empty) return a;
  if (a.empty) return b;
  const value = await f(a.value, b.value);
  return { empty: false, value, owned: ownsResult(value, a, b) };
}

/**
 * Whether `result`, which `f` returned for `a` and `b`, belongs to the reduction alone: a typed
 * array or `ArrayBuffer` whose memory is not that of an input a caller still holds (the values
 * `f` changes in place and returns, say). Only then can it travel without a copy; any other
 * value is copied, as it always is.
 */
export function ownsResult(result: unknown, a: Carried, b: Carried): boolean {
  const memory = memoryOf(result);
  if (memory === undefined) return false;
  return [a, b].every((input) => {
    if (input.owned || typeof input.value !== "object" || input.value === null) return true;
    const theirs = memoryOf(input.value);
    return theirs !== undefined && theirs !== memory;
  });
}

export function memoryOf(value: unknown): ArrayBufferLike | undefined {
  if (ArrayBuffer.isView(value)) return value.buffer;
  if (value instanceof ArrayBuffer) return value;
  return undefined;
}

/** How a failure travels to the other participants. */
export function causeOf(error: Error, id: number): Cause {
  if (error instanceof EngineDiedError) {
    return { kind: "died", engineId: error.engineId, message: error.message };
  }
  if (error instanceof TimeoutError) {
    return {
      kind: "timeout",
      engineIds: [...error.engineIds],
      timeoutMs: error.timeoutMs,
      message: error.message,
    };
  }
  if (error instanceof RemoteError) {
    return {
      kind: "error",
      engineId: error.engineId,
      error: { name: error.remoteName, message: error.remoteMessage, stack: error.remoteStack },
    };
  }
  return { kind: "error", engineId: id, error: errorData(error) };
}

export function unwrap(carried: Carried): unknown {
  return carried.empty ? undefined : carried.value;
}

/** The error a participant fails with when an abort reaches it. */
export function causeError(message: AbortMessage): Error {
  const { cause } = message;
  switch (cause.kind) {
    case "died":
      return new EngineDiedError(
        cause.engineId,
        cause.message.replace(/^Engine \d+ died: /, ""),
      );
    case "timeout":
      return new TimeoutError(cause.message, cause.timeoutMs, cause.engineIds);
    case "error":
      return new RemoteError(cause.engineId, cause.error, `engine.${cause.engineId}`);
  }
}
