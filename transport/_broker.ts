/**
 * The in-memory broker behind {@linkcode MemoryTransport}: streams, consumer groups, pending lists,
 * claims and trims, with the semantics of Redis Streams, and the id math they need.
 *
 * @module
 */
import type { AppendOptions, ReadOptions, StreamEntry } from "./types.ts";

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
export class Broker {
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

  append(name: string, data: Uint8Array, options: AppendOptions = {}): string {
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
    if (options.maxLen !== undefined) this.trimApproximately(name, options.maxLen);
    if (options.maxAgeMs !== undefined) {
      const old = lowerBound(s, `${now - options.maxAgeMs}-0`);
      if (old > 0) this.cut(s, s.entries.length - old);
    }
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

  /**
   * What {@linkcode read} answers without waiting: the entries there are, or `undefined` when
   * the read would block until an append.
   */
  readAtOnce(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions,
  ): StreamEntry[] | undefined {
    const from = options.from ?? ">";
    const entries = this.readNow(group, consumer, streams, options.count ?? 100, from);
    const blockMs = options.blockMs ?? 1000;
    if (entries.length > 0 || from === "0" || blockMs <= 0 || streams.length === 0) {
      return entries;
    }
    return undefined;
  }

  read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions,
  ): Promise<StreamEntry[]> {
    const entries = this.readAtOnce(group, consumer, streams, options);
    if (entries !== undefined) return Promise.resolve(entries);
    const count = options.count ?? 100;
    const blockMs = options.blockMs ?? 1000;
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
    streams: string | readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count: number,
  ): StreamEntry[] {
    if (typeof streams !== "string") {
      return streams.flatMap((stream) => this.claim(stream, group, consumer, minIdleMs, count));
    }
    const stream = streams;
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

/** Whether `bytes` live in a `SharedArrayBuffer` (a Worker's large write, see `_port.ts`). */
export function isShared(bytes: Uint8Array): boolean {
  return typeof SharedArrayBuffer === "function" && bytes.buffer instanceof SharedArrayBuffer;
}
