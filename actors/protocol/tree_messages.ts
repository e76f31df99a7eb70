/**
 * What the engines of a reduction tree send each other: values going up and down the tree, and
 * the abort that carries why a reduction failed.
 *
 * @module
 */
import type { RemoteErrorData } from "../../errors.ts";

/** A value on its way up or down, or an empty list's lack of one. */
export interface Carried {
  empty: boolean;
  value?: unknown;
  /** Whether the value belongs to the reduction alone: no caller's variable holds it. */
  owned?: boolean;
}

/** The content of `up` and `down` messages. */
export interface ValueMessage extends Carried {
  wiring: string;
  seq: number;
  from: number;
}

/** Why a reduction failed, as it travels in an `abort` message. */
export type Cause =
  | { kind: "died"; engineId: number; message: string }
  | { kind: "timeout"; engineIds: number[]; timeoutMs: number; message: string }
  | { kind: "error"; engineId: number; error: RemoteErrorData };

/** The content of `abort` messages. */
export interface AbortMessage {
  wiring: string;
  seq: number;
  from: number;
  cause: Cause;
}
