/**
 * Which master of a Redis Cluster serves which hash slot, as `CLUSTER SLOTS` tells: asked of the
 * known nodes in turn, each on a short-lived connection of its own.
 *
 * @module
 */
import { createClient } from "../deps_redis.ts";

/** Redis Cluster's number of hash slots. */
export const SLOTS = 16384;

/** The masters of a cluster and their slots. */
export interface SlotMap {
  /** The `host:port` of the master serving each slot; `undefined` for a slot none serves. */
  owner: (string | undefined)[];
  /** Each master's slot ranges, `[first, last]`. */
  ranges: Map<string, [number, number][]>;
}

/** How to reach the nodes of a cluster. */
export interface NodeAccess {
  /** The `redis://` (or `rediss://`) URL of node `address`, credentials in, no query. */
  url(address: string): string;
  /** The CAs to trust, for TLS. */
  ca?: string;
  /** `message` without the password. */
  scrub(message: string): string;
}

/**
 * Asks `addresses` in turn for the cluster's slots, each for at most `timeoutMs`, and returns the
 * first map one gives; throws an `Error` whose message says why the last one failed otherwise.
 */
export async function discoverSlots(
  addresses: readonly string[],
  access: NodeAccess,
  timeoutMs: number,
): Promise<SlotMap> {
  let last = "no node to ask";
  for (const address of addresses) {
    try {
      return await askSlots(address, access, timeoutMs);
    } catch (error) {
      last = `${address}: ${access.scrub(error instanceof Error ? error.message : String(error))}`;
    }
  }
  throw new Error(last);
}

async function askSlots(address: string, access: NodeAccess, timeoutMs: number): Promise<SlotMap> {
  const client = createClient({
    url: access.url(address),
    disableClientInfo: true,
    socket: {
      connectTimeout: Math.max(1, timeoutMs),
      reconnectStrategy: false,
      ...(access.ca === undefined ? {} : { ca: access.ca }),
    },
  });
  client.on("error", () => {}); // the command's own rejection says what went wrong
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const reply = await Promise.race([
      client.connect().then(() => client.sendCommand(["CLUSTER", "SLOTS"])),
      late,
    ]);
    return toSlotMap(reply as unknown as unknown[][], address);
  } finally {
    clearTimeout(timer);
    if (client.isOpen) client.destroy();
  }
}

/** `CLUSTER SLOTS`' `[[first, last, [host, port, …], …replicas], …]` as a map. */
function toSlotMap(reply: unknown[][], askedAt: string): SlotMap {
  const owner = new Array<string | undefined>(SLOTS);
  const ranges = new Map<string, [number, number][]>();
  for (const [first, last, master] of reply) {
    const [host, port] = master as [unknown, unknown];
    // An empty host means the node asked: it does not know its own address.
    const name = String(host) === "" || String(host) === "?"
      ? askedAt.slice(0, askedAt.lastIndexOf(":"))
      : String(host);
    const address = `${name.includes(":") ? `[${name}]` : name}:${Number(port)}`;
    const range: [number, number] = [Number(first), Number(last)];
    ranges.set(address, [...ranges.get(address) ?? [], range]);
    for (let slot = range[0]; slot <= range[1]; slot++) owner[slot] = address;
  }
  if (ranges.size === 0) throw new Error("the node serves no slot (not a cluster yet?)");
  return { owner, ranges };
}
