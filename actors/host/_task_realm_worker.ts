// The task realm of a sandboxed engine host: a Worker with exactly the permissions granted to the
// tasks, holding the namespaces of the host's engines. It runs what the host sends it (contents
// encoded with the wire codec, blobs already read) and answers with the encoded value or error and
// what the task printed. It holds no key, no transport and no connection: a task that patches
// globals here (`node:net`, `node:crypto`, …) patches only this realm's.
import { workerScope } from "./_worker_scope.ts";
import { decodeValue, encodeValue } from "../../transport/codec.ts";
import { Namespace } from "./engine_namespace.ts";
import { errorData } from "../core/system.ts";
import type { ReduceOptions, TreeStats } from "./tree_communicator.ts";
import {
  errorFrom,
  type FromRealm,
  type RealmOp,
  type RealmWiring,
  type ToRealm,
} from "./_task_realm_messages.ts";
import { Reference } from "../protocol/wire_types.ts";
import { guardHost } from "./_host_guard.ts";
import { HostClock } from "../_liveness.ts";
import { captureConsole, currentOutput, type Output, withOutput } from "./_output_capture.ts";

const post = (message: FromRealm) => workerScope.postMessage(message);

guardHost({
  uncaught: (message) => post({ type: "uncaught", message }),
  replace: (refuse) => {
    Object.defineProperty(workerScope, "close", {
      configurable: true,
      value: () => refuse("self.close()"),
    });
  },
});
captureConsole();

let size = 0;
let clock: HostClock | undefined;
const namespaces = new Map<number, Namespace>();
const reducers = new Map<number, { f: Reducer; output: Output | undefined }>();
const asked = new Map<number, (reply: ToRealm & { type: "reduced" }) => void>();
let tokens = 0;
let calls = 0;

// deno-lint-ignore no-explicit-any
type Reducer = (a: any, b: any) => unknown;

function namespaceOf(engineId: number): Namespace {
  let namespace = namespaces.get(engineId);
  if (!namespace) namespaces.set(engineId, namespace = fresh(engineId));
  return namespace;
}

function fresh(engineId: number): Namespace {
  return new Namespace({ id: engineId, rank: engineId, size });
}

/** Runs `fn`, a task's own code, with its deadline on the host clock (see `HostClock`). */
function blocking<T>(engineId: number, deadline: number | undefined, fn: () => T): T {
  return clock ? clock.running(engineId, deadline, fn) : fn();
}

async function perform(
  engineId: number,
  op: RealmOp,
  content: Record<string, unknown>,
  deadline: number | undefined,
): Promise<unknown> {
  const namespace = namespaceOf(engineId);
  const resolve = async (value: unknown): Promise<unknown> => {
    if (value instanceof Reference) {
      if (!Object.hasOwn(namespace.values, value.name)) {
        throw new ReferenceError(`${value.name} is not defined`);
      }
      return namespace.values[value.name];
    }
    return await namespace.materialize(value);
  };
  switch (op) {
    case "apply": {
      const fn = await resolve(content.fn);
      if (typeof fn !== "function") throw new TypeError("Cannot apply: not a function");
      const args = await Promise.all((content.args as unknown[]).map(resolve));
      return await blocking(engineId, deadline, () => fn(...args));
    }
    case "map": {
      const fn = await resolve(content.fn);
      if (typeof fn !== "function") throw new TypeError("Cannot map: not a function");
      const out = [];
      for (const args of content.items as unknown[][]) {
        try {
          out.push({ value: await fn(...await Promise.all(args.map(resolve))) });
        } catch (error) {
          out.push({ error: errorData(error) });
        }
      }
      return out;
    }
    case "execute":
      return await blocking(engineId, deadline, () => namespace.execute(content.code as string));
    case "push":
      for (const [name, value] of Object.entries(content.values as Record<string, unknown>)) {
        namespace.values[name] = await resolve(value);
      }
      return undefined;
    case "pull":
      return (content.names as string[]).map((name) => {
        if (!Object.hasOwn(namespace.values, name)) {
          throw new ReferenceError(`${name} is not defined`);
        }
        return namespace.values[name];
      });
    case "clear":
      namespaces.set(engineId, fresh(engineId));
      return undefined;
    case "wire":
      namespace.values.com = new RealmCommunicator(content as unknown as RealmWiring);
      return undefined;
  }
}

/**
 * `com` in a realm's namespace: a `TreeCommunicator` whose reductions run on the host's, which
 * asks this realm to combine values with `f`.
 */
class RealmCommunicator {
  readonly id: number;
  readonly parent: number | null;
  readonly children: readonly number[];
  readonly root: number;
  readonly tree: Map<number, number | null>;
  readonly rank: number;
  readonly size: number;
  readonly address: string;
  #stats: TreeStats;

  constructor(wiring: RealmWiring) {
    this.id = wiring.id;
    this.parent = wiring.parent;
    this.children = wiring.children;
    this.root = wiring.root;
    this.tree = new Map(wiring.tree);
    this.rank = wiring.rank;
    this.size = wiring.size;
    this.address = wiring.address;
    this.#stats = wiring.stats;
  }

  get isRoot(): boolean {
    return this.parent === null;
  }

  /** What the host's communicator measured, as of the last reduction here. */
  get stats(): TreeStats {
    return { ...this.#stats };
  }

  reduce<T>(f: (a: T, b: T) => T, value: unknown, options: ReduceOptions = {}): Promise<T> {
    return this.#ask(f, value, options, false) as Promise<T>;
  }

  allreduce<T>(f: (a: T, b: T) => T, value: unknown, options: ReduceOptions = {}): Promise<T> {
    return this.#ask(f, value, options, true) as Promise<T>;
  }

  async #ask(f: Reducer, value: unknown, options: ReduceOptions, all: boolean): Promise<unknown> {
    if (typeof f !== "function") throw new TypeError("Cannot reduce: f must be a function");
    const token = ++tokens;
    reducers.set(token, { f, output: currentOutput() });
    try {
      const call = ++calls;
      const reply = new Promise<ToRealm & { type: "reduced" }>((r) => asked.set(call, r));
      const { flat, ordered, timeout } = options;
      post({
        type: "reduce",
        call,
        engineId: this.id,
        all,
        token,
        value: encodeValue(value),
        options: { flat, ordered, timeout },
      });
      const answer = await reply;
      if (answer.stats) this.#stats = answer.stats;
      if (answer.error) throw errorFrom(answer.error);
      return decodeValue(answer.value!);
    } finally {
      reducers.delete(token);
    }
  }
}

async function runTask(message: ToRealm & { type: "task" }): Promise<void> {
  const output: Output = { stdout: [], stderr: [] };
  const { call, engineId, op, deadline } = message;
  try {
    const content = decodeValue(message.content) as Record<string, unknown>;
    const value = await withOutput(output, () => perform(engineId, op, content, deadline));
    post({ type: "done", call, value: encodeValue(value), ...snapshot(output) });
  } catch (error) {
    post({ type: "done", call, error: errorData(error), ...snapshot(output) });
  }
}

function snapshot(output: Output): Output {
  return { stdout: [...output.stdout], stderr: [...output.stderr] };
}

async function combine(message: ToRealm & { type: "combine" }): Promise<void> {
  const { call, token } = message;
  try {
    const reducer = reducers.get(token);
    if (!reducer) throw new Error(`Cannot combine: reduction ${token} is over`);
    const a = decodeValue(message.a);
    const b = decodeValue(message.b);
    const value = await (reducer.output
      ? withOutput(reducer.output, () => reducer.f(a, b))
      : reducer.f(a, b));
    post({ type: "combined", call, value: encodeValue(value) });
  } catch (error) {
    post({ type: "combined", call, error: errorData(error) });
  }
}

workerScope.onmessage = (event: MessageEvent<ToRealm>) => {
  const message = event.data;
  switch (message.type) {
    case "start":
      size = message.size;
      clock = new HostClock(message.clock);
      clock.start();
      post({ type: "started" });
      break;
    case "resize":
      for (const namespace of namespaces.values()) {
        if (namespace.values.size === size) namespace.values.size = message.size;
      }
      size = message.size;
      break;
    case "task":
      void runTask(message);
      break;
    case "combine":
      void combine(message);
      break;
    case "reduced":
      asked.get(message.call)?.(message);
      asked.delete(message.call);
      break;
  }
};
