/**
 * The transports: named append-only streams read through consumer groups, in this process's
 * memory ({@linkcode MemoryTransport}) or in Redis (`RedisTransport`), chosen by URL with
 * {@linkcode createTransport}. This is what an actor system runs on; most programs only pass a URL
 * as `ClusterOptions.transport` and never use a transport directly.
 *
 * ```ts
 * import { createTransport } from "./mod.ts";
 *
 * const transport = await createTransport("memory:");
 * await transport.append("inbox", new TextEncoder().encode("hello"));
 * const [entry] = await transport.read("readers", "reader-1", ["inbox"], { blockMs: 0 });
 * await transport.ack("inbox", "readers", [entry.id]);
 * await transport.close();
 * ```
 *
 * @module
 */
import { MemoryTransport } from "./memory.ts";
import type { RedisTransportOptions } from "./redis.ts";
import type { Transport } from "./types.ts";
import { redactUrl } from "./_url.ts";

export { MemoryTransport } from "./memory.ts";
export type { RedisTransport, RedisTransportOptions } from "./redis.ts";
export type { RedisClusterTransport } from "./redis_cluster.ts";
export type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";
export { redactUrl } from "./_url.ts";

/**
 * Opens the transport a URL names: `"memory:"` (the default) gives a new embedded
 * {@linkcode MemoryTransport}; `redis://…` and `rediss://…` connect a `RedisTransport` with
 * `options`, its client library loaded only then; `redis+cluster://host:port,host:port…` (or
 * `rediss+cluster://…`) connects a `RedisClusterTransport` to a Redis Cluster. Rejects with `TypeError` for any other URL, and
 * with `TransportClosedError` when Redis cannot be reached.
 *
 * @example Open the embedded transport
 * ```ts
 * import { createTransport } from "./mod.ts";
 *
 * const transport = await createTransport();
 * console.log(transport.url); // "memory:"
 * await transport.close();
 * ```
 *
 * @example Connect to Redis
 * ```ts ignore
 * import { createTransport } from "./mod.ts";
 *
 * const transport = await createTransport("redis://:secret@127.0.0.1:6379", {
 *   commandTimeoutMs: 5000,
 * });
 * console.log(transport.url); // "redis://:***@127.0.0.1:6379"
 * await transport.close();
 * ```
 */
export async function createTransport(
  url = "memory:",
  options: RedisTransportOptions = {},
): Promise<Transport> {
  const scheme = url.slice(0, url.indexOf(":") + 1);
  switch (scheme) {
    case "memory:":
      return new MemoryTransport();
    case "redis:":
    case "rediss:": {
      const { RedisTransport } = await import("./redis.ts");
      return await RedisTransport.connect(url, options);
    }
    case "redis+cluster:":
    case "rediss+cluster:": {
      const { RedisClusterTransport } = await import("./redis_cluster.ts");
      return await RedisClusterTransport.connect(url, options);
    }
    default:
      throw new TypeError(
        `Cannot open transport "${
          redactUrl(url)
        }": expected "memory:", "redis://…", "rediss://…" or "redis+cluster://…"`,
      );
  }
}
