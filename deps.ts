// Every third-party specifier the library uses, pinned. Source files import from here, never from
// bare specifiers: a module imported by URL does not see the importer's import map.
export { Decoder, Encoder, ExtData, ExtensionCodec } from "npm:@msgpack/msgpack@3.1.3";
export { parse as parseJavaScript } from "npm:acorn@8.15.0";

// Held in a variable so that Deno does not fetch the Redis client ahead of time: the embedded
// transport never downloads it.
const REDIS_CLIENT = "npm:@redis/client@5.10.0";
/** The Redis client's module. */
export type RedisClientModule = typeof import("npm:@redis/client@5.10.0");
/** Loads the Redis client; only a `redis://` or `rediss://` URL calls this. */
export function loadRedisClient(): Promise<RedisClientModule> {
  return import(REDIS_CLIENT);
}
