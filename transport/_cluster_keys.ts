/**
 * The key names of the Redis Cluster transport: a name `<namespace>:<rest>` is stored as
 * `{<namespace>}:<rest>`, so that every key of one namespace (its streams, values, lease and keep
 * keys) hashes to one slot, and the multi-key commands and scripts of the transport work there. A
 * name without `:` is stored as it is.
 *
 * @module
 */
import { loadKeySlot } from "../deps.ts";

const keySlot = await loadKeySlot();

/** The Redis key that stores `name`. */
export function clusterKey(name: string): string {
  const colon = name.indexOf(":");
  return colon < 0 ? name : `{${name.slice(0, colon)}}${name.slice(colon)}`;
}

/** The name stored under Redis key `key`: the inverse of {@linkcode clusterKey}. */
export function callerName(key: string): string {
  const colon = key.indexOf(":");
  if (colon < 2 || key[0] !== "{" || key[colon - 1] !== "}") return key;
  return key.slice(1, colon - 1) + key.slice(colon);
}

/** The hash slot (0 to 16383) of Redis key `key`. */
export function slotOf(key: string): number {
  return keySlot(key);
}
