/**
 * Large values stored once in the transport (blobs), bound to the signed message that names them:
 * the reference carries the stored bytes' length and SHA-256, and a reader checks both before it
 * decodes anything.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { decodeValue } from "../transport/codec.ts";
import type { Transport } from "../transport/types.ts";
import { BlobRef } from "./protocol/wire_types.ts";

/** Stores `bytes` under `key` for `ttlMs` and returns the reference that names them. */
export async function storeBlob(
  transport: Transport,
  key: string,
  bytes: Uint8Array,
  ttlMs: number,
): Promise<BlobRef> {
  const ref = new BlobRef(key, bytes.byteLength, sha256(bytes));
  await transport.putBlob(key, bytes, ttlMs);
  return ref;
}

/**
 * The value stored for `ref`, decoded. Throws `ReferenceError` when it is gone, and `RangeError`
 * when the stored bytes are not those `ref` names (their length or SHA-256 differ): they are then
 * not decoded.
 */
export async function readBlob(transport: Transport, ref: BlobRef): Promise<unknown> {
  const bytes = await transport.getBlob(ref.key);
  if (bytes === null) throw new ReferenceError(`Blob "${ref.key}" expired or was never stored`);
  if (bytes.byteLength !== ref.length || !timingSafeEqual(sha256(bytes), ref.sha256)) {
    throw new RangeError(
      `Cannot read blob "${ref.key}": its ${bytes.byteLength} bytes are not the ${ref.length} ` +
        "bytes the signed message names (length or SHA-256 differ); it was changed in the transport",
    );
  }
  return decodeValue(bytes);
}

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}
