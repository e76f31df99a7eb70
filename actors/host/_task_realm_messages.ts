// The messages between a sandboxed engine host and its task realm (`_task_realm.ts`, the host's
// side; `_task_realm_worker.ts`, the realm's), over the realm Worker's port. Values travel encoded
// with the wire codec.
import type { RemoteErrorData } from "../../errors.ts";
import type { ReduceOptions, TreeStats } from "./tree_communicator.ts";

/** What a task of the realm does: an engine message's, or wiring `com`. */
export type RealmOp = "apply" | "map" | "execute" | "push" | "pull" | "clear" | "wire";

/** What the realm's `com` knows of its engine's place in the tree (see `TreeCommunicator`). */
export interface RealmWiring {
  id: number;
  parent: number | null;
  children: number[];
  root: number;
  tree: [number, number | null][];
  rank: number;
  size: number;
  address: string;
  stats: TreeStats;
}

/** Messages from the host. */
export type ToRealm =
  | { type: "start"; size: number; clock: SharedArrayBuffer }
  | { type: "resize"; size: number }
  | {
    type: "task";
    call: number;
    engineId: number;
    op: RealmOp;
    /** The content, encoded. */
    content: Uint8Array;
    deadline?: number;
  }
  | { type: "combine"; call: number; token: number; a: Uint8Array; b: Uint8Array }
  | {
    type: "reduced";
    call: number;
    value?: Uint8Array;
    error?: RemoteErrorData;
    stats?: TreeStats;
  };

/** Messages to the host. */
export type FromRealm =
  | { type: "started" }
  | {
    type: "done";
    call: number;
    value?: Uint8Array;
    error?: RemoteErrorData;
    stdout: string[];
    stderr: string[];
  }
  | { type: "combined"; call: number; value?: Uint8Array; error?: RemoteErrorData }
  | {
    type: "reduce";
    call: number;
    engineId: number;
    all: boolean;
    token: number;
    value: Uint8Array;
    options: ReduceOptions;
  }
  | { type: "uncaught"; message: string };

/** An error with the name, message, stack and properties of `data`. */
export function errorFrom(data: RemoteErrorData): Error {
  const error = Object.assign(new Error(data.message), data.properties ?? {});
  error.name = data.name;
  if (data.stack) error.stack = data.stack;
  return error;
}
