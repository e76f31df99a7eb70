/**
 * Leases on the keys of a prefix (a cluster's namespace), on Redis: a stream has no expiry of its
 * own, and a kept result lives an hour, so that the keys of a cluster whose every party died
 * (`kill -9`, a kernel restart, hosts stopped one by one) would stay in Redis long after it, or
 * forever. Under a leased prefix, a stream gets an expiry when the transport creates it
 * (`PEXPIRE … NX`, sent with the `XADD` or `XGROUP CREATE` that makes it), a value meant to live
 * longer than the lease is stored for the lease, its own deadline noted in the prefix's `keep`
 * hash, and live parties renew every key of the prefix (up to a value's own deadline), one sweep
 * at a time for the whole cluster: the `lease` key of the prefix says when the last sweep was.
 * See "Streams and keys" in `docs/protocol.md`.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { Arg, RedisLink } from "./_redis_connection.ts";
import { text } from "./_redis_reply.ts";

// Whether a sweep is due: none in the last ARGV[2] ms (the lease key, renewed for ARGV[1] ms at
// each sweep, has more than ARGV[1] - ARGV[2] ms left). Claims the sweep when it is, in the same
// step, so that of parties that ask at once one sweeps. Returns that (1 or 0) and the key's value:
// a token set (to ARGV[3]) when the key was missing, a new prefix or a lease that ran out, so that
// every party that saw the old token can tell.
const SWEEP_DUE_SCRIPT = `
local t = redis.call('PTTL', KEYS[1])
if t == -2 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[1])
  return {1, ARGV[3]}
end
local token = redis.call('GET', KEYS[1])
if t > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return {0, token} end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {1, token}
`;

// Renews the keys KEYS[2..] for ARGV[1] ms. A value noted in the hash KEYS[1] (its own deadline,
// ms since the epoch) is renewed up to that deadline, and deleted past it; a value not noted there
// keeps its own expiry; any other key (a stream, the hash) gets ARGV[1] ms, unless it has more.
const RENEW_SCRIPT = `
local ttl = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 2, #KEYS do
  local k = KEYS[i]
  local t = redis.call('PTTL', k)
  if t ~= -2 then
    local own = redis.call('HGET', KEYS[1], k)
    if own then
      local left = tonumber(own) - now
      if left > ttl then
        redis.call('PEXPIRE', k, ARGV[1])
      else
        redis.call('HDEL', KEYS[1], k)
        if left > 0 then redis.call('PEXPIRE', k, string.format('%d', left))
        else redis.call('DEL', k) end
      end
    elseif redis.call('TYPE', k).ok ~= 'string' and (t == -1 or t < ttl) then
      redis.call('PEXPIRE', k, ARGV[1])
    end
  end
end
return #KEYS - 1
`;

/** The name, under a leased prefix, of the key that says when its keys were last renewed. */
export function leaseKey(prefix: string): string {
  return `${prefix}lease`;
}

/** The name, under a leased prefix, of the hash of its values' own deadlines. */
export function keepKey(prefix: string): string {
  return `${prefix}keep`;
}

/** The leased prefixes of one transport and their sweeps. */
export class StreamLeases {
  readonly #link: RedisLink;
  /** Leased prefixes and their lease time, in ms. */
  readonly #leases = new Map<string, number>();
  /** The lease token this transport last saw, by prefix: found changed, the lease ran out. */
  readonly #seen = new Map<string, string>();
  readonly #onLapsed: (prefix: string, ttlMs: number) => void;

  /**
   * Leases on `link`; `onLapsed` is called when a prefix's lease is found to have run out while
   * this transport's parties lived (the server was away longer than the lease): its keys may
   * be gone.
   */
  constructor(link: RedisLink, onLapsed: (prefix: string, ttlMs: number) => void) {
    this.#link = link;
    this.#onLapsed = onLapsed;
  }

  /** Leases the keys under `prefix` for `ttlMs` from their creation or last renewal. */
  lease(prefix: string, ttlMs: number): void {
    if (prefix === "") throw new RangeError("Cannot lease keys: the prefix is empty");
    this.#leases.set(prefix, Math.max(1, Math.floor(ttlMs)));
  }

  /**
   * How long to store a value `key` meant to live `ttlMs`: at most its prefix's lease, the rest
   * noted (by `notes`, sent with the `SET`) for the sweeps to renew.
   */
  value(key: string, ttlMs: number): { ttlMs: number; notes: Arg[][] } {
    const lease = this.#prefixOf(key);
    if (lease === undefined || ttlMs <= lease.ttl) return { ttlMs, notes: [] };
    const keep = keepKey(lease.prefix);
    return {
      ttlMs: lease.ttl,
      notes: [
        ["HSET", keep, key, String(Math.ceil(Date.now() + ttlMs))],
        ["PEXPIRE", keep, String(lease.ttl), "NX"],
      ],
    };
  }

  /** The commands that forget the deadlines of values `keys`, deleted. */
  forget(keys: readonly string[]): Arg[][] {
    const byPrefix = new Map<string, string[]>();
    for (const key of keys) {
      const lease = this.#prefixOf(key);
      if (lease) byPrefix.set(lease.prefix, [...byPrefix.get(lease.prefix) ?? [], key]);
    }
    return [...byPrefix].map(([prefix, ks]) => ["HDEL", keepKey(prefix), ...ks]);
  }

  /** The commands that give `streams` (just created, maybe) their lease, where they have one. */
  expiries(streams: readonly string[]): Arg[][] {
    if (this.#leases.size === 0) return [];
    const out: Arg[][] = [];
    for (const stream of streams) {
      const lease = this.#prefixOf(stream);
      if (lease) out.push(["PEXPIRE", stream, String(lease.ttl), "NX"]);
    }
    return out;
  }

  /** Sends lease `commands` on the link, never failing: a sweep renews. */
  sendExpiries(commands: readonly Arg[][]): void {
    for (const command of commands) this.#link.send(command).catch(() => {});
  }

  /**
   * Renews the lease of every key under `prefix`, unless some party did in the last `sweepMs`.
   * Returns whether this call swept.
   */
  async renew(prefix: string, sweepMs: number): Promise<boolean> {
    const ttl = this.#leases.get(prefix);
    if (ttl === undefined) throw new RangeError(`Cannot renew lease: "${prefix}" is not leased`);
    const what = `renew the lease of keys starting with "${prefix}"`;
    const [due, token] = await this.#link.call(what, [], () =>
      this.#link.send([
        "EVAL",
        SWEEP_DUE_SCRIPT,
        "1",
        leaseKey(prefix),
        String(ttl),
        String(Math.floor(sweepMs)),
        crypto.randomUUID(),
      ])) as [unknown, unknown];
    const seen = this.#seen.get(prefix);
    this.#seen.set(prefix, text(token));
    if (seen !== undefined && seen !== text(token)) this.#onLapsed(prefix, ttl);
    if (Number(due) === 0) return false;
    const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
    let cursor = "0";
    do {
      const [next] = await this.#link.call(what, [], async () => {
        const reply = await this.#link.send(
          ["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"],
        ) as [unknown, Buffer[]];
        const keys = reply[1];
        if (keys.length > 0) {
          await this.#link.send(
            ["EVAL", RENEW_SCRIPT, String(keys.length + 1), keepKey(prefix), ...keys, String(ttl)],
          );
        }
        return reply;
      });
      cursor = text(next);
    } while (cursor !== "0");
    return true;
  }

  #prefixOf(key: string): { prefix: string; ttl: number } | undefined {
    for (const [prefix, ttl] of this.#leases) if (key.startsWith(prefix)) return { prefix, ttl };
    return undefined;
  }
}
