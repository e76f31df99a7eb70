/**
 * The embedded transport: streams, consumer groups, pending lists and claims held in the memory
 * of one process, with the semantics of Redis Streams. Workers of the same process reach it
 * through a `MessagePort` ({@linkcode MemoryTransport.openPort} and
 * {@linkcode MemoryTransport.fromPort}).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { TransportClosedError } from "../errors.ts";
import type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";

interface Entry {
  id: string;
  data: Uint8Array;
}

interface Pending {
  consumer: string;
  deliveries: number;
  deliveredAt: number;
}

interface Group {
  /** Index into `Stream.entries` (offset by `Stream.dropped`) of the next undelivered entry. */
  next: number;
  pending: Map<string, Pending>;
}

interface Stream {
  entries: Entry[];
  /** How many entries were trimmed from the front. */
  dropped: number;
  lastMs: number;
  lastSeq: number;
  groups: Map<string, Group>;
}

interface Waiter {
  group: string;
  consumer: string;
  streams: ReadonlySet<string>;
  count: number;
  resolve: (entries: StreamEntry[]) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Streams held in this process's memory, shared by every `MemoryTransport` made from it. */
class Broker {
  readonly streams = new Map<string, Stream>();
  readonly blobs = new Map<string, { data: Uint8Array; expires: number }>();
  readonly waiters = new Set<Waiter>();
  /** When `putBlob` next drops the expired values (ms since the epoch). */
  #nextSweep = 0;

  stream(name: string): Stream {
    let s = this.streams.get(name);
    if (!s) {
      s = { entries: [], dropped: 0, lastMs: 0, lastSeq: 0, groups: new Map() };
      this.streams.set(name, s);
    }
    return s;
  }

  append(name: string, data: Uint8Array, maxLen?: number): string {
    const s = this.stream(name);
    const now = Date.now();
    if (now > s.lastMs) {
      s.lastMs = now;
      s.lastSeq = 0;
    } else {
      s.lastSeq++;
    }
    const id = `${s.lastMs}-${s.lastSeq}`;
    // Shared memory is a copy a Worker made for the stream alone; other bytes are the caller's.
    s.entries.push({ id, data: isShared(data) ? data : data.slice() });
    if (maxLen !== undefined) this.trimApproximately(name, maxLen);
    this.wake(name);
    return id;
  }

  /** Trims `name` to `maxLen` entries. */
  trim(name: string, maxLen: number): void {
    const s = this.streams.get(name);
    if (!s || s.entries.length <= maxLen) return;
    this.cut(s, maxLen);
  }

  /**
   * Trims `name` to about `maxLen` entries, as `MAXLEN ~` does: in batches, so that each
   * append to a full stream does not shift the whole array.
   */
  trimApproximately(name: string, maxLen: number): void {
    const s = this.streams.get(name);
    if (!s || s.entries.length <= maxLen + Math.max(64, maxLen >> 3)) return;
    this.cut(s, maxLen);
  }

  cut(s: Stream, maxLen: number): void {
    const cut = s.entries.length - maxLen;
    s.entries.splice(0, cut);
    s.dropped += cut;
  }

  trimAcknowledged(name: string, retainMs: number): number {
    const s = this.streams.get(name);
    if (!s || s.groups.size === 0) return 0;
    // The index (counting trimmed entries) of the first entry some group still needs.
    let keep = s.dropped + s.entries.length;
    for (const g of s.groups.values()) {
      keep = Math.min(keep, Math.max(g.next, s.dropped));
      for (const id of g.pending.keys()) keep = Math.min(keep, s.dropped + lowerBound(s, id));
    }
    const cutoff = Date.now() - retainMs;
    let cut = 0;
    while (cut < keep - s.dropped && idMs(s.entries[cut].id) <= cutoff) cut++;
    s.entries.splice(0, cut);
    s.dropped += cut;
    return cut;
  }

  group(s: Stream, name: string): Group {
    let g = s.groups.get(name);
    if (!g) {
      g = { next: s.dropped, pending: new Map() };
      s.groups.set(name, g);
    }
    return g;
  }

  readNow(
    group: string,
    consumer: string,
    streams: readonly string[],
    count: number,
    from: ">" | "0",
  ): StreamEntry[] {
    const out: StreamEntry[] = [];
    const now = Date.now();
    for (const name of streams) {
      const s = this.stream(name);
      const g = this.group(s, group);
      if (from === "0") {
        let n = 0;
        for (const [id, p] of g.pending) {
          if (p.consumer !== consumer) continue;
          if (n++ >= count) break;
          p.deliveries++; // as XREADGROUP does when it re-reads a pending entry
          p.deliveredAt = now;
          out.push({ stream: name, id, data: this.find(s, id), deliveries: p.deliveries });
        }
        continue;
      }
      g.next = Math.max(g.next, s.dropped);
      for (let n = 0; n < count && g.next - s.dropped < s.entries.length; n++) {
        const e = s.entries[g.next - s.dropped];
        g.next++;
        g.pending.set(e.id, { consumer, deliveries: 1, deliveredAt: now });
        out.push({ stream: name, id: e.id, data: e.data, deliveries: 1 });
      }
    }
    return out;
  }

  find(s: Stream, id: string): Uint8Array | null {
    return s.entries.find((e) => e.id === id)?.data ?? null;
  }

  wake(stream: string): void {
    for (const w of this.waiters) {
      if (!w.streams.has(stream)) continue;
      // The waiter's other streams had nothing when it began waiting, and an append to any of
      // them would have woken it: only `stream` can have entries.
      const entries = this.readNow(w.group, w.consumer, [stream], w.count, ">");
      if (entries.length === 0) continue;
      this.waiters.delete(w);
      clearTimeout(w.timer);
      w.resolve(entries);
    }
  }

  read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions,
  ): Promise<StreamEntry[]> {
    const count = options.count ?? 100;
    const from = options.from ?? ">";
    const entries = this.readNow(group, consumer, streams, count, from);
    const blockMs = options.blockMs ?? 1000;
    if (entries.length > 0 || from === "0" || blockMs <= 0 || streams.length === 0) {
      return Promise.resolve(entries);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        group,
        consumer,
        streams: new Set(streams),
        count,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          resolve([]);
        }, blockMs),
      };
      this.waiters.add(waiter);
    });
  }

  ack(stream: string, group: string, ids: readonly string[]): void {
    const g = this.streams.get(stream)?.groups.get(group);
    for (const id of ids) g?.pending.delete(id);
  }

  claim(
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    count: number,
  ): StreamEntry[] {
    const s = this.streams.get(stream);
    const g = s?.groups.get(group);
    if (!s || !g) return [];
    const now = Date.now();
    const out: StreamEntry[] = [];
    for (const [id, p] of g.pending) {
      if (out.length >= count) break;
      if (now - p.deliveredAt < minIdleMs) continue;
      const data = this.find(s, id);
      if (data === null) {
        g.pending.delete(id); // trimmed away, as XAUTOCLAIM drops deleted entries
        continue;
      }
      p.consumer = consumer;
      p.deliveries++;
      p.deliveredAt = now;
      out.push({ stream, id, data, deliveries: p.deliveries });
    }
    return out;
  }

  claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count: number,
  ): StreamEntry[] {
    const s = this.streams.get(stream);
    const g = s?.groups.get(group);
    if (!s || !g) return [];
    const now = Date.now();
    const out: StreamEntry[] = [];
    for (const [id, p] of g.pending) {
      if (out.length >= count) break;
      if (p.consumer !== owner) continue;
      const data = this.find(s, id);
      if (data === null) {
        g.pending.delete(id); // trimmed away, as XCLAIM drops deleted entries
        continue;
      }
      p.consumer = consumer;
      p.deliveries++;
      p.deliveredAt = now;
      out.push({ stream, id, data, deliveries: p.deliveries });
    }
    return out;
  }

  range(stream: string, start: string, count: number): StreamEntry[] {
    const s = this.streams.get(stream);
    if (!s) return [];
    const from = start === "-" ? -1 : start;
    return s.entries
      .filter((e) => from === -1 || compareIds(e.id, from as string) >= 0)
      .slice(0, count)
      .map((e) => ({ stream, id: e.id, data: e.data, deliveries: 0 }));
  }

  backlog(stream: string, group: string): number {
    const s = this.streams.get(stream);
    if (!s) return 0;
    const g = s.groups.get(group);
    if (!g) return s.entries.length;
    return g.pending.size + Math.max(0, s.entries.length - (g.next - s.dropped));
  }

  /**
   * Stores `data` under `key` for `ttlMs`. At most once a second, first drops every expired value:
   * values nobody reads again (kept results, most of them) would otherwise stay forever.
   */
  putBlob(key: string, data: Uint8Array, ttlMs: number): void {
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Cannot store value "${key}": ttlMs must be positive, got ${ttlMs}`);
    }
    const now = Date.now();
    if (now >= this.#nextSweep) {
      this.#nextSweep = now + 1000;
      for (const [k, blob] of this.blobs) if (blob.expires <= now) this.blobs.delete(k);
    }
    this.blobs.set(key, { data, expires: now + ttlMs });
  }

  putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): boolean {
    if (this.getBlob(key) !== null) return false;
    this.putBlob(key, data, ttlMs);
    return true;
  }

  getBlob(key: string): Uint8Array | null {
    const blob = this.blobs.get(key);
    if (!blob) return null;
    if (blob.expires <= Date.now()) {
      this.blobs.delete(key);
      return null;
    }
    return blob.data;
  }

  deleteBlobs(keys: readonly string[]): void {
    for (const key of keys) this.blobs.delete(key);
  }

  deletePrefix(prefix: string): void {
    if (prefix === "") throw new RangeError("Cannot delete by prefix: the prefix is empty");
    for (const key of this.streams.keys()) if (key.startsWith(prefix)) this.streams.delete(key);
    for (const key of this.blobs.keys()) if (key.startsWith(prefix)) this.blobs.delete(key);
  }

  rejectWaiters(error: Error): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    this.waiters.clear();
  }
}

/** The index in `s.entries` of the first entry whose id is `id` or later. */
function lowerBound(s: Stream, id: string): number {
  let lo = 0;
  let hi = s.entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareIds(s.entries[mid].id, id) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The time part of an entry id, in ms since the epoch. */
function idMs(id: string): number {
  return Number(id.slice(0, id.indexOf("-")));
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

/** The embedded transport: Redis Streams semantics in this process's memory. */
export class MemoryTransport implements Transport {
  readonly url = "memory:";
  #broker: Broker;
  #owner: boolean;
  #closed = false;
  #ports = new Set<MessagePort>();

  /** A transport over new, empty streams; `share` gives another handle on the same streams. */
  constructor(share?: MemoryTransport) {
    this.#broker = share ? share.#broker : new Broker();
    this.#owner = !share;
  }

  #open(): Broker {
    if (this.#closed) throw new TransportClosedError("Cannot use transport: it is closed");
    return this.#broker;
  }

  append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    try {
      return Promise.resolve(this.#open().append(stream, data, options?.maxLen));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    try {
      const broker = this.#open();
      return Promise.resolve(entries.map((e) => broker.append(e.stream, e.data, options?.maxLen)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions = {},
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().read(group, consumer, streams, options));
  }

  async ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    await this.#open().ack(stream, group, ids);
  }

  async claim(
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    count = 100,
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().claim(stream, group, consumer, minIdleMs, count));
  }

  async claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count = 100,
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().claimFrom(stream, group, owner, consumer, count));
  }

  async range(stream: string, start = "-", count = Infinity): Promise<StreamEntry[]> {
    return copies(await this.#open().range(stream, start, count));
  }

  async backlog(stream: string, group: string): Promise<number> {
    return await this.#open().backlog(stream, group);
  }

  async trim(stream: string, maxLen: number): Promise<void> {
    await this.#open().trim(stream, maxLen);
  }

  async trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    return await this.#open().trimAcknowledged(stream, retainMs);
  }

  async putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    await this.#open().putBlob(key, data.slice(), ttlMs);
  }

  async putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    return await this.#open().putBlobIfAbsent(key, data.slice(), ttlMs);
  }

  async getBlob(key: string): Promise<Uint8Array | null> {
    return (await this.#open().getBlob(key))?.slice() ?? null;
  }

  async deleteBlobs(keys: readonly string[]): Promise<void> {
    await this.#open().deleteBlobs(keys);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#open().deletePrefix(prefix);
  }

  /** Never calls `listener`: the streams live as long as this process. */
  onDataLost(_listener: (reason: string) => void): () => void {
    return () => {};
  }

  /** Closes this handle; closing the handle that made the streams also ends every blocked read. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const port of this.#ports) port.close();
      this.#ports.clear();
      if (this.#owner) {
        this.#broker.rejectWaiters(
          new TransportClosedError("Cannot read: the transport was closed while waiting"),
        );
      }
    }
    return Promise.resolve();
  }

  /**
   * Returns a port through which a Worker of this process reaches the same streams: transfer it
   * to the worker and call {@linkcode MemoryTransport.fromPort} there.
   */
  openPort(): MessagePort {
    const broker = this.#open();
    const { port1, port2 } = new MessageChannel();
    this.#ports.add(port1);
    const send = batched<PortReply>((replies) => port1.postMessage(replies));
    let list: string[] = [];
    port1.onmessage = (event: MessageEvent<PortRequest[]>) => {
      for (const { i, m, a } of event.data) {
        try {
          if (m === "read") {
            if (a[2] === null) a[2] = list;
            else list = a[2] as string[];
          }
          const r = servePort(broker, m, a);
          if (r instanceof Promise) {
            r.then((r) => send({ i, r }), (e) => send({ i, ...failure(e) }));
          } else send({ i, r });
        } catch (error) {
          send({ i, ...failure(error) });
        }
      }
    };
    return port2;
  }

  /** A transport over the streams of the `MemoryTransport` that opened `port`. */
  static fromPort(port: MessagePort): Transport {
    return new PortTransport(port);
  }
}

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

// deno-lint-ignore no-explicit-any
function servePort(broker: Broker, method: Method, a: any[]): unknown {
  switch (method) {
    case "append":
      return broker.append(a[0], a[1], a[2]?.maxLen);
    case "appendMany":
      return (a[0] as { stream: string; data: Uint8Array }[]).map((e) =>
        broker.append(e.stream, e.data, a[1]?.maxLen)
      );
    case "read":
      return broker.read(a[0], a[1], a[2], a[3] ?? {});
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

function isShared(bytes: Uint8Array): boolean {
  return typeof SharedArrayBuffer === "function" && bytes.buffer instanceof SharedArrayBuffer;
}

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

/**
 * The entries, each with a copy of its bytes: the stream's stay as they are, whatever the reader
 * does with its own.
 */
function copies(entries: StreamEntry[]): StreamEntry[] {
  return entries.map((e) => e.data === null ? e : { ...e, data: e.data.slice() });
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
function batched<T>(flush: (items: T[]) => void): (item: T, now?: boolean) => void {
  let items: T[] = [];
  const flushAll = () => {
    if (items.length === 0) return;
    const batch = items;
    items = [];
    flush(batch);
  };
  return (item, now = false) => {
    // After the microtasks of this turn: the answers of every engine of a host that finished in
    // it go in one message (a microtask would send one per engine), a few µs later. But the
    // microtasks of a turn can be long (a host's engines passing a large value down the tree
    // one after another), and a large write is worth a message of its own: it goes at once.
    if (items.push(item) === 1 && !now) setImmediate(flushAll);
    if (now) flushAll();
  };
}

/** A Worker's handle on a `MemoryTransport` of its parent, reached through a `MessagePort`. */
class PortTransport implements Transport {
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
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    count?: number,
  ): Promise<StreamEntry[]> {
    return this.#call<StreamEntry[]>("claim", stream, group, consumer, minIdleMs, count)
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
