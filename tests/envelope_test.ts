import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  type Envelope,
  generateKey,
  openEnvelope,
  sealEnvelope,
  WIRE_VERSION,
} from "../transport/envelope.ts";
import { decodeValue, encodeValue } from "../transport/codec.ts";
import { SerializationError } from "../errors.ts";
import { prng } from "./_random.ts";

const HEADER = 33;

function sample(
  ...content: [unknown?]
): Envelope {
  return {
    id: "0b5c6f3e-1",
    type: "apply",
    from: "_reply.sys-1",
    to: "engine.3",
    parent: "p-1",
    replyTo: "_reply.sys-1",
    sent: 1_700_000_000_000,
    deadline: 1_700_000_030_000,
    content: content.length > 0
      ? content[0]
      : { args: [1, "two"], data: new Float32Array([1.5, 2]) },
  };
}

/** `bytes` signed as `sealEnvelope` would sign them, whatever they hold. */
function signRaw(key: Uint8Array, version: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + body.byteLength);
  out[0] = version;
  out.set(body, HEADER);
  out.set(createHmac("sha256", key).update(out.subarray(0, 1)).update(body).digest(), 1);
  return out;
}

function rangeErrorOf(fn: () => unknown): RangeError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RangeError, `expected RangeError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a RangeError, but it decoded");
}

Deno.test("sealEnvelope() and openEnvelope() round-trip every field and the content", () => {
  const key = generateKey();
  const envelope = sample({
    args: [1, undefined, 2n ** 70n],
    map: new Map([[1, new Set(["a"])]]),
    bytes: new Uint8Array([1, 2, 3]),
    when: new Date(5),
  });
  const bytes = sealEnvelope(envelope, key);
  assert.equal(bytes[0], WIRE_VERSION);
  assert.deepEqual(openEnvelope(bytes, key), envelope);
});

Deno.test("openEnvelope() leaves out optional fields that were not set", () => {
  const key = generateKey();
  const bytes = sealEnvelope(
    { id: "i", type: "t", from: "f", to: "x", sent: 1, content: null },
    key,
  );
  const back = openEnvelope(bytes, key);
  assert.deepEqual(back, { id: "i", type: "t", from: "f", to: "x", sent: 1, content: null });
  assert.ok(!("parent" in back) && !("replyTo" in back) && !("deadline" in back));
});

Deno.test("openEnvelope() round-trips undefined and empty content", () => {
  const key = generateKey();
  for (const content of [undefined, null, "", 0, [], {}]) {
    assert.deepEqual(openEnvelope(sealEnvelope(sample(content), key), key).content, content);
  }
});

Deno.test("sealEnvelope() writes version, HMAC-SHA256 over version and body, then the body", () => {
  const key = generateKey();
  const envelope = sample();
  const bytes = sealEnvelope(envelope, key);
  const body = bytes.subarray(HEADER);
  const mac = createHmac("sha256", key).update(bytes.subarray(0, 1)).update(body).digest();
  assert.deepEqual(bytes.subarray(1, HEADER), new Uint8Array(mac));
  const fields = decodeValue(body) as unknown[];
  assert.equal(fields.length, 9);
  assert.deepEqual(fields.slice(0, 8), [
    envelope.id,
    envelope.type,
    envelope.from,
    envelope.to,
    envelope.parent,
    envelope.replyTo,
    envelope.sent,
    envelope.deadline,
  ]);
  assert.ok(fields[8] instanceof Uint8Array);
  assert.deepEqual(decodeValue(fields[8] as Uint8Array), envelope.content);
});

Deno.test("sealEnvelope() signs as node:crypto's HMAC-SHA256 does, for every body size from short to long and keys of any length", () => {
  const random = prng(20261204);
  const keys = [
    generateKey(),
    new Uint8Array(64).fill(9),
    new Uint8Array(100).map(() => 256 * random()),
  ];
  for (const key of keys) {
    // Content of 0 to 1,200 bytes: bodies on both sides of the JavaScript/native boundary and of
    // every padding case (a length that leaves 0 to 63 bytes in the last block).
    for (let n = 0; n <= 1200; n += key === keys[0] ? 1 : 37) {
      const content = new Uint8Array(n).map(() => 256 * random());
      const bytes = sealEnvelope(sample(content), key);
      const mac = createHmac("sha256", key).update(bytes.subarray(0, 1))
        .update(bytes.subarray(HEADER)).digest();
      assert.deepEqual(bytes.subarray(1, HEADER), new Uint8Array(mac), `content of ${n} bytes`);
      assert.deepEqual(openEnvelope(bytes, key).content, content);
    }
  }
});
Deno.test("sealEnvelope() throws SerializationError before returning any bytes", () => {
  const key = generateKey();
  const circular: Record<string, unknown> = {};
  circular.me = circular;
  const cases: [unknown, string][] = [
    [{ f: () => 1 }, "$.f"],
    [[Symbol("s")], "$[0]"],
    [circular, "$.me"],
    [Promise.resolve(), "$"],
    [new WeakMap(), "$"],
    [{ v: new (class Point {})() }, "$.v"],
  ];
  for (const [content, path] of cases) {
    let out: Uint8Array | undefined;
    try {
      out = sealEnvelope(sample(content), key);
    } catch (error) {
      assert.ok(error instanceof SerializationError, `expected SerializationError: ${error}`);
      assert.ok(error instanceof TypeError);
      assert.equal(error.path, path);
    }
    assert.equal(out, undefined, "sealEnvelope() returned bytes for a value it cannot send");
  }
});

Deno.test("openEnvelope() rejects an envelope signed with another key", () => {
  const bytes = sealEnvelope(sample(), generateKey());
  const error = rangeErrorOf(() => openEnvelope(bytes, generateKey()));
  assert.match(error.message, /signature does not verify/);
});

Deno.test("openEnvelope() rejects an envelope with any single byte changed", () => {
  const key = generateKey();
  const bytes = sealEnvelope(sample(), key);
  for (let i = 0; i < bytes.length; i++) {
    const tampered = bytes.slice();
    tampered[i] ^= 0x01;
    const error = rangeErrorOf(() => openEnvelope(tampered, key));
    if (i === 0) assert.match(error.message, /unknown wire version/);
    else assert.match(error.message, /signature does not verify/, `byte ${i}`);
  }
});

Deno.test("openEnvelope() rejects an envelope with a byte appended or removed", () => {
  const key = generateKey();
  const bytes = sealEnvelope(sample(), key);
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.match(rangeErrorOf(() => openEnvelope(longer, key)).message, /signature/);
  assert.match(
    rangeErrorOf(() => openEnvelope(bytes.subarray(0, bytes.length - 1), key)).message,
    /signature/,
  );
});

Deno.test("openEnvelope() rejects truncated input", () => {
  const key = generateKey();
  const bytes = sealEnvelope(sample(), key);
  for (const n of [0, 1, 2, 32, 33]) {
    assert.match(rangeErrorOf(() => openEnvelope(bytes.subarray(0, n), key)).message, /truncated/);
  }
  for (const n of [34, 40, bytes.length - 10]) {
    assert.match(rangeErrorOf(() => openEnvelope(bytes.subarray(0, n), key)).message, /signature/);
  }
});

Deno.test("openEnvelope() rejects an unknown wire version even when correctly signed", () => {
  const key = generateKey();
  const body = sealEnvelope(sample(), key).subarray(HEADER);
  for (const version of [0, 2, 255]) {
    const error = rangeErrorOf(() => openEnvelope(signRaw(key, version, body), key));
    assert.match(error.message, new RegExp(`unknown wire version ${version}`));
  }
});

Deno.test("openEnvelope() rejects an envelope larger than the limit before verifying it", () => {
  const key = generateKey();
  const bytes = sealEnvelope(sample(new Uint8Array(10_000)), key);
  const error = rangeErrorOf(() => openEnvelope(bytes, key, 1000));
  assert.match(error.message, new RegExp(`${bytes.byteLength} bytes exceeds the 1000-byte limit`));
  assert.deepEqual(openEnvelope(bytes, key, bytes.byteLength).content, new Uint8Array(10_000));
});

Deno.test("openEnvelope() rejects a signed body that is not valid MessagePack", () => {
  const key = generateKey();
  const error = rangeErrorOf(() =>
    openEnvelope(signRaw(key, WIRE_VERSION, Uint8Array.of(0xc1)), key)
  );
  assert.match(error.message, /body is not valid MessagePack/);
});

Deno.test("openEnvelope() rejects a signed body that is not an envelope", () => {
  const key = generateKey();
  const bodies: unknown[] = [
    "just a string",
    [],
    ["id", "type", "from", "to", null, null, 1, null], // 8 fields
    ["id", "type", "from", "to", null, null, 1, null, new Uint8Array(1), "extra"],
    [1, "type", "from", "to", null, null, 1, null, encodeValue(1)],
    ["id", "type", "from", "to", null, null, "not a number", null, encodeValue(1)],
    ["id", "type", "from", "to", null, null, 1, null, "content not binary"],
    { id: "i" },
  ];
  for (const body of bodies) {
    const error = rangeErrorOf(() =>
      openEnvelope(signRaw(key, WIRE_VERSION, encodeValue(body)), key)
    );
    assert.match(error.message, /body is not an envelope/);
  }
});

Deno.test("openEnvelope() rejects signed content that is not valid MessagePack", () => {
  const key = generateKey();
  const body = encodeValue(["i", "t", "f", "x", null, null, 1, null, Uint8Array.of(0xc1)]);
  const error = rangeErrorOf(() => openEnvelope(signRaw(key, WIRE_VERSION, body), key));
  assert.match(error.message, /content is not valid MessagePack/);
});

Deno.test("openEnvelope() throws only RangeError on 10,000 random inputs, decoding none", () => {
  const key = generateKey();
  const random = prng(0x5eed);
  const signatureLength = [0, 1, 33, 34, 64, 200, 2000];
  let decoded = 0;
  for (let n = 0; n < 10_000; n++) {
    const length = n < signatureLength.length
      ? signatureLength[n]
      : Math.floor(random() ** 2 * 600);
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
    // Half the inputs carry the right version byte, so they reach the signature check.
    if (length > 0 && n % 2 === 0) bytes[0] = WIRE_VERSION;
    try {
      openEnvelope(bytes, key);
      decoded++;
    } catch (error) {
      assert.ok(error instanceof RangeError, `input ${n}: expected RangeError, got ${error}`);
    }
  }
  assert.equal(decoded, 0);
});

Deno.test("openEnvelope() rejects all of 10,000 single-byte mutations of a valid envelope", () => {
  const key = generateKey();
  const bytes = sealEnvelope(sample({ text: "x".repeat(100), list: [1, 2, 3] }), key);
  const random = prng(0xbad);
  let decoded = 0;
  for (let n = 0; n < 10_000; n++) {
    const mutated = bytes.slice();
    const at = Math.floor(random() * mutated.length);
    mutated[at] = (mutated[at] + 1 + Math.floor(random() * 255)) & 0xff; // always a change
    assert.notEqual(mutated[at], bytes[at]);
    try {
      openEnvelope(mutated, key);
      decoded++;
    } catch (error) {
      assert.ok(error instanceof RangeError, `mutation ${n} at ${at}: got ${error}`);
    }
  }
  assert.equal(decoded, 0);
  assert.deepEqual(openEnvelope(bytes, key).content, { text: "x".repeat(100), list: [1, 2, 3] });
});

Deno.test("generateKey() returns 32 fresh random bytes", () => {
  const a = generateKey();
  const b = generateKey();
  assert.equal(a.byteLength, 32);
  assert.notDeepEqual(a, b);
});

Deno.test("sealEnvelope() signs with standard HMAC-SHA256 over version and body, for any key length", () => {
  for (const length of [1, 32, 64, 100]) {
    const key = crypto.getRandomValues(new Uint8Array(length));
    const bytes = sealEnvelope(
      { id: "i", type: "t", from: "a", to: "b", sent: 1, content: { n: length } },
      key,
    );
    const expected = createHmac("sha256", key).update(bytes.subarray(0, 1)).update(
      bytes.subarray(33),
    ).digest();
    assert.deepEqual(new Uint8Array(bytes.subarray(1, 33)), new Uint8Array(expected));
  }
});
