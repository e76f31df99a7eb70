/**
 * Leases on the streams of a key prefix (a cluster's namespace), on Redis: a stream has no expiry
 * of its own, so that of a cluster whose every party died (`kill -9`, a kernel restart, hosts
 * stopped one by one) would stay in Redis forever. Under a leased prefix, a stream gets an
 * expiry when the transport creates it (`PEXPIRE … NX`, sent with the `XADD` or `XGROUP CREATE`
 * that makes it), and live parties renew the expiry of every stream of the prefix, one sweep at
 * a time for the whole cluster: the `lease` key of the prefix says when the last sweep was. See
 * "Streams and keys" in `docs/protocol.md`.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { Arg, RedisLink } from "./_redis_connection.ts";
import { text } from "./_redis_reply.ts";

// Whether a sweep is due: none in the last ARGV[2] ms (the lease key, set with a TTL of ARGV[1]
// at each sweep, has more than ARGV[1] - ARGV[2] ms left). Claims the sweep when it is, in the
// same step, so that of parties that ask at once one sweeps.
const SWEEP_DUE_SCRIPT = `
if redis.call('PTTL', KEYS[1]) > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
`;

// Sets the expiry of KEYS (streams) to ARGV[1] ms, unless one is set further out.
const RENEW_SCRIPT = `
local ttl = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local t = redis.call('PTTL', k)
  if t == -1 or (t >= 0 and t < ttl) then redis.call('PEXPIRE', k, ARGV[1]) end
end
return #KEYS
`;

/** The name, under a leased prefix, of the key that says when its streams were last renewed. */
export function leaseKey(prefix: string): string {
  return `${prefix}lease`;
}

/** The leased prefixes of one transport and their sweeps. */
export class StreamLeases {
  readonly #link: RedisLink;
  /** Leased prefixes and their lease time, in ms. */
  readonly #leases = new Map<string, number>();

  constructor(link: RedisLink) {
    this.#link = link;
  }

  /** Leases the streams under `prefix` for `ttlMs` from their creation or last renewal. */
  lease(prefix: string, ttlMs: number): void {
    if (prefix === "") throw new RangeError("Cannot lease streams: the prefix is empty");
    this.#leases.set(prefix, Math.max(1, Math.floor(ttlMs)));
  }

  /** The commands that give `streams` (just created, maybe) their lease, where they have one. */
  expiries(streams: readonly string[]): Arg[][] {
    if (this.#leases.size === 0) return [];
    const out: Arg[][] = [];
    for (const stream of streams) {
      const ttl = this.#ttlOf(stream);
      if (ttl !== undefined) out.push(["PEXPIRE", stream, String(ttl), "NX"]);
    }
    return out;
  }

  /** Sends `commands` from {@linkcode expiries} on the link, never failing: a sweep renews. */
  sendExpiries(commands: readonly Arg[][]): void {
    for (const command of commands) this.#link.send(command).catch(() => {});
  }

  /**
   * Renews the lease of every stream under `prefix`, unless some party did in the last
   * `sweepMs`. Returns whether this call swept.
   */
  async renew(prefix: string, sweepMs: number): Promise<boolean> {
    const ttl = this.#leases.get(prefix);
    if (ttl === undefined) throw new RangeError(`Cannot renew lease: "${prefix}" is not leased`);
    const what = `renew the lease of streams starting with "${prefix}"`;
    const due = await this.#link.call(what, [], () =>
      this.#link.send([
        "EVAL",
        SWEEP_DUE_SCRIPT,
        "1",
        leaseKey(prefix),
        String(ttl),
        String(Math.floor(sweepMs)),
      ]));
    if (Number(due) !== 1) return false;
    const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
    let cursor = "0";
    do {
      const [next] = await this.#link.call(what, [], async () => {
        const reply = await this.#link.send(
          ["SCAN", cursor, "MATCH", pattern, "COUNT", "1000", "TYPE", "stream"],
        ) as [unknown, Buffer[]];
        if (reply[1].length > 0) {
          await this.#link.send([
            "EVAL",
            RENEW_SCRIPT,
            String(reply[1].length),
            ...reply[1],
            String(ttl),
          ]);
        }
        return reply;
      });
      cursor = text(next);
    } while (cursor !== "0");
    return true;
  }

  #ttlOf(stream: string): number | undefined {
    for (const [prefix, ttl] of this.#leases) if (stream.startsWith(prefix)) return ttl;
    return undefined;
  }
}
