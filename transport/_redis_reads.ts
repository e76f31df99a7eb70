/**
 * Reading through consumer groups on Redis: the groups the transport knows exist (made where
 * missing, made again when the server lost them), and the re-read of each consumer's own pending
 * entries after each (re)connect, before any new entry.
 *
 * @module
 */
import type { Abandon, RedisLink } from "./_redis_connection.ts";
import { isGroupLost, text, toStreamEntries } from "./_redis_reply.ts";
import type { StreamEntry } from "./types.ts";

const MAX_GROUP_RETRIES = 3;

/** Where a consumer stands in re-reading its own pending entries of one stream. */
interface Recovery {
  /** The connection epoch the re-read belongs to. */
  epoch: number;
  /** The last id re-read, `"0"` before the first; `undefined` once done. */
  cursor?: string;
}

/** The group reads of one {@linkcode RedisLink}. */
export class GroupReader {
  #link: RedisLink;
  /** Called when a group this reader made is gone: the server may have lost everything. */
  #onGroupLost: () => void;
  /** group → streams known to have it. */
  #groups = new Map<string, Set<string>>();
  #recovery = new Map<string, Recovery>();
  /**
   * Stream lists whose every stream's pending entries were read again since the epoch began (a
   * reader passes the same list read after read): their reads skip the per-stream bookkeeping.
   */
  #recovered = new WeakMap<readonly string[], { epoch: number; group: string; consumer: string }>();

  /** Called as a group is made on a stream (which `MKSTREAM` may create), in the same tick. */
  #onCreate: (stream: string) => void;

  constructor(link: RedisLink, onGroupLost: () => void, onCreate: (stream: string) => void) {
    this.#link = link;
    this.#onGroupLost = onGroupLost;
    this.#onCreate = onCreate;
  }

  /**
   * Reads as `consumer` of `group`: its own pending entries with `from` `"0"`; otherwise those
   * still to be re-read since the last (re)connect, or else new ones, waiting up to `blockMs`.
   */
  read(
    group: string,
    consumer: string,
    streams: readonly string[],
    count: number,
    blockMs: number,
    from: ">" | "0",
    abandon: Abandon,
  ): Promise<StreamEntry[]> {
    return this.#withGroups(group, streams, async () => {
      if (from === "0") {
        return await this.#readOwn(group, consumer, streams.map((s) => [s, "0"] as const), count);
      }
      const own = await this.#recover(group, consumer, streams, count, abandon);
      if (own.length > 0 || abandon.abandoned) return own;
      return await this.#readNew(group, consumer, streams, count, blockMs, abandon);
    });
  }

  /** Forgets that `stream` has groups: it was deleted. */
  forgetStream(stream: string): void {
    for (const streams of this.#groups.values()) streams.delete(stream);
  }

  /** Forgets every group and pending entry: they went with the server's data. */
  forgetAll(): void {
    this.#groups.clear();
    this.#recovery.clear();
    this.#recovered = new WeakMap();
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
          const created = this.#link.send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"]);
          // Sent in the same tick, so in the same write: a process killed now leaves no stream
          // made without its expiry.
          this.#onCreate(stream);
          await created;
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
        this.#onGroupLost();
        for (const stream of streams) known.delete(stream);
      }
    }
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
      recovered?.epoch === this.#link.reconnects && recovered.group === group &&
      recovered.consumer === consumer
    ) return [];
    const states: [string, Recovery][] = [];
    for (const stream of streams) {
      const key = JSON.stringify([group, consumer, stream]);
      let state = this.#recovery.get(key);
      if (!state || state.epoch !== this.#link.reconnects) {
        this.#recovery.set(key, state = { epoch: this.#link.reconnects, cursor: "0" });
      }
      if (state.cursor !== undefined) states.push([stream, state]);
    }
    if (states.length === 0) {
      this.#recovered.set(streams, { epoch: this.#link.reconnects, group, consumer });
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
    const [read, ...pending] = await this.#link.transaction([
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
    const args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)];
    if (blockMs > 0) args.push("BLOCK", String(Math.ceil(blockMs)));
    args.push("STREAMS", ...streams, ...streams.map(() => ">"));
    const reply = await this.#link.sendOn(blockMs > 0, args);
    const entries = toStreamEntries(reply, () => 1);
    if (abandon.abandoned && entries.length > 0) this.#forgetRecovery(group, consumer, streams);
    return entries;
  }
}
