/**
 * The dead-letter stream's entries, and the kinds of reasons an entry ends there.
 *
 * @module
 */
import type { StreamEntry } from "../../transport/types.ts";
import type { DeadLetterReason } from "./system_types.ts";

/** The bounds of a dead-letter stream (see `ActorSystemOptions.deadLetters`). */
export interface DeadLetterBounds {
  maxLen: number;
  maxAgeMs: number;
  payloadBytes: number;
}

/** The default {@linkcode DeadLetterBounds}. */
export const DEAD_LETTER_BOUNDS: DeadLetterBounds = {
  maxLen: 1000,
  maxAgeMs: 24 * 60 * 60_000,
  payloadBytes: 1024,
};

/**
 * The dead-letter entry for `entry`: a 4-byte big-endian length, a JSON record
 * (`{ stream, id, reason, at, bytes }`, `bytes` the payload's whole length) of that length, then
 * the first `payloadBytes` of the payload as it was read.
 */
export function deadLetterRecord(
  entry: StreamEntry,
  reason: string,
  payloadBytes: number,
): Uint8Array {
  const data = entry.data ?? new Uint8Array(0);
  const record = new TextEncoder().encode(
    JSON.stringify({
      stream: entry.stream,
      id: entry.id,
      reason,
      at: Date.now(),
      bytes: data.byteLength,
    }),
  );
  const payload = data.subarray(0, payloadBytes);
  const letter = new Uint8Array(4 + record.byteLength + payload.byteLength);
  new DataView(letter.buffer).setUint32(0, record.byteLength);
  letter.set(record, 4);
  letter.set(payload, 4 + record.byteLength);
  return letter;
}

/** The kind of an `openEnvelope` failure, from its message. */
export function kindOf(message: string): DeadLetterReason {
  if (message.includes("exceeds the")) return "oversized";
  if (message.includes("truncated")) return "truncated";
  if (message.includes("wire version")) return "version";
  if (message.includes("signature")) return "signature";
  return "malformed";
}
