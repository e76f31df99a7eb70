// The host's side of a sandboxed engine's task realm (see `_task_realm_worker.ts`): it starts the
// realm's Worker with exactly the tasks' permissions, reads the blobs a task names, sends the
// task encoded, hands back its value or error and output, and runs the realm's reductions on the
// host's tree communicators, asking the realm for each combine. The key, the transport and the
// heartbeat thread stay on this side.
import { EngineDiedError } from "../../errors.ts";
import { decodeValue, encodeValue } from "../../transport/codec.ts";
import type { Transport } from "../../transport/types.ts";
import { readBlob } from "../blob.ts";
import { errorData } from "../core/system.ts";
import type { TreeCommunicator } from "./tree_communicator.ts";
import { BlobRef } from "../protocol/wire_types.ts";
import { reportUncaught } from "./_host_guard.ts";
import { currentOutput } from "./_output_capture.ts";
import {
  errorFrom,
  type FromRealm,
  type RealmOp,
  type RealmWiring,
  type ToRealm,
} from "./_task_realm_messages.ts";

/** Options of {@linkcode TaskRealm.start}. */
export interface TaskRealmOptions {
  /** What the tasks may do, in the shape of a Worker's `deno.permissions`; omitted kinds are denied. */
  permissions: Deno.PermissionOptionsObject;
  /** The number of engines in the cluster: the `size` in the namespaces. */
  size: number;
  /** The host's `HostClock` buffer: the realm's event loop, where tasks run, ticks it. */
  clock: SharedArrayBuffer;
  /** The host's transport, for the blobs tasks name. */
  transport: Transport;
  /** The host's id, for errors. */
  hostId: string;
}

// Taken before the host's guard replaces `Worker` with one refusing `deno.permissions` for tasks.
const RealmWorker = globalThis.Worker;

/** A message to the realm before `#ask` numbers it. */
type Unnumbered<T> = T extends { call: number } ? Omit<T, "call"> : never;

const PERMISSION_KINDS = ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const;

/** A sandboxed engine host's task realm, seen from the host. */
export class TaskRealm {
  readonly #worker: Worker;
  readonly #transport: Transport;
  readonly #hostId: string;
  readonly #waiting = new Map<
    number,
    { engineId: number; resolve: (reply: FromRealm) => void; reject: (error: Error) => void }
  >();
  readonly #coms = new Map<number, TreeCommunicator>();
  #calls = 0;
  #ended: string | undefined;

  private constructor(worker: Worker, options: TaskRealmOptions) {
    this.#worker = worker;
    this.#transport = options.transport;
    this.#hostId = options.hostId;
  }

  /**
   * Starts a realm. Needs `--unstable-worker-options`: without it Deno ends the whole process here
   * (see `_host_guard.ts`).
   */
  static async start(options: TaskRealmOptions): Promise<TaskRealm> {
    const worker = new RealmWorker(new URL("./_task_realm_worker.ts", import.meta.url), {
      type: "module",
      deno: { permissions: realmPermissions(options.permissions) },
    });
    const realm = new TaskRealm(worker, options);
    const started = new Promise<void>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<FromRealm>) => {
        if (event.data.type === "started") resolve();
        realm.#receive(event.data);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`Cannot start the task realm: ${event.message}`));
        realm.#end(`its task realm failed: ${event.message}`);
      };
    });
    worker.postMessage(
      { type: "start", size: options.size, clock: options.clock } satisfies ToRealm,
    );
    try {
      await started;
    } catch (error) {
      worker.terminate();
      throw error;
    }
    return realm;
  }

  /**
   * Runs engine `engineId`'s task `op` with `content` (an engine message's, checked) in the realm:
   * resolves to its value, rejects with what it threw. What it printed joins the output of the
   * task running here.
   */
  async run(
    engineId: number,
    op: RealmOp,
    content: object,
    deadline?: number,
  ): Promise<unknown> {
    const bytes = encodeValue(await this.#readBlobs(op, content as Record<string, unknown>));
    const reply = await this.#ask(engineId, {
      type: "task",
      engineId,
      op,
      content: bytes,
      deadline,
    });
    if (reply.type !== "done") throw new TypeError(`Unexpected answer "${reply.type}"`);
    const output = currentOutput();
    output?.stdout.push(...reply.stdout);
    output?.stderr.push(...reply.stderr);
    if (reply.error) throw errorFrom(reply.error);
    return reply.value === undefined ? undefined : decodeValue(reply.value);
  }

  /** Makes `size` the cluster's size in the realm's namespaces (see `Engine.resize`). */
  resize(size: number): void {
    this.#worker.postMessage({ type: "resize", size } satisfies ToRealm);
  }

  /** Makes `com` of engine `engineId`'s namespace in the realm reduce on `com`. */
  async wire(engineId: number, com: TreeCommunicator): Promise<void> {
    this.#coms.set(engineId, com);
    const wiring: RealmWiring = {
      id: com.id,
      parent: com.parent,
      children: [...com.children],
      root: com.root,
      tree: [...com.tree],
      rank: com.rank,
      size: com.size,
      address: com.address,
      stats: com.stats,
    };
    await this.run(engineId, "wire", wiring);
  }

  /** Ends the realm; tasks still running in it fail. */
  close(): void {
    this.#end("its task realm was closed");
    this.#worker.terminate();
  }

  /** The realm's blobs are read here: it has no transport. */
  async #readBlobs(op: RealmOp, content: Record<string, unknown>): Promise<unknown> {
    const read = (value: unknown) =>
      value instanceof BlobRef ? readBlob(this.#transport, value) : value;
    if (op === "apply") {
      const { fn, args } = content as { fn: unknown; args: unknown[] };
      return { fn: await read(fn), args: await Promise.all(args.map(read)) };
    }
    if (op === "map") {
      const { fn, items } = content as { fn: unknown; items: unknown[][] };
      return {
        fn: await read(fn),
        items: await Promise.all(items.map((args) => Promise.all(args.map(read)))),
      };
    }
    if (op === "push") {
      const values: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(content.values as Record<string, unknown>)) {
        values[name] = await read(value);
      }
      return { values };
    }
    return content;
  }

  #ask(engineId: number, message: Unnumbered<ToRealm>): Promise<FromRealm> {
    if (this.#ended) {
      return Promise.reject(new EngineDiedError(engineId, this.#ended));
    }
    const call = ++this.#calls;
    const reply = new Promise<FromRealm>((resolve, reject) => {
      this.#waiting.set(call, { engineId, resolve, reject });
    });
    this.#worker.postMessage({ ...message, call });
    return reply;
  }

  #receive(message: FromRealm): void {
    switch (message.type) {
      case "done":
      case "combined":
        this.#waiting.get(message.call)?.resolve(message);
        this.#waiting.delete(message.call);
        break;
      case "reduce":
        void this.#reduce(message);
        break;
      case "uncaught":
        reportUncaught(message.message);
        break;
    }
  }

  /** Runs a reduction the realm asked for on the host's communicator of its engine. */
  async #reduce(message: FromRealm & { type: "reduce" }): Promise<void> {
    const { call, engineId, token } = message;
    const com = this.#coms.get(engineId);
    let answer: ToRealm & { type: "reduced" };
    try {
      if (!com) throw new TypeError(`Cannot reduce on engine ${engineId}: it was not wired`);
      const f = async (a: unknown, b: unknown) => {
        const reply = await this.#ask(engineId, {
          type: "combine",
          token,
          a: encodeValue(a),
          b: encodeValue(b),
        });
        if (reply.type !== "combined") throw new TypeError(`Unexpected answer "${reply.type}"`);
        if (reply.error) throw errorFrom(reply.error);
        return decodeValue(reply.value!);
      };
      const value = decodeValue(message.value);
      const total = message.all
        ? await com.allreduce(f, value, message.options)
        : await com.reduce(f, value, message.options);
      answer = { type: "reduced", call, value: encodeValue(total), stats: com.stats };
    } catch (error) {
      answer = { type: "reduced", call, error: errorData(error), stats: com?.stats };
    }
    if (!this.#ended) this.#worker.postMessage(answer);
  }

  #end(reason: string): void {
    if (this.#ended) return;
    this.#ended = `${reason} (engine host ${this.#hostId})`;
    for (const { engineId, reject } of this.#waiting.values()) {
      reject(new EngineDiedError(engineId, this.#ended));
    }
    this.#waiting.clear();
  }
}

/**
 * The realm's `deno.permissions`: `permissions`, every kind it omits denied, URLs as strings. A
 * library imported by URL may import from its own host.
 */
function realmPermissions(permissions: Deno.PermissionOptionsObject): Deno.PermissionOptionsObject {
  const result: Record<string, unknown> = {};
  for (const kind of PERMISSION_KINDS) {
    const value = permissions[kind];
    result[kind] = Array.isArray(value) ? value.map(String) : value ?? false;
  }
  const library = new URL(import.meta.url);
  if (
    (library.protocol === "http:" || library.protocol === "https:") &&
    result.import !== true && result.import !== "inherit"
  ) {
    result.import = [...(Array.isArray(result.import) ? result.import : []), library.host];
  }
  return result as Deno.PermissionOptionsObject;
}
