/**
 * The envelope every message travels in, and its signed wire form:
 * `[version: 1 byte][HMAC-SHA256(key, version ‖ body): 32 bytes][body: MessagePack]`, where the
 * body is the array `[id, type, from, to, parent, replyTo, sent, deadline, content]` and `content`
 * is itself MessagePack, embedded as binary.
 *
 * @module
 */
import { createHash, createHmac, type Hash, timingSafeEqual } from "node:crypto";
import { decodeValue, encodeValue, encodeValueTransient } from "./codec.ts";
import { type HmacKeyStates, hmacKeyStates, hmacSha256 } from "./_hmac_sha256.ts";

/** The wire format's version byte. */
export const WIRE_VERSION = 1;
const HEADER_BYTES = 1 + 32;

/** One message between actors. */
export interface Envelope<C = unknown> {
  /** Unique id of this message. */
  id: string;
  /** What the message asks for; the recipient's handler of that name handles it. */
  type: string;
  /** The sender's address. */
  from: string;
  /** The recipient's address. */
  to: string;
  /** The id of the message this one answers, if it is an answer. */
  parent?: string;
  /** Where the answer to this message goes, if one is expected. */
  replyTo?: string;
  /** When the sender wrote it, in ms since the epoch (sender's clock). */
  sent: number;
  /** When the sender stops waiting for an answer, in ms since the epoch, if it waits. */
  deadline?: number;
  /** The payload: any value the codec can send, typed arrays included. */
  content: C;
}

/** A per-cluster secret key that signs and verifies envelopes. */
export type ClusterKey = Uint8Array;

/**
 * The key that signs the envelopes of `namespace`: HMAC-SHA256(`key`, a label ‖ `namespace`). Every
 * system of a cluster signs and verifies with it, so an entry copied from one cluster's streams
 * into those of another cluster sharing the key does not verify there. Computed once per pair.
 */
export function namespaceKey(key: ClusterKey, namespace: string): ClusterKey {
  let keys = namespaceKeys.get(key);
  if (!keys) namespaceKeys.set(key, keys = new Map());
  let derived = keys.get(namespace);
  if (!derived) {
    derived = new Uint8Array(
      createHmac("sha256", key).update(NAMESPACE_LABEL).update(namespace).digest(),
    );
    keys.set(namespace, derived);
  }
  return derived;
}

const NAMESPACE_LABEL = "deno-parallel namespace key\0";
const namespaceKeys = new WeakMap<ClusterKey, Map<string, ClusterKey>>();

/** The shortest cluster key accepted, in bytes: HMAC-SHA256 is as strong as its key up to 32. */
export const MIN_KEY_BYTES = 32;

/**
 * Refuses what cannot be a cluster key: a `TypeError` for anything but a `Uint8Array` (a hex
 * string goes through {@linkcode parseHexKey} first), a `RangeError` for fewer than 32 bytes.
 */
export function checkKey(key: unknown, what: string): asserts key is ClusterKey {
  if (!(key instanceof Uint8Array)) {
    throw new TypeError(
      `${what}: key must be a Uint8Array of at least ${MIN_KEY_BYTES} bytes (use generateKey(), ` +
        `readKeyFile() or keyFile), got ${typeof key === "string" ? "a string" : typeof key}`,
    );
  }
  if (key.length < MIN_KEY_BYTES) {
    throw new RangeError(
      `${what}: key must have at least ${MIN_KEY_BYTES} bytes, got ${key.length}`,
    );
  }
}

/** Returns a new random 32-byte cluster key. */
export function generateKey(): ClusterKey {
  return crypto.getRandomValues(new Uint8Array(32));
}

/**
 * Encodes and signs `envelope`. Throws `SerializationError` when its content cannot be sent, so
 * nothing is written. `contentBytes`, when given, is the content already encoded with
 * `encodeValue` (to encode a content shared by several envelopes once).
 */
export function sealEnvelope(
  envelope: Envelope,
  key: ClusterKey,
  contentBytes: Uint8Array = encodeValueTransient(envelope.content),
): Uint8Array {
  // The body is written in place, its content copied once: the first eight fields encoded as an
  // array, whose header is then made that of nine, and the content as the ninth, a binary.
  const fields = encodeValue([
    envelope.id,
    envelope.type,
    envelope.from,
    envelope.to,
    envelope.parent ?? null,
    envelope.replyTo ?? null,
    envelope.sent,
    envelope.deadline ?? null,
  ]);
  const length = contentBytes.byteLength;
  const binHeader = length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
  const out = new Uint8Array(HEADER_BYTES + fields.byteLength + binHeader + length);
  out[0] = WIRE_VERSION;
  out.set(fields, HEADER_BYTES);
  out[HEADER_BYTES] = FIXARRAY_9;
  const at = HEADER_BYTES + fields.byteLength;
  const view = new DataView(out.buffer, at, binHeader);
  view.setUint8(0, BIN_HEADS[binHeader]);
  if (binHeader === 2) view.setUint8(1, length);
  else if (binHeader === 3) view.setUint16(1, length);
  else view.setUint32(1, length);
  out.set(contentBytes, at + binHeader);
  out.set(sign(key, out.subarray(0, 1), out.subarray(HEADER_BYTES)), 1);
  return out;
}

/** The MessagePack header of an array of nine items. */
const FIXARRAY_9 = 0x99;
/** The first byte of a MessagePack binary (bin 8, 16, 32), by the length of its header. */
const BIN_HEADS: Record<number, number> = { 2: 0xc4, 3: 0xc5, 5: 0xc6 };

/**
 * Verifies and decodes what {@linkcode sealEnvelope} wrote. Throws a `RangeError` saying what is
 * wrong when the bytes are not a valid envelope signed with `key`; the body is decoded only once
 * the signature holds.
 */
export function openEnvelope(bytes: Uint8Array, key: ClusterKey, maxBytes = Infinity): Envelope {
  if (bytes.byteLength > maxBytes) {
    throw new RangeError(`message of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte limit`);
  }
  if (bytes.byteLength <= HEADER_BYTES) throw new RangeError("message is truncated");
  if (bytes[0] !== WIRE_VERSION) {
    throw new RangeError(`unknown wire version ${bytes[0]} (expected ${WIRE_VERSION})`);
  }
  const body = bytes.subarray(HEADER_BYTES);
  const expected = sign(key, bytes.subarray(0, 1), body);
  if (!timingSafeEqual(expected, bytes.subarray(1, HEADER_BYTES))) {
    throw new RangeError("signature does not verify");
  }
  let fields: unknown;
  try {
    fields = decodeValue(body);
  } catch (cause) {
    throw new RangeError(`body is not valid MessagePack: ${(cause as Error).message}`);
  }
  if (
    !Array.isArray(fields) || fields.length !== 9 || typeof fields[0] !== "string" ||
    typeof fields[1] !== "string" || typeof fields[2] !== "string" ||
    typeof fields[3] !== "string" || typeof fields[6] !== "number" ||
    !(fields[8] instanceof Uint8Array)
  ) {
    throw new RangeError("body is not an envelope");
  }
  const [id, type, from, to, parent, replyTo, sent, deadline, contentBytes] = fields;
  let content: unknown;
  try {
    content = decodeValue(contentBytes);
  } catch (cause) {
    throw new RangeError(`content is not valid MessagePack: ${(cause as Error).message}`);
  }
  return {
    id,
    type,
    from,
    to,
    ...(typeof parent === "string" ? { parent } : {}),
    ...(typeof replyTo === "string" ? { replyTo } : {}),
    sent,
    ...(typeof deadline === "number" ? { deadline } : {}),
    content,
  };
}

/**
 * HMAC-SHA256 (RFC 2104) of `version ‖ body`. The hash states after the padded key blocks are
 * computed once per key and copied per message: four times cheaper than `createHmac` per message.
 * A short body is hashed in JavaScript (`_hmac_sha256.ts`), without the objects and buffers each
 * `node:crypto` call makes; a long one natively, faster there.
 */
function sign(key: ClusterKey, version: Uint8Array, body: Uint8Array): Uint8Array {
  const states = padded(key);
  if (body.byteLength < SHORT_BODY_BYTES) return hmacSha256(states.short, version[0], body);
  const innerDigest = states.inner.copy().update(version).update(body).digest();
  return states.outer.copy().update(innerDigest).digest();
}

/** Below this size a body is hashed in JavaScript (at 1,000 bytes: 7.0 µs against 8.9 natively). */
const SHORT_BODY_BYTES = 1024;
const BLOCK_BYTES = 64;
const paddedKeys = new WeakMap<ClusterKey, { inner: Hash; outer: Hash; short: HmacKeyStates }>();

function padded(key: ClusterKey): { inner: Hash; outer: Hash; short: HmacKeyStates } {
  let states = paddedKeys.get(key);
  if (!states) {
    const block = new Uint8Array(BLOCK_BYTES);
    block.set(key.byteLength > BLOCK_BYTES ? createHash("sha256").update(key).digest() : key);
    states = {
      inner: createHash("sha256").update(block.map((b) => b ^ 0x36)),
      outer: createHash("sha256").update(block.map((b) => b ^ 0x5c)),
      short: hmacKeyStates(block),
    };
    paddedKeys.set(key, states);
  }
  return states;
}
