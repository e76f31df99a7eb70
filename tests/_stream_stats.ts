/**
 * What a cluster leaves in Redis, looked at from outside with a raw client: its keys, the length
 * of each stream and the entries pending in each group, and the server's memory. Used by the
 * soak test and `bench/soak.ts`.
 *
 * @module
 */
import { createClient } from "../deps_redis.ts";

/** One stream of a namespace. */
export interface StreamStat {
  /** Its key. */
  key: string;
  /** `XLEN`: its entries. */
  length: number;
  /** Entries delivered and not acknowledged, summed over its groups (`XINFO GROUPS`). */
  pending: number;
  /** Its consumer groups. */
  groups: number;
}

/** Everything under one key prefix, and the server's memory. */
export interface NamespaceStats {
  /** Keys under the prefix, streams or not. */
  keys: number;
  /** The streams, sorted by key. */
  streams: StreamStat[];
  /** Entries summed over the streams. */
  entries: number;
  /** Pending entries summed over the streams and groups. */
  pending: number;
  /** `INFO memory` `used_memory`, in bytes: the whole server's. */
  usedMemory: number;
  /** `INFO memory` `used_memory_rss`, in bytes: the server process's resident set. */
  usedMemoryRss: number;
}

/** A raw Redis client for looking at a namespace; close it with `await using`. */
export interface StreamInspector extends AsyncDisposable {
  /** The keys, streams and memory under `prefix` (e.g. `"<namespace>:"`). */
  stats(prefix: string): Promise<NamespaceStats>;
}

/** Connects a raw client to the Redis at `url`. */
export async function inspectRedis(url: string): Promise<StreamInspector> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  const send = (args: string[]) => client.sendCommand(args) as Promise<unknown>;
  return {
    async stats(prefix: string): Promise<NamespaceStats> {
      const keys: string[] = [];
      let cursor = "0";
      do {
        const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
        const [next, found] = await send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]) as [
          unknown,
          unknown[],
        ];
        cursor = String(next);
        keys.push(...found.map(String));
      } while (cursor !== "0");
      const streams: StreamStat[] = [];
      for (const key of keys.sort()) {
        if (String(await send(["TYPE", key])) !== "stream") continue;
        const length = Number(await send(["XLEN", key]));
        const groups = (await send(["XINFO", "GROUPS", key])) as unknown[][];
        let pending = 0;
        for (const group of groups) {
          for (let i = 0; i + 1 < group.length; i += 2) {
            if (String(group[i]) === "pending") pending += Number(group[i + 1]);
          }
        }
        streams.push({ key, length, pending, groups: groups.length });
      }
      const info = String(await send(["INFO", "memory"]));
      return {
        keys: keys.length,
        streams,
        entries: streams.reduce((n, s) => n + s.length, 0),
        pending: streams.reduce((n, s) => n + s.pending, 0),
        usedMemory: Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN),
        usedMemoryRss: Number(/^used_memory_rss:(\d+)/m.exec(info)?.[1] ?? NaN),
      };
    },
    [Symbol.asyncDispose]() {
      client.destroy();
      return Promise.resolve();
    },
  };
}
