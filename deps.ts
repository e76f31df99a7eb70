// Every third-party specifier the library uses, pinned. Source files import from here, never from
// bare specifiers: a module imported by URL does not see the importer's import map.
export { Decoder, Encoder, ExtData, ExtensionCodec } from "npm:@msgpack/msgpack@3.1.3";
export { parse as parseJavaScript } from "npm:acorn@8.15.0";

// Held in a variable so that Deno does not fetch the Redis client ahead of time: the embedded
// transport never downloads it.
const REDIS_CLIENT = "npm:@redis/client@5.10.0";
/** The Redis client's module. */
export type RedisClientModule = typeof import("npm:@redis/client@5.10.0");
/** Loads the Redis client; only a `redis://` or `rediss://` URL (or a cluster's) calls this. */
export function loadRedisClient(): Promise<RedisClientModule> {
  return import(REDIS_CLIENT);
}

const KEY_SLOT = "npm:cluster-key-slot@1.1.2";
/** Loads Redis Cluster's key-to-slot hash (CRC16 of the key's hash tag, mod 16384). */
export async function loadKeySlot(): Promise<(key: string) => number> {
  return (await import(KEY_SLOT)).default;
}
