/**
 * Transports, chosen by URL.
 *
 * @module
 */
import { MemoryTransport } from "./memory.ts";
import type { Transport } from "./types.ts";

/**
 * Opens the transport a URL names: `"memory:"` (the default) gives a new embedded
 * {@linkcode MemoryTransport}; `redis://…` and `rediss://…` connect a `RedisTransport`, whose
 * client library is loaded only then.
 */
export async function createTransport(url = "memory:"): Promise<Transport> {
  const scheme = url.slice(0, url.indexOf(":") + 1);
  switch (scheme) {
    case "memory:":
      return new MemoryTransport();
    case "redis:":
    case "rediss:": {
      const { RedisTransport } = await import("./redis.ts");
      return await RedisTransport.connect(url);
    }
    default:
      throw new TypeError(
        `Cannot open transport "${
          redactUrl(url)
        }": expected "memory:", "redis://…" or "rediss://…"`,
      );
  }
}

/** `url` with any password replaced by `***`, fit to print. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}
