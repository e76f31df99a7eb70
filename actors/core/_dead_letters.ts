/**
 * The dead-letter stream's entries, and the kinds of reasons an entry ends there.
 *
 * @module
 */
import type { StreamEntry } from "../../transport/types.ts";
import type { DeadLetterReason } from "./system_types.ts";

/**
 * The dead-letter entry for `entry`: a 4-byte big-endian length, a JSON record
 * (`{ stream, id, reason, at }`) of that length, then the entry's payload as it was read.
 */
export function deadLetterRecord(entry: StreamEntry, reason: string): Uint8Array {
  const record = new TextEncoder().encode(
    JSON.stringify({ stream: entry.stream, id: entry.id, reason, at: Date.now() }),
  );
  const payload = entry.data ?? new Uint8Array(0);
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
