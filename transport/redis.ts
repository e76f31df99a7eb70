/**
 * The Redis transport: each stream is a Redis Stream whose entries carry their payload in one
 * binary field `m`, read through consumer groups (`XADD`, `XREADGROUP`, `XACK`, `XAUTOCLAIM`).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "../deps_redis.ts";
import { SerializationError, TransportClosedError } from "../errors.ts";
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

const FIELD = "m";
const READ_GRACE_MS = 2000;
const RETRY_PAUSE_MS = 20;
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;
const MAX_GROUP_RETRIES = 3;
const DEFAULT_EPOCH_KEY = "deno-parallel:epoch";
/** Redis' default `proto-max-bulk-len`, assumed when the server does not say its own. */
const DEFAULT_MAX_BULK = 512 * 1024 * 1024;

// The epoch key's value, set first if the key is missing; one call, so that transports that find
// it missing at once agree on one value.
const EPOCH_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`;

// One Lua call, so that the delivery counts belong to the entries just claimed.
const CLAIM_SCRIPT = `
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
  'COUNT', ARGV[4])
local entries, counts = {}, {}
for _, entry in ipairs(claimed[2]) do
  if entry then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    entries[#entries + 1] = entry
    counts[#counts + 1] = p[1] and p[1][4] or 1
  end
end
return {entries, counts}
`;

// The entries pending for one consumer (ARGV[2]), moved to another (ARGV[3]) in one call: XPENDING
// names them, XCLAIM moves them (and drops those deleted from the stream). Their delivery counts
// are XPENDING's plus the claim's one.
const CLAIM_FROM_SCRIPT = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], ARGV[2])
if #pending == 0 then return {{}, {}} end
local ids, counts = {}, {}
for _, p in ipairs(pending) do
  ids[#ids + 1] = p[1]
  counts[p[1]] = p[4]
end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
local entries, out = {}, {}
for _, entry in ipairs(claimed) do
  if entry then
    entries[#entries + 1] = entry
    out[#out + 1] = counts[entry[1]] + 1
  end
end
return {entries, out}
`;

// One Lua call, so that no entry is delivered or acknowledged between the look and the trim. The
// bound is the earliest of: the first pending entry of each group, the entry after the last one
// delivered to each group, and the first id of the last retainMs (server clock).
const TRIM_SCRIPT = `
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok or #groups == 0 then return 0 end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local now = redis.call('TIME')
local bms = math.floor((tonumber(now[1]) * 1000000 + tonumber(now[2])) / 1000) - tonumber(ARGV[1]) + 1
local bseq = 0
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq
  if f['pending'] > 0 then
    ms, seq = split(redis.call('XPENDING', KEYS[1], f['name'])[2])
  else
    ms, seq = split(f['last-delivered-id'])
    seq = seq + 1
  end
  if ms < bms or (ms == bms and seq < bseq) then bms, bseq = ms, seq end
end
if bms <= 0 and bseq <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', bms, bseq))
`;

type Arg = string | Buffer;
type Client = ReturnType<typeof newClient>;

/** What a {@linkcode Connection} asks of its transport. */
interface ConnectionHooks {
  closed(): boolean;
  /** Until when a first connection may be attempted. */
  connectDeadline(): number;
  onReady(): void;
  onError(error: unknown): void;
}

function newClient(
  url: string,
  ca: string | undefined,
  connectTimeoutMs: number,
  reconnectStrategy: (retries: number, cause: Error) => number | false,
) {
  return createClient({
    url,
    disableClientInfo: true,
    commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } },
    socket: {
      connectTimeout: Math.min(connectTimeoutMs, 5000),
      reconnectStrategy,
      ...(ca === undefined ? {} : { ca }),
    },
  });
}

/** One node-redis client, reconnecting with capped exponential backoff. */
class Connection {
  readonly client: Client;
  #connected = false;
  #closing = false;
  /** Ends when node-redis' backoff sleep does: it cannot be cancelled, only waited for. */
  #backoff: { done: Promise<void>; end: () => void } | undefined;

  constructor(
    url: string,
    ca: string | undefined,
    connectTimeoutMs: number,
    hooks: ConnectionHooks,
  ) {
    this.client = newClient(url, ca, connectTimeoutMs, (retries, cause) => {
      const delay = this.#reconnectDelay(retries, cause, hooks);
      if (delay !== false && !this.#backoff) {
        let end!: () => void;
        const done = new Promise<void>((resolve) => end = resolve);
        this.#backoff = { done, end };
      }
      return delay;
    });
    this.client.on("error", hooks.onError);
    // node-redis emits "reconnecting" after each delay the strategy returned.
    this.client.on("reconnecting", () => {
      this.#backoff?.end();
      this.#backoff = undefined;
    });
    // A connection that drops is opened again at once; closed meanwhile, node-redis still
    // finishes that socket and leaves it open (it cannot destroy a client it counts as closed).
    // Such a socket must neither keep the process alive nor stay open.
    this.client.on("connect", () => {
      if (this.#closing) this.client.unref();
    });
    this.client.on("ready", () => {
      if (this.#closing) {
        this.#dropLateSocket();
        return;
      }
      this.#connected = true;
      hooks.onReady();
    });
  }

  #dropLateSocket(): void {
    const socket = this.client._ejectSocket();
    socket.on("error", () => {});
    socket.destroySocket();
  }

  #reconnectDelay(retries: number, cause: Error, hooks: ConnectionHooks): number | false {
    if (hooks.closed()) return false;
    const delay = Math.min(MIN_BACKOFF_MS * 2 ** retries, MAX_BACKOFF_MS);
    if (this.#connected) return delay;
    // Not connected yet: give up on a refusal (a wrong password, an untrusted certificate) or
    // once time is up.
    const left = hooks.connectDeadline() - Date.now();
    if (left <= 0 || (isServerReply(cause) && !isTransient(cause)) || isTlsRefusal(cause)) {
      return false;
    }
    return Math.min(delay, left);
  }

  get ready(): boolean {
    return this.client.isReady;
  }

  /** Drops the connection and fails its commands; resolves once node-redis' timers are done. */
  async close(): Promise<void> {
    this.#closing = true;
    this.client.unref();
    if (this.client.isOpen) this.client.destroy();
    await this.#backoff?.done;
  }
}

/** Thrown inside the transport when a call's deadline passes; public methods translate it. */
class DeadlinePassed extends Error {}

/** Set by a call whose deadline passed, for the work it left running. */
interface Abandon {
  abandoned: boolean;
}

/** Where a consumer stands in re-reading its own pending entries of one stream. */
interface Recovery {
  /** The connection epoch the re-read belongs to. */
  epoch: number;
  /** The last id re-read, `"0"` before the first; `undefined` once done. */
  cursor?: string;
}

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
  #secrets: string[];
  #commandTimeoutMs: number;
  #connectDeadline = 0;
  #cmd: Connection;
  /** Makes a new command connection, to replace one whose replies may no longer match. */
  #newCommandConnection: () => Connection;
  /** Closes of command connections replaced by {@linkcode #resetCommandConnection}. */
  #retired = new Set<Promise<void>>();
  /** The largest value the server takes in one argument (its `proto-max-bulk-len`). */
  #maxBulk = DEFAULT_MAX_BULK;
  #blocker: Connection;
  #closed = false;
  #lastError: unknown;
  /** When calls started failing to reach the server, while they still do. */
  #silentSince: number | undefined;
  /** Grows on every reconnect: the consumers' pending entries are to be re-read. */
  #epoch = 0;
  #readyCount = 0;
  /** Calls waiting for a connection to come back; each checks whether it has. */
  #waiters = new Set<() => void>();
  #turn: Promise<void> = Promise.resolve();
  /** group → streams known to have it. */
  #groups = new Map<string, Set<string>>();
  #recovery = new Map<string, Recovery>();
  /**
   * Stream lists whose every stream's pending entries were read again since the epoch began (a
   * reader passes the same list read after read): their reads skip the per-stream bookkeeping.
   */
  #recovered = new WeakMap<readonly string[], { epoch: number; group: string; consumer: string }>();
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
    this.url = redactUrl(url);
    const parsed = new URL(url);
    // node-redis has no use for the query, and puts the URL it is given in some of its errors.
    parsed.search = "";
    this.#secrets = [parsed.password, safeDecode(parsed.password)].filter((s) => s !== "");
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    checkDuration("commandTimeoutMs", this.#commandTimeoutMs);
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    checkDuration("connectTimeoutMs", connectTimeoutMs);
    this.#epochKey = options.epochKey ?? DEFAULT_EPOCH_KEY;
    if (typeof this.#epochKey !== "string" || this.#epochKey === "") {
      throw new TypeError("Cannot connect to Redis: epochKey must be a non-empty string");
    }
    const hooks: ConnectionHooks = {
      closed: () => this.#closed,
      connectDeadline: () => this.#connectDeadline,
      onReady: () => this.#onReady(),
      onError: (error) => this.#lastError = error,
    };
    this.#newCommandConnection = () => new Connection(parsed.href, ca, connectTimeoutMs, hooks);
    this.#cmd = this.#newCommandConnection();
    this.#blocker = new Connection(parsed.href, ca, connectTimeoutMs, hooks);
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
    redactUrl(url); // throws a TypeError that shows no part of a bad URL
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
    await transport.#connect(options.connectTimeoutMs ?? 10_000);
    return transport;
  }

  async #connect(timeoutMs: number): Promise<void> {
    this.#connectDeadline = Date.now() + timeoutMs;
    const connecting = Promise.all([this.#cmd.client.connect(), this.#blocker.client.connect()]);
    connecting.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Backstop for a server that accepts connections and never answers.
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlinePassed("No answer")), timeoutMs + 1000);
    });
    try {
      await Promise.race([
        connecting.then(() => Promise.all([this.#readEpoch(), this.#readMaxBulk()])),
        late,
      ]);
    } catch (error) {
      this.#closed = true;
      await this.#closeConnections();
      const reason = error instanceof DeadlinePassed
        ? `no answer within ${timeoutMs} ms`
        : this.#scrub(error instanceof Error ? error.message : String(error));
      throw new TransportClosedError(`Cannot connect to ${this.url}: ${reason}`, {
        cause: this.#scrubError(error instanceof DeadlinePassed ? this.#lastError : error),
      });
    } finally {
      clearTimeout(timer);
    }
  }

  async append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    const what = `append to stream "${stream}"`;
    this.#checkSize(what, data);
    const args = xadd(stream, data, options?.maxLen);
    return text(await this.#call(what, () => this.#send(args)));
  }

  async appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    if (entries.length === 0) {
      this.#checkOpen("append entries");
      return [];
    }
    for (const e of entries) this.#checkSize(`append to stream "${e.stream}"`, e.data);
    const commands = entries.map((e) => xadd(e.stream, e.data, options?.maxLen));
    const what = `append ${entries.length} entries`;
    // Pipelined, not MULTI/EXEC: one connection keeps the order, and a transaction halves the rate.
    const ids = await this.#call(what, () => Promise.all(commands.map((c) => this.#send(c))));
    return ids.map(text);
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
    const what = `read as consumer "${consumer}" of group "${group}"`;
    this.#checkOpen(what);
    if (streams.length === 0) return [];
    const release = blockMs > 0 && from === ">" ? await this.#takeTurn() : () => {};
    try {
      const deadline = Date.now() + blockMs + READ_GRACE_MS;
      return await this.#attempt(
        what,
        deadline,
        () => [this.#cmd, this.#blocker],
        (abandon) =>
          this.#withGroups(group, streams, async () => {
            if (from === "0") {
              return await this.#readOwn(
                group,
                consumer,
                streams.map((s) => [s, "0"] as const),
                count,
              );
            }
            const own = await this.#recover(group, consumer, streams, count, abandon);
            if (own.length > 0 || abandon.abandoned) return own;
            return await this.#readNew(group, consumer, streams, count, blockMs, abandon);
          }),
      );
    } catch (error) {
      if (!(error instanceof DeadlinePassed)) throw error;
      // Nothing came in time: like an empty wait, unless the server is away for too long.
      const silentMs = Date.now() - (this.#silentSince ?? Date.now());
      if (silentMs < this.#commandTimeoutMs) return [];
      throw this.#unreachable(what);
    } finally {
      release();
    }
  }

  async ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return this.#checkOpen("acknowledge entries");
    await this.#call(`acknowledge entries of stream "${stream}"`, async () => {
      try {
        await this.#send(["XACK", stream, group, ...ids]);
      } catch (error) {
        // No group, nothing pending: as good as acknowledged.
        if (!isGroupLost(error)) throw error;
      }
    });
  }

  async claim(
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    count = 100,
  ): Promise<StreamEntry[]> {
    checkDuration("minIdleMs", minIdleMs);
    checkCount("count", count);
    const args = [CLAIM_SCRIPT, "1", stream, group, consumer, String(Math.floor(minIdleMs))];
    const reply = await this.#call(`claim entries of stream "${stream}"`, async () => {
      try {
        return await this.#send(["EVAL", ...args, String(count)]);
      } catch (error) {
        if (isGroupLost(error)) return [[], []];
        throw error;
      }
    });
    const [raw, counts] = reply as [unknown[], number[]];
    return raw.map((entry, i) => toEntry(stream, entry, counts[i] ?? 1));
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
    const reply = await this.#call(`claim entries of stream "${stream}"`, async () => {
      try {
        return await this.#send(["EVAL", ...args]);
      } catch (error) {
        if (isGroupLost(error)) return [[], []];
        throw error;
      }
    });
    const [raw, counts] = reply as [unknown[], number[]];
    return raw.map((entry, i) => toEntry(stream, entry, counts[i] ?? 1));
  }

  async range(stream: string, start = "-", count?: number): Promise<StreamEntry[]> {
    const args = ["XRANGE", stream, start, "+"];
    if (count !== undefined && count !== Infinity) {
      checkCount("count", count);
      args.push("COUNT", String(count));
    }
    const reply = await this.#call(`read stream "${stream}"`, () => this.#send(args));
    return (reply as unknown[]).map((entry) => toEntry(stream, entry, 0));
  }

  async backlog(stream: string, group: string): Promise<number> {
    return await this.#call(`measure the backlog of stream "${stream}"`, async () => {
      let groups: unknown[];
      try {
        groups = await this.#send(["XINFO", "GROUPS", stream]) as unknown[];
      } catch (error) {
        if (error instanceof Error && error.message.startsWith("ERR no such key")) return 0;
        throw error;
      }
      const info = groups.map(pairs).find((g) => text(g.get("name")) === group);
      if (!info) return Number(await this.#send(["XLEN", stream]));
      const pending = Number(info.get("pending"));
      const lag = info.get("lag");
      if (typeof lag === "number") return pending + lag;
      return pending + await this.#countAfter(stream, text(info.get("last-delivered-id")));
    });
  }

  /** Counts the entries of `stream` after `id`, for servers that do not report a group's lag. */
  async #countAfter(stream: string, id: string): Promise<number> {
    let total = 0;
    let start = id === "0-0" ? "-" : `(${id}`;
    for (;;) {
      const entries = await this.#send([
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
    await this.#call(`trim stream "${stream}"`, () => this.#send(args));
  }

  async trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    checkDuration("retainMs", retainMs);
    const args = ["EVAL", TRIM_SCRIPT, "1", stream, String(Math.floor(retainMs))];
    const what = `trim acknowledged entries of stream "${stream}"`;
    return Number(await this.#call(what, () => this.#send(args)));
  }

  async putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Cannot store value "${key}": ttlMs must be positive, got ${ttlMs}`);
    }
    const what = `store value "${key}"`;
    this.#checkSize(what, data);
    const args = ["SET", key, Buffer.from(data), "PX", String(Math.ceil(ttlMs))];
    await this.#call(what, () => this.#send(args));
  }

  async putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Cannot store value "${key}": ttlMs must be positive, got ${ttlMs}`);
    }
    const what = `store value "${key}"`;
    this.#checkSize(what, data);
    const args = ["SET", key, Buffer.from(data), "PX", String(Math.ceil(ttlMs)), "NX"];
    return (await this.#call(what, () => this.#send(args))) !== null;
  }

  async getBlob(key: string): Promise<Uint8Array | null> {
    const value = await this.#call(`load value "${key}"`, () => this.#send(["GET", key]));
    return value === null ? null : bytes(value);
  }

  async deleteBlobs(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      await this.#call(`delete ${batch.length} values`, () => this.#send(["UNLINK", ...batch]));
    }
  }

  /** Deletes every key starting with `prefix`; the empty prefix is refused (it is every key). */
  async deletePrefix(prefix: string): Promise<void> {
    if (prefix === "") throw new RangeError("Cannot delete keys by prefix: the prefix is empty");
    const what = `delete keys starting with "${prefix}"`;
    const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
    let cursor = "0";
    do {
      const [next, keys] = await this.#call(what, async () => {
        const reply = await this.#send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]);
        const [, keys] = reply as [unknown, Buffer[]];
        if (keys.length > 0) await this.#send(["UNLINK", ...keys]);
        return reply as [unknown, Buffer[]];
      });
      cursor = text(next);
      for (const key of keys) this.#forgetStream(text(key));
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
    if (this.#closed) return;
    this.#closed = true;
    for (const check of this.#waiters) check();
    await this.#closeConnections();
    await this.#checking;
  }

  /** Same as {@linkcode RedisTransport.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #closeConnections(): Promise<void> {
    await Promise.all([this.#cmd.close(), this.#blocker.close(), ...this.#retired]);
  }

  #onReady(): void {
    // The first two connections make epoch 0; any later one is a reconnect.
    if (++this.#readyCount > 2) {
      this.#epoch++;
      this.#checkEpoch(true);
    }
    for (const check of this.#waiters) check();
  }

  /** The epoch key's value, set first when it is missing. */
  async #readEpoch(): Promise<void> {
    this.#epochValue = text(await this.#send(this.#epochCommand()));
  }

  /** Reads the server's `proto-max-bulk-len`; a server that does not tell keeps the default. */
  async #readMaxBulk(): Promise<void> {
    let reply: unknown;
    try {
      reply = await this.#send(["CONFIG", "GET", "proto-max-bulk-len"]);
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

  /**
   * Replaces the command connection after a protocol error: the server drops such a connection,
   * and node-redis could match later replies to the wrong commands. Calls in flight on the old one
   * fail as if disconnected, and are sent again on the new one once it is up.
   */
  #resetCommandConnection(): void {
    const old = this.#cmd;
    this.#cmd = this.#newCommandConnection();
    const retired = old.close().catch(() => {}).finally(() => this.#retired.delete(retired));
    this.#retired.add(retired);
    this.#cmd.client.connect().catch((error) => this.#lastError = error);
    // The limit may have changed since the connect (CONFIG SET): read it again once up.
    const deadline = Date.now() + this.#commandTimeoutMs;
    this.#attempt(
      "read the server's value limit",
      deadline,
      () => [this.#cmd],
      () => this.#readMaxBulk(),
    ).catch(() => {});
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
      for (const check of this.#waiters) check();
    });
  }

  async #runChecks(): Promise<void> {
    let pause = MIN_BACKOFF_MS;
    while (this.#checksDone < this.#checksWanted && !this.#closed) {
      const wanted = this.#checksWanted;
      const afterReconnect = this.#checkAfterReconnect;
      let value: string;
      try {
        // First in the command connection's queue: before calls queued while it was away.
        value = text(await this.#send(this.#epochCommand(), { asap: true }));
      } catch (error) {
        if (this.#closed) return;
        this.#lastError = error;
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
      this.#groups.clear();
      this.#recovery.clear();
      this.#recovered = new WeakMap();
      const server = new URL(this.url).host;
      const reason = afterReconnect
        ? `Redis at ${server} restarted without its data (key "${this.#epochKey}" was gone after a reconnect)`
        : `Redis at ${server} lost its data (key "${this.#epochKey}" was gone)`;
      for (const listener of [...this.#lostListeners]) {
        try {
          listener(reason);
        } catch {
          // A listener's failure is its own; the others still hear.
        }
      }
    }
  }

  /** Whether `connections` are up and the server's data was checked since each reconnect. */
  #up(connections: readonly Connection[]): boolean {
    return this.#closed ||
      (connections.every((c) => c.ready) && this.#checksDone === this.#checksWanted);
  }

  /** Sends one command on the command connection. */
  #send(args: Arg[], options?: { chainId?: symbol; asap?: boolean }): Promise<unknown> {
    return this.#cmd.client.sendCommand<unknown>(args, options);
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new TransportClosedError(`Cannot ${what}: the transport is closed`);
  }

  #unreachable(what: string): TransportClosedError {
    return new TransportClosedError(
      `Cannot ${what}: no answer from ${this.url} for ${this.#commandTimeoutMs} ms`,
      { cause: this.#scrubError(this.#lastError) },
    );
  }

  #scrub(message: string): string {
    return this.#secrets.reduce((m, secret) => m.replaceAll(secret, "***"), message);
  }

  /** `error`, or a copy without the password when its message or stack shows it. */
  #scrubError(error: unknown): unknown {
    if (!(error instanceof Error)) {
      return typeof error === "string" ? this.#scrub(error) : error;
    }
    const shown = `${error.message}\n${error.stack ?? ""}`;
    if (this.#scrub(shown) === shown) return error;
    const copy = new Error(this.#scrub(error.message));
    copy.name = error.name;
    copy.stack = this.#scrub(error.stack ?? "");
    return copy;
  }

  /** Runs `op` until it succeeds, giving up after `commandTimeoutMs`. */
  async #call<T>(what: string, op: () => Promise<T>): Promise<T> {
    this.#checkOpen(what);
    try {
      return await this.#attempt(what, Date.now() + this.#commandTimeoutMs, () => [this.#cmd], op);
    } catch (error) {
      if (error instanceof DeadlinePassed) throw this.#unreachable(what);
      throw error;
    }
  }

  /**
   * Runs `op` until it succeeds or fails with an answer from the server; after a lost connection
   * it waits for the server and runs `op` again. Throws `DeadlinePassed` at `deadline`.
   */
  async #attempt<T>(
    what: string,
    deadline: number,
    uses: () => readonly Connection[],
    op: (abandon: Abandon) => Promise<T>,
  ): Promise<T> {
    for (;;) {
      this.#checkOpen(what);
      if (!this.#up(uses())) {
        // Not sent while the server is away (node-redis would queue it): it would go out on the
        // reconnect before the server's data was checked.
        this.#silentSince ??= Date.now();
        if (Date.now() >= deadline) throw new DeadlinePassed("Deadline passed");
        await this.#waitForServer(uses, deadline);
        continue;
      }
      const abandon: Abandon = { abandoned: false };
      try {
        const result = await withDeadline(op(abandon), deadline, abandon);
        this.#silentSince = undefined;
        return result;
      } catch (error) {
        if (this.#closed) {
          throw new TransportClosedError(`Cannot ${what}: the transport is closed`, {
            cause: error,
          });
        }
        if (error instanceof DeadlinePassed) {
          this.#silentSince ??= Date.now();
          throw error;
        }
        if (isServerReply(error) && isProtocolError(error)) this.#resetCommandConnection();
        const transient = isServerReply(error) && isTransient(error);
        if (
          !transient &&
          (isServerReply(error) || error instanceof TypeError || error instanceof RangeError)
        ) {
          throw error;
        }
        this.#lastError = error;
        this.#silentSince ??= Date.now();
        await this.#waitForServer(uses, deadline);
      }
    }
  }

  /**
   * Resolves once the connections are all up (after a short pause if they are already), at
   * `deadline`, or on close.
   */
  #waitForServer(connections: () => readonly Connection[], deadline: number): Promise<void> {
    const up = () => this.#up(connections());
    const upNow = up();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const check = () => {
        if (up()) wake();
      };
      const timer = setTimeout(wake, upNow ? RETRY_PAUSE_MS : Math.max(0, deadline - Date.now()));
      if (!upNow) this.#waiters.add(check);
    });
  }

  async #takeTurn(): Promise<() => void> {
    let release!: () => void;
    const previous = this.#turn;
    this.#turn = new Promise<void>((resolve) => release = resolve);
    await previous;
    return release;
  }

  /** `MULTI` … `EXEC` in one round trip, decoded binary-safe (node-redis' `multi()` is not). */
  async #transaction(commands: Arg[][]): Promise<unknown[]> {
    const chainId = Symbol("transaction");
    const replies = await Promise.all([
      this.#send(["MULTI"], { chainId }),
      ...commands.map((args) => this.#send(args, { chainId })),
      this.#send(["EXEC"], { chainId }),
    ]);
    const results = replies[replies.length - 1] as unknown[];
    const failed = results.find((r) => r instanceof Error);
    if (failed) throw failed;
    return results;
  }

  /** Runs `op`, creating the group on `streams` first where it is not known to exist. */
  async #withGroups<T>(
    group: string,
    streams: readonly string[],
    op: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1;; attempt++) {
      let known = this.#groups.get(group);
      if (!known) this.#groups.set(group, known = new Set());
      const missing = streams.filter((s) => !known.has(s));
      await Promise.all(missing.map(async (stream) => {
        try {
          await this.#send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"]);
        } catch (error) {
          if (!(error instanceof Error && error.message.startsWith("BUSYGROUP"))) throw error;
        }
        known.add(stream);
      }));
      try {
        return await op();
      } catch (error) {
        // The server lost the group (a restart without persistence, a deleted key): make it again,
        // and find out whether the server lost everything.
        if (!isGroupLost(error) || attempt >= MAX_GROUP_RETRIES) throw error;
        this.#checkEpoch(false);
        for (const stream of streams) known.delete(stream);
      }
    }
  }

  #forgetStream(stream: string): void {
    for (const streams of this.#groups.values()) streams.delete(stream);
  }

  /** Re-reads the consumer's own pending entries once after each (re)connect. */
  async #recover(
    group: string,
    consumer: string,
    streams: readonly string[],
    count: number,
    abandon: Abandon,
  ): Promise<StreamEntry[]> {
    const recovered = this.#recovered.get(streams);
    if (
      recovered?.epoch === this.#epoch && recovered.group === group &&
      recovered.consumer === consumer
    ) return [];
    const states: [string, Recovery][] = [];
    for (const stream of streams) {
      const key = JSON.stringify([group, consumer, stream]);
      let state = this.#recovery.get(key);
      if (!state || state.epoch !== this.#epoch) {
        this.#recovery.set(key, state = { epoch: this.#epoch, cursor: "0" });
      }
      if (state.cursor !== undefined) states.push([stream, state]);
    }
    if (states.length === 0) {
      this.#recovered.set(streams, { epoch: this.#epoch, group, consumer });
      return [];
    }
    const entries = await this.#readOwn(
      group,
      consumer,
      states.map(([stream, state]) => [stream, state.cursor ?? "0"] as const),
      count,
    );
    // A dropped result must be re-read: the cursors stay.
    if (abandon.abandoned) return entries;
    for (const [stream, state] of states) {
      const own = entries.filter((e) => e.stream === stream);
      state.cursor = own.length < count ? undefined : own[own.length - 1].id;
    }
    return entries;
  }

  /** Forces a re-read of the consumer's pending entries: a read's result was dropped. */
  #forgetRecovery(group: string, consumer: string, streams: readonly string[]): void {
    this.#recovered = new WeakMap();
    for (const stream of streams) this.#recovery.delete(JSON.stringify([group, consumer, stream]));
  }

  /** The consumer's pending entries after each stream's cursor, with their delivery counts. */
  async #readOwn(
    group: string,
    consumer: string,
    cursors: readonly (readonly [string, string])[],
    count: number,
  ): Promise<StreamEntry[]> {
    const n = String(count);
    const streams = cursors.map(([stream]) => stream);
    const ids = cursors.map(([, cursor]) => cursor);
    const [read, ...pending] = await this.#transaction([
      ["XREADGROUP", "GROUP", group, consumer, "COUNT", n, "STREAMS", ...streams, ...ids],
      ...cursors.map(([stream, cursor]) => {
        const start = cursor === "0" ? "-" : `(${cursor}`;
        return ["XPENDING", stream, group, start, "+", n, consumer];
      }),
    ]);
    const deliveries = new Map<string, number>();
    cursors.forEach(([stream], i) => {
      for (const p of pending[i] as unknown[][]) {
        deliveries.set(`${stream}\n${text(p[0])}`, Number(p[3]));
      }
    });
    return toStreamEntries(read, (stream, id) => deliveries.get(`${stream}\n${id}`) ?? 1);
  }

  /** Entries never delivered to the group, waiting up to `blockMs` on the blocking connection. */
  async #readNew(
    group: string,
    consumer: string,
    streams: readonly string[],
    count: number,
    blockMs: number,
    abandon: Abandon,
  ): Promise<StreamEntry[]> {
    const { client } = blockMs > 0 ? this.#blocker : this.#cmd;
    const args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)];
    if (blockMs > 0) args.push("BLOCK", String(Math.ceil(blockMs)));
    args.push("STREAMS", ...streams, ...streams.map(() => ">"));
    const reply = await client.sendCommand<unknown>(args);
    const entries = toStreamEntries(reply, () => 1);
    if (abandon.abandoned && entries.length > 0) this.#forgetRecovery(group, consumer, streams);
    return entries;
  }
}

/** Settles like `promise`, or rejects with `DeadlinePassed` at `deadline`, marking `abandon`. */
function withDeadline<T>(promise: Promise<T>, deadline: number, abandon: Abandon): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      abandon.abandoned = true;
      reject(new DeadlinePassed("Deadline passed"));
    }, Math.max(0, deadline - Date.now()));
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function xadd(stream: string, data: Uint8Array, maxLen: number | undefined): Arg[] {
  const args: Arg[] = ["XADD", stream];
  if (maxLen !== undefined) {
    checkLength("maxLen", maxLen);
    args.push("MAXLEN", "~", String(maxLen));
  }
  args.push("*", FIELD, Buffer.from(data));
  return args;
}

/** Parses an `XREADGROUP` reply: `null`, or `[[stream, [[id, fields], …]], …]`. */
function toStreamEntries(
  reply: unknown,
  deliveries: (stream: string, id: string) => number,
): StreamEntry[] {
  if (reply === null) return [];
  return (reply as [unknown, unknown[]][]).flatMap(([key, entries]) => {
    const stream = text(key);
    return entries.map((entry) => {
      const id = text((entry as unknown[])[0]);
      return toEntry(stream, entry, deliveries(stream, id));
    });
  });
}

/** Parses one stream entry, `[id, [field, value, …] | null]`. */
function toEntry(stream: string, entry: unknown, deliveries: number): StreamEntry {
  const [id, fields] = entry as [unknown, unknown[] | null];
  let data: Uint8Array | null = null;
  for (let i = 0; fields && i + 1 < fields.length; i += 2) {
    if (text(fields[i]) === FIELD) {
      data = bytes(fields[i + 1]);
      break;
    }
  }
  return { stream, id: text(id), data, deliveries };
}

/** A flat `[key, value, …]` reply as a map. */
function pairs(reply: unknown): Map<string, unknown> {
  const list = reply as unknown[];
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < list.length; i += 2) map.set(text(list[i]), list[i + 1]);
  return map;
}

function text(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString();
  return value instanceof Uint8Array ? new TextDecoder().decode(value) : String(value);
}

function bytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return new TextEncoder().encode(String(value));
}

/** Whether `error` is an error reply of the server (node-redis `ErrorReply`). */
function isServerReply(error: unknown): error is Error {
  // deps_redis.ts does not export ErrorReply, so it is recognised by its class name.
  for (let p = error; p instanceof Error; p = Object.getPrototypeOf(p)) {
    if (p.constructor.name === "ErrorReply") return true;
  }
  return false;
}

/** Whether `error` is a TLS handshake's refusal (a certificate not trusted or not matching). */
function isTlsRefusal(error: Error): boolean {
  return /certificate|\bTLS\b|\bSSL\b|altnames/i.test(error.message);
}

/** Whether the server answered that it cannot serve yet (loading its data, running a script). */
function isTransient(error: Error): boolean {
  return /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN)\b/.test(error.message);
}

/** Whether the server answered that it could not parse a command (it then drops the connection). */
function isProtocolError(error: Error): boolean {
  return /^ERR Protocol error\b/.test(error.message);
}

/** Whether the server answered that a group (or its stream) does not exist (any more). */
function isGroupLost(error: unknown): boolean {
  return error instanceof Error && /^(NOGROUP|UNBLOCKED)\b/.test(error.message);
}

function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError("Cannot connect to Redis: the URL is not valid");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(
      `Cannot connect to Redis: expected a "redis:" or "rediss:" URL, got "${parsed.protocol}"`,
    );
  }
  if (parsed.password !== "") parsed.password = "***";
  return parsed.href;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function checkDuration(name: string, ms: number): void {
  if (!(ms >= 0) || !Number.isFinite(ms)) {
    throw new RangeError(`Cannot use ${name} ${ms}: expected a finite number of ms, 0 or more`);
  }
}

function checkCount(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`Cannot use ${name} ${n}: expected an integer, 1 or more`);
  }
}

function checkLength(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot use ${name} ${n}: expected an integer, 0 or more`);
  }
}
