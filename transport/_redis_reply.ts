/**
 * What the Redis transport reads in the server's replies: stream entries out of `XREADGROUP`,
 * `XRANGE` and `XCLAIM` replies, and which kind of error reply (or connection error) it got.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { StreamEntry } from "./types.ts";

/** The field of a stream entry that holds its payload. */
export const FIELD = "m";

/** Parses an `XREADGROUP` reply: `null`, or `[[stream, [[id, fields], …]], …]`. */
export function toStreamEntries(
  reply: unknown,
  deliveries: (stream: string, id: string) => number,
): StreamEntry[] {
  if (reply === null) return [];
  return (reply as [unknown, unknown[]][]).flatMap(([key, entries]) => {
    const stream = text(key);
    return entries.map((entry) => {
      const id = text((entry as unknown[])[0]);
      return toEntry(stream, entry, deliveries(stream, id));
    });
  });
}

/** Parses one stream entry, `[id, [field, value, …] | null]`. */
export function toEntry(stream: string, entry: unknown, deliveries: number): StreamEntry {
  const [id, fields] = entry as [unknown, unknown[] | null];
  let data: Uint8Array | null = null;
  for (let i = 0; fields && i + 1 < fields.length; i += 2) {
    if (text(fields[i]) === FIELD) {
      data = bytes(fields[i + 1]);
      break;
    }
  }
  return { stream, id: text(id), data, deliveries };
}

/** A flat `[key, value, …]` reply as a map. */
export function pairs(reply: unknown): Map<string, unknown> {
  const list = reply as unknown[];
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < list.length; i += 2) map.set(text(list[i]), list[i + 1]);
  return map;
}

export function text(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString();
  return value instanceof Uint8Array ? new TextDecoder().decode(value) : String(value);
}

export function bytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return new TextEncoder().encode(String(value));
}

/** Whether `error` is an error reply of the server (node-redis `ErrorReply`). */
export function isServerReply(error: unknown): error is Error {
  // By class name, up the prototype chain: SimpleError and BlobError extend ErrorReply.
  for (let p = error; p instanceof Error; p = Object.getPrototypeOf(p)) {
    if (p.constructor.name === "ErrorReply") return true;
  }
  return false;
}

/** Whether `error` is a TLS handshake's refusal (a certificate not trusted or not matching). */
export function isTlsRefusal(error: Error): boolean {
  return /certificate|\bTLS\b|\bSSL\b|altnames/i.test(error.message);
}

/** Whether the server answered that it cannot serve yet (loading its data, running a script). */
export function isTransient(error: Error): boolean {
  return /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN)\b/.test(error.message);
}

/** Whether the server answered that it could not parse a command (it then drops the connection). */
export function isProtocolError(error: Error): boolean {
  return /^ERR Protocol error\b/.test(error.message);
}

/** Whether the server answered that a group (or its stream) does not exist (any more). */
export function isGroupLost(error: unknown): boolean {
  return error instanceof Error && /^(NOGROUP|UNBLOCKED)\b/.test(error.message);
}
