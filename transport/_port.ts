/**
 * How a Worker reaches the embedded broker of its parent: {@linkcode servePort} answers calls on
 * the parent's side of a `MessagePort`, {@linkcode PortTransport} makes them on the Worker's.
 * Calls and answers of one turn of the event loop cross in one message, and large values cross in
 * a `SharedArrayBuffer`.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { TransportClosedError } from "../errors.ts";
import { type Broker, isShared } from "./_broker.ts";
import type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";

type Method =
  | "append"
  | "appendMany"
  | "read"
  | "ack"
  | "claim"
  | "claimFrom"
  | "range"
  | "backlog"
  | "trim"
  | "trimAcknowledged"
  | "putBlob"
  | "putBlobIfAbsent"
  | "getBlob"
  | "deleteBlobs"
  | "deletePrefix";
interface PortRequest {
  i: number;
  m: Method;
  a: unknown[];
}
interface PortReply {
  i: number;
  r?: unknown;
  /** The error's message and name. */
  e?: string;
  n?: string;
}

/**
 * Answers, on `port`, the calls of the {@linkcode PortTransport} at its other end with `broker`.
 * A reader passes the same stream list read after read: the port keeps the last one it was sent.
 */
export function servePort(broker: Broker, port: MessagePort): void {
  const send = batched<PortReply>((replies) => port.postMessage(replies));
  let list: string[] = [];
  port.onmessage = (event: MessageEvent<PortRequest[]>) => {
    for (const { i, m, a } of event.data) {
      try {
        if (m === "read") {
          if (a[2] === null) a[2] = list;
          else list = a[2] as string[];
        }
        const r = call(broker, m, a);
        if (r instanceof Promise) {
          r.then((r) => send({ i, r }), (e) => send({ i, ...failure(e) }));
        } else send({ i, r });
      } catch (error) {
        send({ i, ...failure(error) });
      }
    }
    // What could be answered at once goes now, before the microtasks this message set off run
    // (the client settling the answers just appended, on the embedded transport): a host's
    // engines wait for these reads.
    send.flush();
  };
}

// deno-lint-ignore no-explicit-any
function call(broker: Broker, method: Method, a: any[]): unknown {
  switch (method) {
    case "append":
      return broker.append(a[0], a[1], a[2]);
    case "appendMany":
      return (a[0] as { stream: string; data: Uint8Array }[]).map((e) =>
        broker.append(e.stream, e.data, a[1])
      );
    case "read":
      return broker.readAtOnce(a[0], a[1], a[2], a[3] ?? {}) ??
        broker.read(a[0], a[1], a[2], a[3] ?? {});
    case "ack":
      return broker.ack(a[0], a[1], a[2]);
    case "claim":
      return broker.claim(a[0], a[1], a[2], a[3], a[4] ?? 100);
    case "claimFrom":
      return broker.claimFrom(a[0], a[1], a[2], a[3], a[4] ?? 100);
    case "range":
      return broker.range(a[0], a[1] ?? "-", a[2] ?? Infinity);
    case "backlog":
      return broker.backlog(a[0], a[1]);
    case "trim":
      return broker.trim(a[0], a[1]);
    case "trimAcknowledged":
      return broker.trimAcknowledged(a[0], a[1]);
    case "putBlob":
      return broker.putBlob(a[0], a[1], a[2]);
    case "putBlobIfAbsent":
      return broker.putBlobIfAbsent(a[0], a[1], a[2]);
    case "getBlob":
      return broker.getBlob(a[0]);
    case "deleteBlobs":
      return broker.deleteBlobs(a[0]);
    case "deletePrefix":
      return broker.deletePrefix(a[0]);
  }
}

/** An error of the broker, as it crosses the port. */
function failure(error: unknown): { e: string; n: string } {
  return error instanceof Error
    ? { e: error.message, n: error.name }
    : { e: String(error), n: "Error" };
}

/** The broker's error on this side of the port: of the same class, for the errors it throws. */
function portError(message: string, name = "Error"): Error {
  switch (name) {
    case "RangeError":
      return new RangeError(message);
    case "TypeError":
      return new TypeError(message);
    case "TransportClosedError":
      return new TransportClosedError(message);
    default:
      return new Error(message);
  }
}

/**
 * From this size on, the bytes a Worker writes cross the port in a `SharedArrayBuffer`: copied
 * once there, then stored and handed to the reading Worker without the port copying them again
 * (a structured clone copies them once to send and once to receive, each way).
 */
const SHARE_BYTES = 64 * 1024;

/** `bytes`, or a copy of them in shared memory when they are large. */
function shareable(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength < SHARE_BYTES || isShared(bytes)) return bytes;
  if (typeof SharedArrayBuffer !== "function") return bytes; // a runtime without it: the port copies
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  shared.set(bytes);
  return shared;
}

/**
 * `bytes`, copied out of shared memory if they are in it: a reader decodes what it owns, and what
 * it decodes (a `Uint8Array` in a message is a view of the message's bytes) is its own.
 */
function privateBytes(bytes: Uint8Array | null): Uint8Array | null {
  return bytes !== null && isShared(bytes) ? bytes.slice() : bytes;
}

/** The entries, those in shared memory copied out of it (see {@linkcode privateBytes}). */
function privateEntries(entries: StreamEntry[]): StreamEntry[] {
  return entries.map((e) =>
    e.data !== null && isShared(e.data) ? { ...e, data: e.data.slice() } : e
  );
}

/**
 * Collects the items passed in one turn of the event loop and hands them over in one batch; an
 * item passed with `now` goes at once, with those collected before it.
 */
function batched<T>(
  flush: (items: T[]) => void,
): ((item: T, now?: boolean) => void) & { flush: () => void } {
  let items: T[] = [];
  const flushAll = () => {
    if (items.length === 0) return;
    const batch = items;
    items = [];
    flush(batch);
  };
  return Object.assign((item: T, now = false) => {
    // After the microtasks of this turn: the answers of every engine of a host that finished in
    // it go in one message (a microtask would send one per engine), a few µs later. But the
    // microtasks of a turn can be long (a host's engines passing a large value down the tree
    // one after another), and a large write is worth a message of its own: it goes at once.
    if (items.push(item) === 1 && !now) setImmediate(flushAll);
    if (now) flushAll();
  }, { flush: flushAll });
}

/** A Worker's handle on a `MemoryTransport` of its parent, reached through a `MessagePort`. */
export class PortTransport implements Transport {
  readonly url = "memory:";
  #port: MessagePort;
  #next = 0;
  #calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #closed = false;
  #send: (request: PortRequest, now?: boolean) => void;
  #lastStreams: readonly string[] | undefined;

  constructor(port: MessagePort) {
    this.#port = port;
    this.#send = batched<PortRequest>((requests) => {
      if (!this.#closed) this.#port.postMessage(requests);
    });
    port.onmessage = (event: MessageEvent<PortReply[]>) => {
      for (const { i, r, e, n } of event.data) {
        const call = this.#calls.get(i);
        if (!call) continue;
        this.#calls.delete(i);
        if (e !== undefined) call.reject(portError(e, n));
        else call.resolve(r);
      }
    };
  }

  #call<T>(m: Method, ...a: unknown[]): Promise<T> {
    return this.#callNow(false, m, ...a);
  }

  #callNow<T>(now: boolean, m: Method, ...a: unknown[]): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new TransportClosedError("Cannot use transport: it is closed"));
    }
    const i = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#calls.set(i, { resolve: resolve as (v: unknown) => void, reject });
      this.#send({ i, m, a }, now);
    });
  }

  append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    const bytes = shareable(data);
    return this.#callNow(isShared(bytes), "append", stream, bytes, options);
  }
  appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    const shared = entries.map((e) => ({ stream: e.stream, data: shareable(e.data) }));
    return this.#callNow(shared.some((e) => isShared(e.data)), "appendMany", shared, options);
  }
  read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options?: ReadOptions,
  ): Promise<StreamEntry[]> {
    // A reader passes the same list read after read: send it once, then `null` for "the same".
    const sent = streams === this.#lastStreams ? null : streams;
    this.#lastStreams = streams;
    return this.#call<StreamEntry[]>("read", group, consumer, sent, options).then(privateEntries);
  }
  ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    return this.#call("ack", stream, group, ids);
  }
  claim(
    streams: string | readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count?: number,
  ): Promise<StreamEntry[]> {
    return this.#call<StreamEntry[]>("claim", streams, group, consumer, minIdleMs, count)
      .then(privateEntries);
  }
  claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count?: number,
  ): Promise<StreamEntry[]> {
    return this.#call<StreamEntry[]>("claimFrom", stream, group, owner, consumer, count)
      .then(privateEntries);
  }
  range(stream: string, start?: string, count?: number): Promise<StreamEntry[]> {
    return this.#call<StreamEntry[]>("range", stream, start, count).then(privateEntries);
  }
  backlog(stream: string, group: string): Promise<number> {
    return this.#call("backlog", stream, group);
  }
  trim(stream: string, maxLen: number): Promise<void> {
    return this.#call("trim", stream, maxLen);
  }
  trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    return this.#call("trimAcknowledged", stream, retainMs);
  }
  putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    return this.#call("putBlob", key, shareable(data), ttlMs);
  }
  putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    return this.#call("putBlobIfAbsent", key, shareable(data), ttlMs);
  }
  getBlob(key: string): Promise<Uint8Array | null> {
    return this.#call<Uint8Array | null>("getBlob", key).then(privateBytes);
  }
  deleteBlobs(keys: readonly string[]): Promise<void> {
    return this.#call("deleteBlobs", keys);
  }
  deletePrefix(prefix: string): Promise<void> {
    return this.#call("deletePrefix", prefix);
  }
  onDataLost(_listener: (reason: string) => void): () => void {
    return () => {};
  }
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#port.close();
      const error = new TransportClosedError("Cannot use transport: it is closed");
      for (const call of this.#calls.values()) call.reject(error);
      this.#calls.clear();
    }
    return Promise.resolve();
  }
}
