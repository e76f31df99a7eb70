/**
 * The arguments of the Redis transport's commands: the `XADD` it sends, the checks its callers'
 * numbers and URL pass first, and how its messages list streams.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Arg } from "./_redis_connection.ts";
import { FIELD } from "./_redis_reply.ts";

/** `stream "a"`, or `streams "a", "b", "c" and 2 more`, for messages. */
export function listStreams(streams: readonly string[]): string {
  if (streams.length === 0) return "no stream";
  const shown = streams.slice(0, 3).map((s) => `"${s}"`).join(", ");
  if (streams.length === 1) return `stream ${shown}`;
  const more = streams.length > 3 ? ` and ${streams.length - 3} more` : "";
  return `streams ${shown}${more}`;
}

/** The `XADD` of `data` to `stream`, trimmed to about `maxLen` entries when given. */
export function xadd(stream: string, data: Uint8Array, maxLen: number | undefined): Arg[] {
  const args: Arg[] = ["XADD", stream];
  if (maxLen !== undefined) {
    checkLength("maxLen", maxLen);
    args.push("MAXLEN", "~", String(maxLen));
  }
  args.push("*", FIELD, Buffer.from(data));
  return args;
}

/**
 * What follows an `XADD` with `maxAgeMs` (one `XADD` takes a single trim strategy): the trim of
 * the entries older than `maxAgeMs` by their ids' time, and the key's expiry.
 */
export function ageTrim(stream: string, maxAgeMs: number): Arg[][] {
  checkLength("maxAgeMs", maxAgeMs);
  const oldest = `${Math.max(0, Date.now() - maxAgeMs)}-0`;
  return [["XTRIM", stream, "MINID", oldest], ["PEXPIRE", stream, String(maxAgeMs)]];
}

/** Throws a `TypeError` that shows no part of `url` unless it is a `redis:` or `rediss:` URL. */
export function checkRedisUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError("Cannot connect to Redis: the URL is not valid");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(
      `Cannot connect to Redis: expected a "redis:" or "rediss:" URL, got "${parsed.protocol}"`,
    );
  }
}

/** Throws a `RangeError` unless `ms` is a finite duration, 0 or more. */
export function checkDuration(name: string, ms: number): void {
  if (!(ms >= 0) || !Number.isFinite(ms)) {
    throw new RangeError(`Cannot use ${name} ${ms}: expected a finite number of ms, 0 or more`);
  }
}

/** Throws a `RangeError` unless `n` is an integer, 1 or more. */
export function checkCount(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`Cannot use ${name} ${n}: expected an integer, 1 or more`);
  }
}

/** Throws a `RangeError` unless `n` is an integer, 0 or more. */
export function checkLength(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot use ${name} ${n}: expected an integer, 0 or more`);
  }
}
