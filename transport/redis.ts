/**
 * The Redis transport: each stream is a Redis Stream whose entries carry their payload in one
 * binary field `m`, read through consumer groups (`XADD`, `XREADGROUP`, `XACK`, `XAUTOCLAIM`).
 *
 * About 600 lines: the one class is the 19 methods of `Transport` (each maps one call to its
 * commands) and the epoch check that holds them all; the connections, group reads, replies,
 * scripts and arguments are in the `_redis_*.ts` files beside it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  ageTrim,
  checkCount,
  checkDuration,
  checkLength,
  checkRedisUrl,
  listStreams,
  xadd,
} from "./_redis_args.ts";
import { SerializationError, TransportClosedError } from "../errors.ts";
import { type Arg, DeadlinePassed, MIN_BACKOFF_MS, RedisLink, sleep } from "./_redis_connection.ts";
import { GroupReader } from "./_redis_reads.ts";
import {
  bytes,
  isGroupLost,
  isServerReply,
  isTransient,
  pairs,
  text,
  toEntry,
} from "./_redis_reply.ts";
import { CLAIM_FROM_SCRIPT, CLAIM_SCRIPT, EPOCH_SCRIPT, TRIM_SCRIPT } from "./_redis_scripts.ts";
import { StreamLeases } from "./_redis_lease.ts";
import { redactUrl } from "./_url.ts";
import type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";

/** Options of {@linkcode RedisTransport.connect}. */
export interface RedisTransportOptions {
  /**
   * How long `connect` tries to reach the server, in ms.
   * @default {10000}
   */
  connectTimeoutMs?: number;
  /**
   * How long a call waits for a lost server to come back before it rejects with
   * {@linkcode TransportClosedError}, in ms.
   * @default {10000}
   */
  commandTimeoutMs?: number;
  /**
   * The key whose value tells whether the server kept its data: written once (with a random
   * value) by the first transport that finds it missing, read again after every reconnect. Found
   * missing (or changed) then, the server lost what it held, and the transport calls its
   * {@linkcode RedisTransport.onDataLost} listeners. The Redis user needs read and write access
   * to it.
   * @default {"deno-parallel:epoch"}
   */
  epochKey?: string;
}

const READ_GRACE_MS = 2000;
const DEFAULT_EPOCH_KEY = "deno-parallel:epoch";
/** Redis' default `proto-max-bulk-len`, assumed when the server does not say its own. */
const DEFAULT_MAX_BULK = 512 * 1024 * 1024;

/** How many streams one claim script sweeps (a host's inboxes: its engines and broadcast nodes). */
const CLAIM_BATCH = 512;

/**
 * A {@linkcode Transport} over Redis Streams.
 *
 * It holds two connections: one for commands, and one for blocking reads, so that a read waiting
 * for entries never delays an append or an ack. Blocking reads of one transport take turns on
 * their connection: a host opens one transport and reads all its inboxes in one call.
 *
 * It rides out a restart of Redis, reconnecting with capped exponential backoff (50 ms to 2 s).
 * A call made meanwhile waits for the server up to `commandTimeoutMs`, then rejects with
 * {@linkcode TransportClosedError}. A read returns `[]` after at most `blockMs` plus 2 s when the
 * server is away, and rejects too once it has been away for `commandTimeoutMs`. After connecting
 * and after each reconnect, a consumer's first read returns its own pending entries (delivered to
 * it, never acknowledged: the reply may have been lost) before any new one, their `deliveries`
 * as Redis counts them (a re-read counts as a delivery). Groups start at the stream's first entry
 * and are created again if the server lost them.
 *
 * A server that comes back without its data (a restart without persistence) is noticed on the
 * reconnect: the epoch key (`epochKey`) written at the first connect is gone. The transport then
 * calls its {@linkcode RedisTransport.onDataLost} listeners before any other call goes on, so that
 * the waits for answers that were in the lost streams can fail instead of hanging. With Redis's
 * append-only file the key survives a restart, and nothing is reported.
 *
 * Delivery is at least once: a call whose connection dropped mid-flight is sent again, so an
 * append may land twice, and a call rejected after its deadline may still take effect once the
 * server is back.
 *
 * @example Connect, send, receive
 * ```ts ignore
 * await using transport = await RedisTransport.connect("redis://127.0.0.1:6379");
 * await transport.append("inbox:1", new TextEncoder().encode("hello"));
 * const entries = await transport.read("engines", "engine-1", ["inbox:1"], { blockMs: 500 });
 * await transport.ack("inbox:1", "engines", entries.map((e) => e.id));
 * ```
 */
export class RedisTransport implements Transport {
  /** The server's URL, with any password replaced by `***`. */
  readonly url: string;
  #link: RedisLink;
  #reader: GroupReader;
  #leases: StreamLeases;
  /** The largest value the server takes in one argument (its `proto-max-bulk-len`). */
  #maxBulk = DEFAULT_MAX_BULK;
  readonly #epochKey: string;
  /** The epoch key's value as this transport last read it. */
  #epochValue = "";
  /** Checks of the epoch key asked for (after a reconnect, or a lost group) and done. */
  #checksWanted = 0;
  #checksDone = 0;
  /** Whether a check asked for since the last one done follows a reconnect. */
  #checkAfterReconnect = false;
  #checking: Promise<void> | undefined;
  #lostListeners = new Set<(reason: string) => void>();

  private constructor(url: string, ca: string | undefined, options: RedisTransportOptions) {
    const commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    checkDuration("commandTimeoutMs", commandTimeoutMs);
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    checkDuration("connectTimeoutMs", connectTimeoutMs);
    this.#epochKey = options.epochKey ?? DEFAULT_EPOCH_KEY;
    if (typeof this.#epochKey !== "string" || this.#epochKey === "") {
      throw new TypeError("Cannot connect to Redis: epochKey must be a non-empty string");
    }
    this.#link = new RedisLink(url, { ca, connectTimeoutMs, commandTimeoutMs }, {
      onReconnect: () => this.#checkEpoch(true),
      held: () => this.#checksDone !== this.#checksWanted,
      onNewCommandConnection: () => this.#rereadMaxBulk(),
    });
    this.url = this.#link.url;
    this.#leases = new StreamLeases(this.#link, (prefix, ttlMs) => {
      this.#reader.forgetAll();
      const server = new URL(this.url).host;
      this.#dataLost(
        `Redis at ${server} dropped the keys starting with "${prefix}": their lease ran out ` +
          `(no party could renew it for ${ttlMs / 1000} s: the server was away that long)`,
      );
    });
    this.#reader = new GroupReader(
      this.#link,
      () => this.#checkEpoch(false),
      (stream) => this.#leases.sendExpiries(this.#leases.expiries([stream])),
    );
  }

  /**
   * Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://`
   * for TLS). Rejects with {@linkcode TransportClosedError} when the server cannot be reached or
   * refuses the credentials within `connectTimeoutMs`. Neither the password nor the URL's query
   * appears in its messages or in {@linkcode RedisTransport.url}'s password.
   *
   * With `rediss://`, the server's certificate is checked against the system's CAs, or against
   * the PEM file that the query parameter `ca` names instead:
   * `rediss://host:6380?ca=/etc/redis/ca.pem` (it needs read permission on that file).
   */
  static async connect(url: string, options: RedisTransportOptions = {}): Promise<RedisTransport> {
    checkRedisUrl(url);
    const caFile = new URL(url).searchParams.get("ca");
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
    const transport = new RedisTransport(url, ca, options);
    await transport.#link.connect(
      options.connectTimeoutMs ?? 10_000,
      () => Promise.all([transport.#readEpoch(), transport.#readMaxBulk()]),
    );
    return transport;
  }

  async append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    const what = `append to stream "${stream}"`;
    this.#checkSize(what, data);
    const args = xadd(stream, data, options?.maxLen);
    const after = options?.maxAgeMs === undefined ? [] : ageTrim(stream, options.maxAgeMs);
    const lease = this.#leases.expiries([stream]);
    if (after.length === 0) {
      return text(
        await this.#link.call(what, [stream], () => {
          const sent = this.#link.send(args);
          this.#leases.sendExpiries(lease);
          return sent;
        }),
      );
    }
    const [id] = await this.#link.call(
      what,
      [stream],
      () => {
        const sent = Promise.all([args, ...after].map((c) => this.#link.send(c)));
        this.#leases.sendExpiries(lease);
        return sent;
      },
    );
    return text(id);
  }

  async appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    if (entries.length === 0) {
      this.#link.checkOpen("append entries");
      return [];
    }
    for (const e of entries) this.#checkSize(`append to stream "${e.stream}"`, e.data);
    const streams = [...new Set(entries.map((e) => e.stream))];
    const commands = entries.map((e) => xadd(e.stream, e.data, options?.maxLen));
    const maxAgeMs = options?.maxAgeMs;
    const after = maxAgeMs === undefined ? [] : streams.flatMap((s) => ageTrim(s, maxAgeMs));
    const what = entries.length === 1
      ? `append to stream "${streams[0]}"`
      : `append ${entries.length} entries to ${listStreams(streams)}`;
    // Pipelined, not MULTI/EXEC: one connection keeps the order, and a transaction halves the rate.
    const lease = this.#leases.expiries(streams);
    const ids = await this.#link.call(
      what,
      streams,
      () => {
        const sent = Promise.all([...commands, ...after].map((c) => this.#link.send(c)));
        this.#leases.sendExpiries(lease);
        return sent;
      },
    );
    return ids.slice(0, commands.length).map(text);
  }

  /**
   * Reads as `consumer` of `group`, creating the group (from the streams' start) where missing.
   * Reads with `blockMs > 0` take turns on the transport's blocking connection; `blockMs`
   * counts from a read's turn.
   */
  async read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions = {},
  ): Promise<StreamEntry[]> {
    const count = options.count ?? 100;
    const blockMs = options.blockMs ?? 1000;
    const from = options.from ?? ">";
    checkCount("count", count);
    checkDuration("blockMs", blockMs);
    const what = `read ${listStreams(streams)} as consumer "${consumer}" of group "${group}"`;
    this.#link.checkOpen(what);
    if (streams.length === 0) return [];
    const release = blockMs > 0 && from === ">" ? await this.#link.takeTurn() : () => {};
    try {
      const deadline = Date.now() + blockMs + READ_GRACE_MS;
      return await this.#link.attempt(
        what,
        streams,
        deadline,
        true,
        (abandon) => this.#reader.read(group, consumer, streams, count, blockMs, from, abandon),
      );
    } catch (error) {
      if (!(error instanceof DeadlinePassed)) throw error;
      // Nothing came in time: like an empty wait, unless the server is away for too long.
      if (this.#link.silentMs < this.#link.commandTimeoutMs) return [];
      throw this.#link.unreachable(what);
    } finally {
      release();
    }
  }

  async ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return this.#link.checkOpen("acknowledge entries");
    await this.#link.call(`acknowledge entries of stream "${stream}"`, [stream], async () => {
      try {
        await this.#link.send(["XACK", stream, group, ...ids]);
      } catch (error) {
        // No group, nothing pending: as good as acknowledged.
        if (!isGroupLost(error)) throw error;
      }
    });
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
    const list = typeof streams === "string" ? [streams] : streams;
    return await this.#claimMany(list, group, consumer, minIdleMs, count);
  }

  /** `claim` over several streams: one script per `CLAIM_BATCH` of them. */
  async #claimMany(
    streams: readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count: number,
  ): Promise<StreamEntry[]> {
    const out: StreamEntry[] = [];
    for (let i = 0; i < streams.length; i += CLAIM_BATCH) {
      const batch = streams.slice(i, i + CLAIM_BATCH);
      const args = [
        "EVAL",
        CLAIM_SCRIPT,
        String(batch.length),
        ...batch,
        group,
        consumer,
        String(Math.floor(minIdleMs)),
        String(count),
      ];
      const reply = await this.#link.call(
        `claim entries of ${listStreams(batch)}`,
        batch,
        () => this.#link.send(args),
      ) as [unknown[], number[]][];
      batch.forEach((stream, k) => {
        const [raw, counts] = reply[k] ?? [[], []];
        out.push(...raw.map((entry, j) => toEntry(stream, entry, counts[j] ?? 1)));
      });
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
    checkCount("count", count);
    const args = [CLAIM_FROM_SCRIPT, "1", stream, group, owner, consumer, String(count)];
    const reply = await this.#link.call(
      `claim entries of stream "${stream}"`,
      [stream],
      async () => {
        try {
          return await this.#link.send(["EVAL", ...args]);
        } catch (error) {
          if (isGroupLost(error)) return [[], []];
          throw error;
        }
      },
    );
    const [raw, counts] = reply as [unknown[], number[]];
    return raw.map((entry, i) => toEntry(stream, entry, counts[i] ?? 1));
  }

  async range(stream: string, start = "-", count?: number): Promise<StreamEntry[]> {
    const args = ["XRANGE", stream, start, "+"];
    if (count !== undefined && count !== Infinity) {
      checkCount("count", count);
      args.push("COUNT", String(count));
    }
    const reply = await this.#link.call(
      `read stream "${stream}"`,
      [stream],
      () => this.#link.send(args),
    );
    return (reply as unknown[]).map((entry) => toEntry(stream, entry, 0));
  }

  async backlog(stream: string, group: string): Promise<number> {
    return await this.#link.call(
      `measure the backlog of stream "${stream}"`,
      [stream],
      async () => {
        let groups: unknown[];
        try {
          groups = await this.#link.send(["XINFO", "GROUPS", stream]) as unknown[];
        } catch (error) {
          if (error instanceof Error && error.message.startsWith("ERR no such key")) return 0;
          throw error;
        }
        const info = groups.map(pairs).find((g) => text(g.get("name")) === group);
        if (!info) return Number(await this.#link.send(["XLEN", stream]));
        const pending = Number(info.get("pending"));
        const lag = info.get("lag");
        if (typeof lag === "number") return pending + lag;
        return pending + await this.#countAfter(stream, text(info.get("last-delivered-id")));
      },
    );
  }

  /** Counts the entries of `stream` after `id`, for servers that do not report a group's lag. */
  async #countAfter(stream: string, id: string): Promise<number> {
    let total = 0;
    let start = id === "0-0" ? "-" : `(${id}`;
    for (;;) {
      const entries = await this.#link.send([
        "XRANGE",
        stream,
        start,
        "+",
        "COUNT",
        "1000",
      ]) as unknown[][];
      total += entries.length;
      if (entries.length < 1000) return total;
      start = `(${text(entries[entries.length - 1][0])}`;
    }
  }

  async trim(stream: string, maxLen: number): Promise<void> {
    checkLength("maxLen", maxLen);
    const args = ["XTRIM", stream, "MAXLEN", String(maxLen)];
    await this.#link.call(`trim stream "${stream}"`, [stream], () => this.#link.send(args));
  }

  async trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    checkDuration("retainMs", retainMs);
    const args = ["EVAL", TRIM_SCRIPT, "1", stream, String(Math.floor(retainMs))];
    const what = `trim acknowledged entries of stream "${stream}"`;
    return Number(await this.#link.call(what, [stream], () => this.#link.send(args)));
  }

  async putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Cannot store value "${key}": ttlMs must be positive, got ${ttlMs}`);
    }
    const what = `store value "${key}"`;
    this.#checkSize(what, data);
    const lease = this.#leases.value(key, ttlMs);
    const args = ["SET", key, Buffer.from(data), "PX", String(Math.ceil(lease.ttlMs))];
    await this.#link.call(what, [key], () => {
      const sent = this.#link.send(args);
      this.#leases.sendExpiries(lease.notes);
      return sent;
    });
  }

  async putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Cannot store value "${key}": ttlMs must be positive, got ${ttlMs}`);
    }
    const what = `store value "${key}"`;
    this.#checkSize(what, data);
    const lease = this.#leases.value(key, ttlMs);
    const args = ["SET", key, Buffer.from(data), "PX", String(Math.ceil(lease.ttlMs)), "NX"];
    const stored = (await this.#link.call(what, [key], () => this.#link.send(args))) !== null;
    if (stored) this.#leases.sendExpiries(lease.notes);
    return stored;
  }

  async getBlob(key: string): Promise<Uint8Array | null> {
    const value = await this.#link.call(
      `load value "${key}"`,
      [key],
      () => this.#link.send(["GET", key]),
    );
    return value === null ? null : bytes(value);
  }

  async deleteBlobs(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      await this.#link.call(
        `delete ${batch.length} values`,
        batch,
        () => {
          const sent = this.#link.send(["UNLINK", ...batch]);
          this.#leases.sendExpiries(this.#leases.forget(batch));
          return sent;
        },
      );
    }
  }

  /**
   * Leases the keys under `prefix`: from now on, a stream there that this transport creates
   * expires `ttlMs` later unless {@linkcode renewLease} (here or on another transport) renews it,
   * and so does a value it stores for longer (renewed up to its own TTL).
   */
  leaseKeys(prefix: string, ttlMs: number): void {
    this.#leases.lease(prefix, ttlMs);
  }

  /**
   * Renews the lease of every key under `prefix` (leased with {@linkcode leaseKeys}), unless
   * some party on this server did in the last `sweepMs`. Returns whether this call renewed them.
   */
  renewLease(prefix: string, sweepMs: number): Promise<boolean> {
    return this.#leases.renew(prefix, sweepMs);
  }

  /** Deletes every key starting with `prefix`; the empty prefix is refused (it is every key). */
  async deletePrefix(prefix: string): Promise<void> {
    if (prefix === "") throw new RangeError("Cannot delete keys by prefix: the prefix is empty");
    const what = `delete keys starting with "${prefix}"`;
    const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
    let cursor = "0";
    do {
      const [next, keys] = await this.#link.call(what, [], async () => {
        const reply = await this.#link.send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]);
        const [, keys] = reply as [unknown, Buffer[]];
        if (keys.length > 0) await this.#link.send(["UNLINK", ...keys]);
        return reply as [unknown, Buffer[]];
      });
      cursor = text(next);
      for (const key of keys) this.#reader.forgetStream(text(key));
    } while (cursor !== "0");
  }

  /**
   * Calls `listener` each time the server is found to have lost its data: after a reconnect, the
   * epoch key is gone (a restart without persistence), or a consumer group this transport read
   * through vanished and so did the key (`FLUSHALL`). `reason` names the server by host and port.
   * Returns a function that removes the listener.
   */
  onDataLost(listener: (reason: string) => void): () => void {
    this.#lostListeners.add(listener);
    return () => void this.#lostListeners.delete(listener);
  }

  /** Closes both connections at once; calls in flight and later calls reject. Idempotent. */
  async close(): Promise<void> {
    if (this.#link.closed) return;
    await this.#link.close();
    await this.#checking;
  }

  /** Same as {@linkcode RedisTransport.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The epoch key's value, set first when it is missing. */
  async #readEpoch(): Promise<void> {
    this.#epochValue = text(await this.#link.send(this.#epochCommand()));
  }

  /** Reads the server's `proto-max-bulk-len`; a server that does not tell keeps the default. */
  async #readMaxBulk(): Promise<void> {
    let reply: unknown;
    try {
      reply = await this.#link.send(["CONFIG", "GET", "proto-max-bulk-len"]);
    } catch (error) {
      // CONFIG refused to this user (NOPERM) or renamed away: Redis' default it is.
      if (isServerReply(error)) return;
      throw error;
    }
    const value = Number(text(pairs(reply).get("proto-max-bulk-len")));
    if (Number.isSafeInteger(value) && value > 0) this.#maxBulk = value;
  }

  /**
   * Throws `SerializationError` when `data` is larger than the server takes in one value: sent,
   * the server would answer with a protocol error and drop the connection.
   */
  #checkSize(what: string, data: Uint8Array): void {
    if (data.byteLength <= this.#maxBulk) return;
    throw new SerializationError(
      "$",
      `it takes ${data.byteLength} bytes, over the ${this.#maxBulk}-byte limit of one value at ${this.url} (proto-max-bulk-len); cannot ${what}`,
    );
  }

  /** Reads the limit again on a new command connection: it may have changed (`CONFIG SET`). */
  #rereadMaxBulk(): void {
    const deadline = Date.now() + this.#link.commandTimeoutMs;
    this.#link.attempt(
      "read the server's value limit",
      [],
      deadline,
      false,
      () => this.#readMaxBulk(),
    )
      .catch(() => {});
  }

  #epochCommand(): Arg[] {
    return ["EVAL", EPOCH_SCRIPT, "1", this.#epochKey, crypto.randomUUID()];
  }

  /**
   * Checks the epoch key again, holding every other call until it is done (see
   * {@linkcode RedisTransport.onDataLost}).
   */
  #checkEpoch(afterReconnect: boolean): void {
    this.#checksWanted++;
    if (afterReconnect) this.#checkAfterReconnect = true;
    this.#checking ??= this.#runChecks().finally(() => {
      this.#checking = undefined;
      this.#link.wake();
    });
  }

  async #runChecks(): Promise<void> {
    let pause = MIN_BACKOFF_MS;
    while (this.#checksDone < this.#checksWanted && !this.#link.closed) {
      const wanted = this.#checksWanted;
      const afterReconnect = this.#checkAfterReconnect;
      let value: string;
      try {
        // First in the command connection's queue: before calls queued while it was away.
        value = text(await this.#link.send(this.#epochCommand(), { asap: true }));
      } catch (error) {
        if (this.#link.closed) return;
        this.#link.noteError(error);
        if (isServerReply(error) && !isTransient(error)) {
          // The server refuses the key (e.g. an ACL): the loss cannot be told; carry on.
          this.#checksDone = wanted;
          continue;
        }
        // Lost again, or loading its data: a queued command waits for the server.
        await sleep(pause);
        pause = Math.min(pause * 2, 250);
        continue;
      }
      this.#checkAfterReconnect = false;
      this.#checksDone = wanted;
      if (value === this.#epochValue) continue;
      this.#epochValue = value;
      // Every group and pending entry went with the data.
      this.#reader.forgetAll();
      const server = new URL(this.url).host;
      const reason = afterReconnect
        ? `Redis at ${server} restarted without its data (key "${this.#epochKey}" was gone after a reconnect)`
        : `Redis at ${server} lost its data (key "${this.#epochKey}" was gone)`;
      this.#dataLost(reason);
    }
  }

  #dataLost(reason: string): void {
    for (const listener of [...this.#lostListeners]) {
      try {
        listener(reason);
      } catch {
        // A listener's failure is its own; the others still hear.
      }
    }
  }
}
