/**
 * The Redis Cluster transport: the streams of each namespace on the master that serves its hash
 * slot, reached through a {@linkcode RedisTransport} per master.
 *
 * @module
 */
import { TransportClosedError, TransportRefusedError } from "../errors.ts";
import { checkCount, checkDuration } from "./_redis_args.ts";
import { callerName, clusterKey, slotOf } from "./_cluster_keys.ts";
import { discoverSlots, type NodeAccess, type SlotMap } from "./_cluster_slots.ts";
import { type ClusterUrl, parseClusterUrl, redactUrl, safeDecode } from "./_url.ts";
import { RedisTransport, type RedisTransportOptions } from "./redis.ts";
import type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";

const DEFAULT_EPOCH_KEY = "deno-parallel:epoch";
/** How many times one call follows the cluster to a slot's new master. */
const MAX_REDIRECTS = 5;
const REDIRECT_PAUSE_MS = 100;

/**
 * A {@linkcode Transport} over a Redis Cluster, for `redis+cluster://` and `rediss+cluster://`
 * URLs.
 *
 * Each key `<namespace>:<rest>` is stored as `{<namespace>}:<rest>`: the hash tag puts all of one
 * namespace's keys in one slot, so one cluster's streams, values and leases live on one master,
 * and the multi-key commands and scripts of {@linkcode RedisTransport} work as on one server;
 * different namespaces spread over the masters. Names the transport returns (`StreamEntry.stream`)
 * are the caller's, without the tag. One call's keys must be of one namespace (a read of several
 * streams, a claim, a delete); a prefix to lease or delete must contain its namespace's `:`.
 *
 * Each master is reached through a `RedisTransport` of its own (a command connection and a
 * blocking one, opened on first use), with everything that transport guarantees within the
 * namespaces it serves. A call that the cluster answers with `MOVED` (its slot moved, or a
 * replica took over from a failed master), or that finds its master unreachable while the cluster
 * names another, asks the cluster for its slots again and is sent to the new master.
 *
 * @example Connect to a cluster
 * ```ts ignore
 * const transport = await RedisClusterTransport.connect(
 *   "redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7000",
 * );
 * await transport.append("demo:inbox", new TextEncoder().encode("hello"));
 * await transport.close();
 * ```
 */
export class RedisClusterTransport implements Transport {
  /** The cluster's URL, with any password replaced by `***`. */
  readonly url: string;
  readonly #options: RedisTransportOptions;
  readonly #access: NodeAccess;
  readonly #seeds: readonly string[];
  readonly #nodeQuery: string;
  #slots: SlotMap;
  #discovering: Promise<void> | undefined;
  /** The transport of each master, by `host:port`, as it connects. */
  readonly #nodes = new Map<string, Promise<RedisTransport>>();
  /** Leased prefixes (callers' names) and their lease time. */
  readonly #leases = new Map<string, number>();
  readonly #lostListeners = new Set<(reason: string) => void>();
  #closed = false;

  private constructor(
    url: string,
    parts: ClusterUrl,
    access: NodeAccess,
    slots: SlotMap,
    options: RedisTransportOptions,
  ) {
    this.url = redactUrl(url);
    this.#options = options;
    this.#access = access;
    this.#seeds = parts.seeds;
    this.#nodeQuery = parts.search;
    this.#slots = slots;
  }

  /**
   * Connects to the Redis Cluster that `url` names:
   * `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster://` for TLS, with
   * the `ca` query parameter of `RedisTransport.connect`). Any of the nodes listed is asked for
   * the cluster's slots; the masters are connected on first use. Rejects with `TypeError` for a
   * URL not of that form, and with {@linkcode TransportClosedError} when no listed node answers
   * within `connectTimeoutMs`.
   */
  static async connect(
    url: string,
    options: RedisTransportOptions = {},
  ): Promise<RedisClusterTransport> {
    const parts = parseClusterUrl(url);
    if (!parts) {
      throw new TypeError(
        `Cannot connect to Redis Cluster "${
          redactUrl(url)
        }": expected redis+cluster://[user:password@]host:port[,host:port…]`,
      );
    }
    if (parts.path !== "" && parts.path !== "/") {
      throw new TypeError("Cannot connect to Redis Cluster: a cluster has no database to choose");
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    checkDuration("connectTimeoutMs", connectTimeoutMs);
    const caFile = new URLSearchParams(parts.search).get("ca");
    let ca: string | undefined;
    if (caFile !== null) {
      try {
        ca = await Deno.readTextFile(caFile);
      } catch (error) {
        throw new TransportClosedError(
          `Cannot connect to ${redactUrl(url)}: cannot read CA file "${caFile}"`,
          { cause: error },
        );
      }
    }
    const scheme = parts.scheme.replace("+cluster", "");
    const userinfo = parts.username === "" && parts.password === ""
      ? ""
      : `${parts.username}${parts.password === "" ? "" : `:${parts.password}`}@`;
    const secrets = [parts.password, safeDecode(parts.password)].filter((s) => s !== "");
    const access: NodeAccess = {
      url: (address) => `${scheme}//${userinfo}${address}`,
      ca,
      scrub: (m) => secrets.reduce((s, secret) => s.replaceAll(secret, "***"), m),
    };
    let slots: SlotMap;
    try {
      slots = await discoverSlots(parts.seeds, access, connectTimeoutMs);
    } catch (error) {
      throw new TransportClosedError(
        `Cannot connect to ${redactUrl(url)}: ${(error as Error).message}`,
      );
    }
    return new RedisClusterTransport(url, parts, access, slots, options);
  }

  async append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    return await this.#on(stream, (t) => t.append(clusterKey(stream), data, options));
  }

  async appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    this.#checkOpen("append entries");
    const ids = new Array<string>(entries.length);
    const bySlot = groupBySlot(entries.map((e, i) => [e.stream, i] as const));
    await Promise.all([...bySlot.values()].map((group) =>
      this.#on(group[0][0], async (t) => {
        const mapped = group.map(([stream, i]) => ({
          stream: clusterKey(stream),
          data: entries[i].data,
        }));
        const got = await t.appendMany(mapped, options);
        group.forEach(([, i], k) => ids[i] = got[k]);
      })
    ));
    return ids;
  }

  /** Reads as `consumer` of `group`; `streams` must be of one namespace. */
  async read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions = {},
  ): Promise<StreamEntry[]> {
    checkCount("count", options.count ?? 100);
    checkDuration("blockMs", options.blockMs ?? 1000);
    this.#checkOpen(`read as consumer "${consumer}" of group "${group}"`);
    if (streams.length === 0) return [];
    const slots = new Set(streams.map((s) => slotOf(clusterKey(s))));
    if (slots.size > 1) {
      throw new TypeError(
        `Cannot read ${streams.length} streams at once on Redis Cluster: they are of different namespaces (hash slots)`,
      );
    }
    const mapped = streams.map(clusterKey);
    return callerEntries(
      await this.#on(streams[0], (t) => t.read(group, consumer, mapped, options)),
    );
  }

  async ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    await this.#on(stream, (t) => t.ack(clusterKey(stream), group, ids));
  }

  async claim(
    streams: string | readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count = 100,
  ): Promise<StreamEntry[]> {
    checkDuration("minIdleMs", minIdleMs);
    checkCount("count", count);
    this.#checkOpen("claim entries");
    const list = typeof streams === "string" ? [streams] : streams;
    const out: StreamEntry[] = [];
    for (const batch of groupBySlot(list.map((s) => [s, 0] as const)).values()) {
      const mapped = batch.map(([s]) => clusterKey(s));
      const claimed = await this.#on(
        batch[0][0],
        (t) => t.claim(mapped, group, consumer, minIdleMs, count),
      );
      out.push(...callerEntries(claimed));
    }
    return out;
  }

  async claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count = 100,
  ): Promise<StreamEntry[]> {
    return callerEntries(
      await this.#on(stream, (t) => t.claimFrom(clusterKey(stream), group, owner, consumer, count)),
    );
  }

  async range(stream: string, start = "-", count?: number): Promise<StreamEntry[]> {
    return callerEntries(await this.#on(stream, (t) => t.range(clusterKey(stream), start, count)));
  }

  async backlog(stream: string, group: string): Promise<number> {
    return await this.#on(stream, (t) => t.backlog(clusterKey(stream), group));
  }

  async trim(stream: string, maxLen: number): Promise<void> {
    await this.#on(stream, (t) => t.trim(clusterKey(stream), maxLen));
  }

  async trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    return await this.#on(stream, (t) => t.trimAcknowledged(clusterKey(stream), retainMs));
  }

  async putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    await this.#on(key, (t) => t.putBlob(clusterKey(key), data, ttlMs));
  }

  async putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    return await this.#on(key, (t) => t.putBlobIfAbsent(clusterKey(key), data, ttlMs));
  }

  async getBlob(key: string): Promise<Uint8Array | null> {
    return await this.#on(key, (t) => t.getBlob(clusterKey(key)));
  }

  async deleteBlobs(keys: readonly string[]): Promise<void> {
    this.#checkOpen("delete values");
    for (const batch of groupBySlot(keys.map((k) => [k, 0] as const)).values()) {
      const mapped = batch.map(([k]) => clusterKey(k));
      await this.#on(batch[0][0], (t) => t.deleteBlobs(mapped));
    }
  }

  /** Leases the keys under `prefix`, which must contain its namespace's `:` (e.g. `"ns:"`). */
  leaseKeys(prefix: string, ttlMs: number): void {
    checkPrefix("lease keys", prefix);
    this.#leases.set(prefix, ttlMs);
    for (const node of this.#nodes.values()) {
      node.then((t) => t.leaseKeys(clusterKey(prefix), ttlMs), () => {});
    }
  }

  async renewLease(prefix: string, sweepMs: number): Promise<boolean> {
    if (!this.#leases.has(prefix)) {
      throw new RangeError(`Cannot renew lease: "${prefix}" is not leased`);
    }
    return await this.#on(prefix, (t) => t.renewLease(clusterKey(prefix), sweepMs));
  }

  /** Deletes every key starting with `prefix`, which must contain its namespace's `:`. */
  async deletePrefix(prefix: string): Promise<void> {
    this.#checkOpen(`delete keys starting with "${prefix}"`);
    checkPrefix("delete keys by prefix", prefix);
    await this.#on(prefix, (t) => t.deletePrefix(clusterKey(prefix)));
  }

  /**
   * Calls `listener` when a master's transport finds that its server lost its data (see
   * `RedisTransport.onDataLost`); `reason` names that master.
   */
  onDataLost(listener: (reason: string) => void): () => void {
    this.#lostListeners.add(listener);
    return () => void this.#lostListeners.delete(listener);
  }

  /** Closes every master's transport; calls in flight and later calls reject. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const nodes = [...this.#nodes.values()];
    this.#nodes.clear();
    await Promise.all(nodes.map((node) => node.then((t) => t.close(), () => {})));
  }

  /** Same as {@linkcode RedisClusterTransport.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new TransportClosedError(`Cannot ${what}: the transport is closed`);
  }

  /**
   * Runs `op` on the transport of the master that serves `name`'s slot; after a `MOVED` answer,
   * or when that master is unreachable and the cluster now names another, on the new one.
   */
  async #on<T>(name: string, op: (t: RedisTransport) => Promise<T>): Promise<T> {
    const slot = slotOf(clusterKey(name));
    for (let redirects = 0;; redirects++) {
      this.#checkOpen(`reach the master of "${name}"`);
      let address = this.#slots.owner[slot];
      if (address === undefined) {
        await this.#rediscover();
        address = this.#slots.owner[slot];
        if (address === undefined) {
          throw new TransportClosedError(
            `Cannot reach the master of "${name}" on ${this.url}: no node serves its slot ${slot}`,
          );
        }
      }
      try {
        return await op(await this.#node(address));
      } catch (error) {
        if (this.#closed || redirects >= MAX_REDIRECTS) throw error;
        if (error instanceof TransportRefusedError && /^(MOVED|ASK)$/.test(error.code)) {
          await new Promise((resolve) => setTimeout(resolve, REDIRECT_PAUSE_MS));
          await this.#rediscover();
          continue;
        }
        if (!(error instanceof TransportClosedError)) throw error;
        await this.#rediscover().catch(() => {});
        if (this.#slots.owner[slot] === address) throw error;
      }
    }
  }

  /** The transport of master `address`, connected on first use. */
  #node(address: string): Promise<RedisTransport> {
    let node = this.#nodes.get(address);
    if (node) return node;
    node = this.#connectNode(address);
    this.#nodes.set(address, node);
    node.catch(() => {
      if (this.#nodes.get(address) === node) this.#nodes.delete(address);
    });
    return node;
  }

  async #connectNode(address: string): Promise<RedisTransport> {
    const epochKey = `${this.#options.epochKey ?? DEFAULT_EPOCH_KEY}:{${
      tagIn(this.#slots.ranges.get(address) ?? [])
    }}`;
    const t = await RedisTransport.connect(this.#access.url(address) + this.#nodeQuery, {
      ...this.#options,
      epochKey,
    });
    if (this.#closed) {
      await t.close();
      throw new TransportClosedError(`Cannot reach ${address}: the transport is closed`);
    }
    for (const [prefix, ttl] of this.#leases) t.leaseKeys(clusterKey(prefix), ttl);
    t.onDataLost((reason) => {
      for (const listener of [...this.#lostListeners]) {
        try {
          listener(reason);
        } catch {
          // A listener's failure is its own; the others still hear.
        }
      }
    });
    return t;
  }

  /** Asks the cluster for its slots again (one question at a time) and drops gone masters. */
  #rediscover(): Promise<void> {
    this.#discovering ??= (async () => {
      const known = [...this.#slots.ranges.keys()];
      const timeout = Math.min(this.#options.connectTimeoutMs ?? 10_000, 2000);
      const addresses = [...new Set([...known, ...this.#seeds])];
      this.#slots = await discoverSlots(addresses, this.#access, timeout);
      for (const [address, node] of this.#nodes) {
        if (this.#slots.ranges.has(address)) continue;
        this.#nodes.delete(address);
        node.then((t) => t.close(), () => {});
      }
    })().finally(() => this.#discovering = undefined);
    return this.#discovering;
  }
}

/** Items grouped by the slot of their name (the first of each pair), in order of first sight. */
function groupBySlot<T>(
  items: readonly (readonly [string, T])[],
): Map<number, (readonly [string, T])[]> {
  const groups = new Map<number, (readonly [string, T])[]>();
  for (const item of items) {
    const slot = slotOf(clusterKey(item[0]));
    groups.set(slot, [...groups.get(slot) ?? [], item]);
  }
  return groups;
}

function callerEntries(entries: StreamEntry[]): StreamEntry[] {
  for (const entry of entries) entry.stream = callerName(entry.stream);
  return entries;
}

/** A hash tag whose slot is in `ranges`: the epoch key of the master serving them. */
function tagIn(ranges: readonly [number, number][]): string {
  for (let i = 0; i < 1_000_000; i++) {
    const slot = slotOf(`n${i}`);
    if (ranges.some(([first, last]) => slot >= first && slot <= last)) return `n${i}`;
  }
  return "n0";
}

function checkPrefix(what: string, prefix: string): void {
  if (prefix === "") throw new RangeError(`Cannot ${what}: the prefix is empty`);
  if (!prefix.includes(":")) {
    throw new RangeError(
      `Cannot ${what} "${prefix}" on Redis Cluster: a prefix must contain its namespace's ":" (e.g. "${prefix}:")`,
    );
  }
}
