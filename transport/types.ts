/**
 * The one interface every transport implements: named append-only streams read through consumer
 * groups, the model of Redis Streams. Entries carry one binary payload each.
 *
 * @module
 */

/** One entry read from a stream. */
export interface StreamEntry {
  /** The stream the entry belongs to. */
  stream: string;
  /** The entry's id, unique and increasing within its stream (`"<ms>-<seq>"`). */
  id: string;
  /** The entry's payload, or `null` when the entry has no payload field (a stray writer's). */
  data: Uint8Array | null;
  /**
   * How many times the entry was delivered to a consumer of the group: 1 on first delivery, one
   * more for each claim and each re-read of a pending entry; 0 for entries read by `range`.
   */
  deliveries: number;
}

/** Options of {@linkcode Transport.append}. */
export interface AppendOptions {
  /** Trim the stream to about this many entries (Redis `MAXLEN ~`). */
  maxLen?: number;
  /**
   * Drop the stream's entries older than this many ms (by their ids' time) at this append (Redis
   * `MINID ~`); on Redis the stream's key also expires this long after its last such append.
   */
  maxAgeMs?: number;
}

/** Options of {@linkcode Transport.read}. */
export interface ReadOptions {
  /** The most entries to return per stream. Default 100. */
  count?: number;
  /** How long to wait for an entry when none is ready, in ms; 0 returns at once. Default 1000. */
  blockMs?: number;
  /**
   * `">"` (default) reads entries never delivered to the group; `"0"` re-reads this consumer's
   * own pending entries, those delivered to it and not yet acknowledged.
   */
  from?: ">" | "0";
}

/**
 * A store of streams shared by every actor of a cluster.
 *
 * A consumer group delivers each entry of a stream to one consumer; the entry stays pending until
 * acknowledged, and another consumer can claim it after it stayed pending long enough (its
 * consumer died). Groups are created on first read; a stream is created on first append.
 */
export interface Transport {
  /** The transport's address, with any password hidden. */
  readonly url: string;
  /** Appends `data` to `stream` and returns the new entry's id. */
  append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string>;
  /** Appends several entries at once, in order, and returns their ids. */
  appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]>;
  /**
   * Reads entries of `streams` as `consumer` of `group`, creating the group on any stream that
   * lacks it, waiting at most `blockMs` when none is ready. Returns `[]` when the wait ends empty.
   */
  read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options?: ReadOptions,
  ): Promise<StreamEntry[]>;
  /** Acknowledges handled entries: they leave the group's pending list. */
  ack(stream: string, group: string, ids: readonly string[]): Promise<void>;
  /**
   * Moves to `consumer` the entries of `streams` (one stream, or several at once: one call to the
   * server for them all) pending in `group` for at least `minIdleMs`, and returns them, their
   * delivery counts raised by one: at most `count` per stream. A stream without the group has
   * none.
   */
  claim(
    streams: string | readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count?: number,
  ): Promise<StreamEntry[]>;
  /**
   * Moves to `consumer` the entries of `stream` pending in `group` for consumer `owner` (one that
   * is gone), however long they were pending, and returns them, their delivery counts raised by
   * one. Entries deleted from the stream meanwhile leave the pending list and are not returned.
   */
  claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count?: number,
  ): Promise<StreamEntry[]>;
  /** Reads entries of `stream` in order, outside any group, from `start` (inclusive; `"-"`). */
  range(stream: string, start?: string, count?: number): Promise<StreamEntry[]>;
  /** How many entries of `stream` the group has not yet had delivered, plus those pending. */
  backlog(stream: string, group: string): Promise<number>;
  /** Trims `stream` to at most `maxLen` newest entries. */
  trim(stream: string, maxLen: number): Promise<void>;
  /**
   * Deletes the entries of `stream` that every group of the stream has had delivered and
   * acknowledged and that were added more than `retainMs` ago (by the ids' clock). Entries not
   * yet delivered to some group, and those pending, stay, and so does everything after the
   * first of them. A stream no group reads keeps every entry. Returns how many entries went.
   */
  trimAcknowledged(stream: string, retainMs: number): Promise<number>;
  /** Stores a value under `key` for `ttlMs` (values too large to copy into every message). */
  putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void>;
  /**
   * Stores `data` under `key` for `ttlMs` unless a value is stored there already (Redis
   * `SET NX`), in one step: of several callers, one stores. Returns whether this one did.
   */
  putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean>;
  /** The value stored under `key`, or `null` when there is none (never stored, or expired). */
  getBlob(key: string): Promise<Uint8Array | null>;
  /** Deletes the values stored under `keys` (missing ones are skipped). */
  deleteBlobs(keys: readonly string[]): Promise<void>;
  /**
   * Leases the keys under `prefix` (a cluster's namespace), on a transport whose server outlives
   * its clients (Redis): a stream there that this transport creates from now on expires `ttlMs`
   * later unless {@linkcode renewLease} renews it, and so does a value it stores for longer
   * (renewed up to its own TTL), so that the keys of a cluster whose every party is gone leave
   * the server. Absent where streams end with their clients.
   */
  leaseKeys?(prefix: string, ttlMs: number): void;
  /**
   * Renews the lease of every key under `prefix` (see {@linkcode leaseKeys}) for its `ttlMs`,
   * unless some party did in the last `sweepMs`. Resolves to whether this call did.
   */
  renewLease?(prefix: string, sweepMs: number): Promise<boolean>;
  /** Deletes every stream and value whose key starts with `prefix`. */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Calls `listener` each time the transport finds that its server lost what it held (streams,
   * groups, values): a Redis that restarted without persistence, or was flushed, or a lease of
   * {@linkcode leaseKeys} that ran out while the server was away. Entries appended
   * before (messages not yet read, answers not yet read) are gone, so answers awaited from then
   * may never come. `reason` says what was found, without any password. The listener is called
   * before the transport carries on with other calls. Returns a function that removes it. A
   * transport whose data cannot be lost (the embedded one) never calls it.
   */
  onDataLost(listener: (reason: string) => void): () => void;
  /** Closes the transport's connections; pending and later calls reject. */
  close(): Promise<void>;
}
