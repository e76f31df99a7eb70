import assert from "node:assert/strict";
import { checkValue, cloneValue, decodeValue, encodeValue } from "../transport/codec.ts";
import { SerializationError } from "../errors.ts";
import { FunctionSource, Reference } from "../actors/protocol/wire_types.ts";
import { prng } from "./_random.ts";

function roundTrip<T>(value: T): T {
  return decodeValue(encodeValue(value)) as T;
}

type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

interface TypedArrayCtor {
  readonly name: string;
  readonly BYTES_PER_ELEMENT: number;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TypedArray;
}

/** Every typed array, with sample values that exercise its range. */
const TYPED_ARRAYS: [TypedArrayCtor, unknown[]][] = [
  [Int8Array, [0, 1, -1, 127, -128]],
  [Uint8Array, [0, 1, 254, 255, 7]],
  [Uint8ClampedArray, [0, 1, 128, 255, 3]],
  [Int16Array, [0, -1, 32767, -32768, 5]],
  [Uint16Array, [0, 1, 65535, 256, 9]],
  [Int32Array, [0, -1, 2147483647, -2147483648, 11]],
  [Uint32Array, [0, 1, 4294967295, 65536, 13]],
  [Float32Array, [0, -1.5, 3.25, Infinity, NaN]],
  [Float64Array, [0, -0, Math.PI, -Infinity, NaN, Number.MIN_VALUE]],
  [BigInt64Array, [0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 17n]],
  [BigUint64Array, [0n, 1n, 2n ** 64n - 1n, 2n ** 32n, 19n]],
];

/** A typed array holding `values` that starts `offsetElements` elements into a larger buffer. */
function makeTyped(C: TypedArrayCtor, values: unknown[], offsetElements: number): TypedArray {
  const size = C.BYTES_PER_ELEMENT;
  const buffer = new ArrayBuffer((offsetElements + values.length + 3) * size);
  const view = new C(buffer, offsetElements * size, values.length);
  // Fill the whole buffer with a pattern first, so leaking neighbours would show.
  new Uint8Array(buffer).fill(0xa5);
  values.forEach((v, i) => ((view as unknown as unknown[])[i] = v));
  return view;
}

function assertSameTyped(actual: unknown, expected: TypedArray): void {
  assert.equal(Object.getPrototypeOf(actual), Object.getPrototypeOf(expected));
  const a = actual as TypedArray;
  assert.equal(a.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Object.is(a[i], expected[i]),
      `${expected.constructor.name}[${i}]: ${a[i]} !== ${expected[i]}`,
    );
  }
}

for (const [C, values] of TYPED_ARRAYS) {
  Deno.test(`encodeValue() round-trips a ${C.name} with its type and values`, () => {
    const value = makeTyped(C, values, 0);
    assertSameTyped(roundTrip(value), value);
  });

  Deno.test(`encodeValue() round-trips a ${C.name} view that starts inside its buffer`, () => {
    // One element in for wide types; for byte-wide types that is an odd byteOffset.
    for (const offset of [1, 3]) {
      const value = makeTyped(C, values, offset);
      assert.equal(value.byteOffset, offset * C.BYTES_PER_ELEMENT);
      const back = roundTrip(value);
      assertSameTyped(back, value);
      assert.equal((back as TypedArray).byteLength, values.length * C.BYTES_PER_ELEMENT);
    }
  });

  Deno.test(`encodeValue() round-trips an empty ${C.name}`, () => {
    assertSameTyped(roundTrip(new C(new ArrayBuffer(0))), new C(new ArrayBuffer(0)));
  });
}

Deno.test("encodeValue() round-trips typed arrays nested in objects, arrays, Maps and Sets", () => {
  const value = {
    list: [new Float64Array([1.5, 2.5]), new Int16Array([-3, 4])],
    map: new Map<string, unknown>([["u8", new Uint8Array([1, 2, 3])]]),
    set: new Set([new Uint32Array([7])]),
  };
  const back = roundTrip(value);
  assertSameTyped(back.list[0], value.list[0]);
  assertSameTyped(back.list[1], value.list[1]);
  assertSameTyped(back.map.get("u8"), value.map.get("u8") as Uint8Array);
  assertSameTyped([...back.set][0], [...value.set][0]);
});

Deno.test("decodeValue() returns wide typed arrays whose buffer holds only their bytes", () => {
  const back = roundTrip(new Float64Array([1, 2, 3]));
  assert.equal(back.byteOffset, 0);
  assert.equal(back.buffer.byteLength, 24);
  assert.deepEqual([...new Float64Array(back.buffer)], [1, 2, 3]);
});

Deno.test("encodeValue() round-trips a Float16Array when the runtime has one", {
  ignore: !("Float16Array" in globalThis),
}, () => {
  // Float16Array is a typed array the runtime has but the codec's kind table lacks: it must
  // either round-trip or be refused on the sender's side, never fail on the receiver's.
  const F16 = (globalThis as unknown as { Float16Array: new (v: number[]) => ArrayLike<number> })
    .Float16Array;
  const value = new F16([1.5, -2, 0.25]);
  let bytes: Uint8Array;
  try {
    bytes = encodeValue(value);
  } catch (error) {
    assert.ok(error instanceof SerializationError, `expected SerializationError, got ${error}`);
    return;
  }
  const back = decodeValue(bytes) as ArrayLike<number>;
  assert.equal(Object.getPrototypeOf(back), F16.prototype);
  assert.deepEqual([...Array.from(back)], [1.5, -2, 0.25]);
});

Deno.test("encodeValue() round-trips an ArrayBuffer as an ArrayBuffer", () => {
  const buffer = new Uint8Array([0, 1, 2, 250, 255]).buffer;
  const back = roundTrip(buffer);
  assert.ok(back instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(back)], [0, 1, 2, 250, 255]);
  assert.equal(roundTrip(new ArrayBuffer(0)).byteLength, 0);
});

Deno.test("encodeValue() round-trips a Map with string keys, keeping insertion order", () => {
  const value = new Map([["b", 1], ["a", 2], ["c", 3]]);
  const back = roundTrip(value);
  assert.ok(back instanceof Map);
  assert.deepEqual([...back], [["b", 1], ["a", 2], ["c", 3]]);
});

Deno.test("encodeValue() round-trips a Map with non-string keys", () => {
  const value = new Map<unknown, unknown>([
    [1, "one"],
    [-2.5, "float"],
    [true, "bool"],
    [null, "null"],
    [undefined, "undefined"],
    [10n, "bigint"],
    [{ x: 1 }, "object"],
    [[1, 2], "array"],
  ]);
  const back = roundTrip(value);
  assert.ok(back instanceof Map);
  assert.deepEqual([...back], [...value]);
  assert.equal(back.get(1), "one");
  assert.equal(back.get(undefined), "undefined");
  assert.equal(back.get(10n), "bigint");
});

Deno.test("encodeValue() round-trips nested Maps and Sets", () => {
  const value = new Map<unknown, unknown>([
    ["inner", new Map([[1, new Map([["deep", new Set([1, 2])]])]])],
    [new Set(["k"]), [new Map(), new Set()]],
  ]);
  const back = roundTrip(value);
  assert.deepEqual(back, value);
  const inner = back.get("inner") as Map<number, Map<string, Set<number>>>;
  assert.ok(inner.get(1)!.get("deep") instanceof Set);
});

Deno.test("encodeValue() round-trips a Set with mixed members, keeping order", () => {
  const value = new Set<unknown>([3, "x", null, undefined, 2n, { a: 1 }, [1]]);
  const back = roundTrip(value);
  assert.ok(back instanceof Set);
  assert.deepEqual([...back], [...value]);
});

Deno.test("encodeValue() round-trips BigInts, huge and negative", () => {
  const values = [0n, 1n, -1n, 2n ** 64n, -(2n ** 64n), 2n ** 1000n + 7n, -(10n ** 300n) - 3n];
  for (const v of values) {
    const back = roundTrip(v);
    assert.equal(typeof back, "bigint");
    assert.equal(back, v);
  }
  assert.deepEqual(roundTrip({ n: -(2n ** 200n), list: [5n] }), { n: -(2n ** 200n), list: [5n] });
});

Deno.test("encodeValue() keeps numbers and BigInts apart", () => {
  assert.equal(typeof roundTrip(5), "number");
  assert.equal(typeof roundTrip(5n), "bigint");
  assert.equal(typeof roundTrip(2 ** 53 + 2), "number");
});

Deno.test("encodeValue() round-trips Dates, to the millisecond", () => {
  for (
    const d of [new Date(0), new Date(1_700_000_000_123), new Date(-1_234_567), new Date(8.64e15)]
  ) {
    const back = roundTrip(d);
    assert.ok(back instanceof Date);
    assert.equal(back.getTime(), d.getTime());
  }
});

Deno.test("encodeValue() does not turn an invalid Date into a valid one", () => {
  // An Invalid Date must come back invalid, or be refused before sending; it must never arrive
  // as a different, valid date.
  let back: Date;
  try {
    back = roundTrip(new Date(NaN));
  } catch (error) {
    assert.ok(error instanceof SerializationError, `expected SerializationError, got ${error}`);
    return;
  }
  assert.ok(Number.isNaN(back.getTime()), `Invalid Date came back as ${back.toISOString()}`);
});

Deno.test("encodeValue() round-trips undefined at top level", () => {
  assert.equal(roundTrip(undefined), undefined);
  assert.equal(decodeValue(encodeValue(undefined)), undefined);
  assert.equal(roundTrip(null), null);
});

Deno.test("encodeValue() round-trips undefined in arrays, including holes", () => {
  const back = roundTrip([1, undefined, null, undefined]);
  assert.deepEqual(back, [1, undefined, null, undefined]);
  assert.equal(back.length, 4);
  // deno-lint-ignore no-sparse-arrays
  const sparse = roundTrip([1, , 3]);
  assert.equal(sparse.length, 3);
  assert.ok(!(1 in sparse), "a hole stays a hole");
  // deno-lint-ignore no-sparse-arrays
  assert.deepEqual(sparse, [1, , 3]);
  const wide = new Array(2 ** 31);
  wide[7] = { at: [undefined] };
  wide[2 ** 30] = "far";
  const far = roundTrip(wide);
  assert.equal(far.length, 2 ** 31);
  assert.deepEqual(Object.keys(far), ["7", String(2 ** 30)]);
  assert.deepEqual(far[7], { at: [undefined] });
  assertRefused([, () => 1], "$[1]", /function/);
});

Deno.test("encodeValue() round-trips undefined object properties as present keys", () => {
  const back = roundTrip({ a: undefined, b: null, c: { d: undefined } });
  assert.ok(Object.hasOwn(back, "a"));
  assert.equal(back.a, undefined);
  assert.equal(back.b, null);
  assert.ok(Object.hasOwn(back.c, "d"));
  assert.equal(back.c.d, undefined);
});

Deno.test("encodeValue() round-trips undefined as Map values and keys, and in Sets", () => {
  const back = roundTrip(new Map<unknown, unknown>([["k", undefined], [undefined, 1]]));
  assert.ok(back.has("k"));
  assert.equal(back.get("k"), undefined);
  assert.equal(back.get(undefined), 1);
  const set = roundTrip(new Set([undefined, null]));
  assert.ok(set.has(undefined));
  assert.ok(set.has(null));
});

Deno.test("encodeValue() leaves the caller's value untouched when it replaces undefined", () => {
  const inner = { x: undefined };
  const value = { list: [undefined], inner, map: new Map([["k", undefined]]) };
  encodeValue(value);
  assert.equal(value.list[0], undefined);
  assert.equal(value.inner, inner);
  assert.equal(inner.x, undefined);
  assert.equal(value.map.get("k"), undefined);
});

Deno.test("encodeValue() round-trips an Error's name, message and stack", () => {
  const error = new RangeError("out of range");
  const back = roundTrip(error);
  assert.ok(back instanceof Error);
  assert.equal(back.name, "RangeError");
  assert.equal(back.message, "out of range");
  assert.equal(back.stack, error.stack);
  const custom = new Error("boom");
  custom.name = "CustomError";
  const nested = roundTrip({ failure: custom });
  assert.ok(nested.failure instanceof Error);
  assert.equal(nested.failure.name, "CustomError");
  assert.equal(nested.failure.message, "boom");
});

Deno.test("encodeValue() round-trips nested plain objects and arrays", () => {
  const value = {
    s: "héllo ✓",
    n: 42,
    f: -3.5,
    t: true,
    nil: null,
    list: [1, "two", [3, [4, { five: 5 }]]],
    obj: { a: { b: { c: { d: [] } } } },
    "key with spaces": 1,
    "": "empty key",
  };
  assert.deepEqual(roundTrip(value), value);
});

Deno.test("encodeValue() round-trips empty containers", () => {
  assert.deepEqual(roundTrip({}), {});
  assert.deepEqual(roundTrip([]), []);
  assert.deepEqual(roundTrip(""), "");
  assert.deepEqual(roundTrip(new Map()), new Map());
  assert.deepEqual(roundTrip(new Set()), new Set());
  assert.deepEqual(roundTrip(new Uint8Array(0)), new Uint8Array(0));
  assert.deepEqual(roundTrip({ a: [], b: {}, c: new Map(), d: new Set() }), {
    a: [],
    b: {},
    c: new Map(),
    d: new Set(),
  });
});

Deno.test("encodeValue() round-trips NaN and the infinities", () => {
  assert.ok(Number.isNaN(roundTrip(NaN)));
  assert.equal(roundTrip(Infinity), Infinity);
  assert.equal(roundTrip(-Infinity), -Infinity);
  assert.deepEqual(roundTrip([NaN, Infinity, -Infinity]), [NaN, Infinity, -Infinity]);
  assert.equal(roundTrip(Number.MAX_VALUE), Number.MAX_VALUE);
  assert.equal(roundTrip(Number.MIN_SAFE_INTEGER), Number.MIN_SAFE_INTEGER);
});

Deno.test("encodeValue() round-trips -0 as -0", () => {
  assert.ok(Object.is(roundTrip(-0), -0), "top-level -0 came back as 0");
  assert.ok(Object.is(roundTrip([-0])[0], -0), "-0 in an array came back as 0");
  assert.ok(Object.is(roundTrip({ z: -0 }).z, -0), "-0 in an object came back as 0");
});

Deno.test("encodeValue() round-trips a Uint8Array with an odd byteOffset", () => {
  const buffer = new Uint8Array([9, 8, 7, 6, 5, 4, 3]);
  const view = buffer.subarray(1, 6);
  assert.equal(view.byteOffset, 1);
  const back = roundTrip(view);
  assert.ok(back instanceof Uint8Array);
  assert.deepEqual([...back], [8, 7, 6, 5, 4]);
});

Deno.test("encodeValue() round-trips a 1 MiB Uint8Array byte for byte", () => {
  const big = new Uint8Array(1 << 20);
  for (let i = 0; i < big.length; i += 4096) crypto.getRandomValues(big.subarray(i, i + 4096));
  const back = roundTrip(big);
  assert.equal(back.byteLength, big.byteLength);
  assert.deepEqual(back, big);
});

Deno.test("encodeValue() sends a value shared twice (not circular) twice", () => {
  const shared = { x: 1 };
  assert.deepEqual(roundTrip([shared, shared, { a: shared }]), [{ x: 1 }, { x: 1 }, {
    a: { x: 1 },
  }]);
});

// --- Values that cannot be sent --------------------------------------------------------------

function assertRefused(value: unknown, path: string, reason?: RegExp): void {
  let error: unknown;
  try {
    encodeValue(value);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SerializationError, `expected SerializationError, got ${error}`);
  assert.ok(error instanceof TypeError, "SerializationError must be a TypeError");
  assert.equal(error.name, "SerializationError");
  assert.equal(error.path, path);
  assert.ok(error.message.includes(path), `message should name the path: ${error.message}`);
  if (reason) assert.match(error.message, reason);
}

Deno.test("encodeValue() refuses a symbol, naming its path", () => {
  assertRefused(Symbol("s"), "$", /symbol/);
  assertRefused({ a: [1, Symbol("s")] }, "$.a[1]", /symbol/);
});

Deno.test("encodeValue() refuses a function, naming its path and the function", () => {
  function callback() {}
  assertRefused(callback, "$", /callback/);
  assertRefused({ args: [1, { callback }] }, "$.args[1].callback", /function/);
  assertRefused({ "odd key": () => 1 }, '$["odd key"]', /function/);
});

Deno.test("encodeValue() refuses a circular object", () => {
  const a: Record<string, unknown> = { name: "a" };
  a.self = a;
  assertRefused(a, "$.self", /circular/);
  const b: Record<string, unknown> = { child: { list: [] as unknown[] } };
  (b.child as { list: unknown[] }).list.push(b);
  assertRefused({ root: b }, "$.root.child.list[0]", /circular/);
});

Deno.test("encodeValue() refuses a circular array", () => {
  const list: unknown[] = [1, 2];
  list.push(list);
  assertRefused(list, "$[2]", /circular/);
  const outer: unknown[] = [[0, { back: null as unknown }]];
  ((outer[0] as unknown[])[1] as { back: unknown }).back = outer;
  assertRefused(outer, "$[0][1].back", /circular/);
});

Deno.test("encodeValue() refuses a circular Map and Set", () => {
  const map = new Map<string, unknown>();
  map.set("me", map);
  assertRefused(map, "$<Map>[0][1]", /circular/);
  const keyed = new Map<unknown, unknown>();
  keyed.set(keyed, 1);
  assertRefused({ m: keyed }, "$.m<Map>[0][0]", /circular/);
  const set = new Set<unknown>();
  set.add(set);
  assertRefused(set, "$<Set>[0]", /circular/);
});

Deno.test("encodeValue() refuses a Promise", () => {
  assertRefused(Promise.resolve(1), "$", /Promise/);
  assertRefused({ later: [Promise.resolve(1)] }, "$.later[0]", /Promise/);
});

Deno.test("encodeValue() refuses a WeakMap, a WeakSet and a WeakRef", () => {
  assertRefused(new WeakMap(), "$", /WeakMap/);
  assertRefused({ w: new WeakSet() }, "$.w", /WeakSet/);
  assertRefused([new WeakRef({})], "$[0]", /WeakRef/);
});

Deno.test("encodeValue() round-trips a DataView with only its own bytes", () => {
  const bytes = new Uint8Array([9, 1, 2, 3, 9]);
  const back = roundTrip({ view: new DataView(bytes.buffer, 1, 3) }).view;
  assert.ok(back instanceof DataView);
  assert.equal(back.byteLength, 3);
  assert.equal(back.buffer.byteLength, 3);
  assert.deepEqual([back.getUint8(0), back.getUint8(2)], [1, 3]);
});

Deno.test("encodeValue() round-trips RegExps with flags and lastIndex, and URLs", () => {
  const sticky = /a(b)?c/gy;
  sticky.lastIndex = 2;
  const back = roundTrip({
    sticky,
    plain: /x\/y/i,
    url: new URL("https://u:p@h.example:8/p?q=1#f"),
  });
  assert.ok(back.sticky instanceof RegExp && back.plain instanceof RegExp);
  assert.equal(back.sticky.source, "a(b)?c");
  assert.equal(back.sticky.flags, "gy");
  assert.equal(back.sticky.lastIndex, 2);
  assert.equal(back.plain.source, "x\\/y");
  assert.ok(back.url instanceof URL);
  assert.equal(back.url.href, "https://u:p@h.example:8/p?q=1#f");
});

Deno.test("encodeValue() round-trips built-in errors as their class, with properties and cause", () => {
  const range = Object.assign(new RangeError("out", { cause: new Error("inner") }), {
    code: "E_RANGE",
    status: 416,
    detail: { at: [1, undefined] },
  });
  const back = roundTrip([range])[0];
  assert.ok(back instanceof RangeError);
  assert.deepEqual(back, range);
  assert.ok(back.cause instanceof Error);
  assert.equal((back.cause as Error).message, "inner");
  assert.equal(back.stack, range.stack);
  const aggregate = roundTrip(new AggregateError([new TypeError("t"), 2], "both"));
  assert.ok(aggregate instanceof AggregateError);
  assert.ok(aggregate.errors[0] instanceof TypeError);
  assert.equal(aggregate.errors[1], 2);
  const notFound = roundTrip(new Deno.errors.NotFound("gone"));
  assert.ok(notFound instanceof Deno.errors.NotFound);
  const aborted = roundTrip(new DOMException("stop", "AbortError"));
  assert.ok(aborted instanceof DOMException);
  assert.equal(aborted.name, "AbortError");
  assertRefused(Object.assign(new Error("x"), { code: Symbol("c") }), "$.code", /symbol/);
});

Deno.test("encodeValue() refuses class instances, naming their path and class", () => {
  class Point {
    constructor(public x: number) {}
  }
  class AppError extends Error {}
  function* counter() {
    yield 1;
  }
  assertRefused({ args: [{ point: new Point(1) }] }, "$.args[0].point", /instance of Point/);
  assertRefused([new AppError("a")], "$[0]", /instance of AppError.*built-in error classes/);
  assertRefused({ g: counter() }, "$.g", /instance of (Generator|Object)/);
  assertRefused(new Headers(), "$", /instance of Headers/);
  assertRefused(Object.create({ inherited: 1 }), "$", /instance of Object/);
  assertRefused(new (class List extends Array {})(), "$", /instance of List/);
});

Deno.test("encodeValue() refuses bad values inside Maps and Sets, naming the entry", () => {
  assertRefused(new Map([["k", () => 1]]), "$<Map>[0][1]", /function/);
  assertRefused(new Set([1, Symbol("x")]), "$<Set>[1]", /symbol/);
});

Deno.test("encodeValue() never sends an own __proto__ key the receiver cannot decode", () => {
  // Such objects come from JSON.parse. The decoder rejects the key, so if the encoder let it
  // through the receiver would fail instead of the sender.
  const value = JSON.parse('{"__proto__": 1, "a": 2}');
  let bytes: Uint8Array;
  try {
    bytes = encodeValue(value);
  } catch (error) {
    assert.ok(error instanceof SerializationError, `expected SerializationError, got ${error}`);
    return;
  }
  assert.doesNotThrow(() => decodeValue(bytes), "the receiver cannot decode what was sent");
});

Deno.test("encodeValue() leaves nothing half-written when it refuses a value", () => {
  // A refused value throws before the encoder writes anything: the next encode is clean.
  const good = { a: [1, 2, 3], b: "x" };
  const before = encodeValue(good);
  assert.throws(() => encodeValue({ a: [1, 2, 3], b: "x", c: () => 1 }), SerializationError);
  assert.deepEqual(encodeValue(good), before);
  assert.deepEqual(decodeValue(encodeValue(good)), good);
});

Deno.test("decodeValue() rejects truncated input", () => {
  const bytes = encodeValue({ a: "a fairly long string", b: [1, 2, 3] });
  assert.throws(() => decodeValue(bytes.subarray(0, bytes.length - 3)));
});

/** A random value the codec can send, `depth` levels deep at most. */
function randomValue(depth: number, random: () => number): unknown {
  const pick = Math.floor(random() * (depth > 0 ? 16 : 9));
  const n = () => Math.floor(random() * 4);
  switch (pick) {
    case 0:
      return random() * 1e6 - 5e5;
    case 1:
      return Math.floor(random() * 2 ** 40);
    case 2:
      return [undefined, null, true, false, -0, NaN, Infinity][n()];
    case 3:
      return "s" + random().toString(36) + "é€";
    case 4:
      return BigInt(Math.floor(random() * 1e9)) * -(10n ** 20n);
    case 5:
      return new Date(Math.floor(random() * 2e12));
    case 6:
      return Float64Array.from({ length: n() * 3 }, () => random());
    case 7:
      return new Int16Array(new Int16Array([1, 2, 3, 4, 5]).buffer, 2, 3); // offset view
    case 8:
      return new Uint8Array([1, 2, 3, n()]).subarray(1);
    case 9: {
      const array = Array.from({ length: n() }, () => randomValue(depth - 1, random));
      if (random() < 0.3) delete array[0];
      return array;
    }
    case 10: {
      const object: Record<string, unknown> = {};
      for (let i = 0; i < n(); i++) object[`k${i}`] = randomValue(depth - 1, random);
      return object;
    }
    case 11:
      return new Map([[randomValue(0, random), randomValue(depth - 1, random)]]);
    case 12:
      return new Set([randomValue(depth - 1, random), 1]);
    case 13:
      return [
        Object.assign(new RangeError(`e${n()}`), { code: n() }),
        new RegExp(`r${n()}`, "gi"),
        new URL(`http://h.example/${n()}`),
        new DataView(new Uint8Array([n(), 1, 2]).buffer, 1),
      ][n()];
    case 14:
      return new Uint32Array([1, 2, 3]).buffer;
    default:
      return [randomValue(depth - 1, random), { nested: randomValue(depth - 1, random) }];
  }
}

Deno.test("cloneValue() equals decodeValue(encodeValue()) on 2,000 random values", () => {
  const random = prng(20261122);
  for (let i = 0; i < 2000; i++) {
    const value = randomValue(4, random);
    assert.deepEqual(cloneValue(value), roundTrip(value), `value ${i}: ${Deno.inspect(value)}`);
  }
});

Deno.test("cloneValue() copies: the clone shares no typed array, buffer or container", () => {
  const floats = new Float64Array([1, 2, 3]);
  const value = { floats, list: [floats], map: new Map([["k", [1]]]), bytes: new Uint8Array(4) };
  const copy = cloneValue(value) as typeof value;
  assert.notEqual(copy.floats, floats);
  assert.notEqual(copy.list[0], copy.floats, "a value shared twice is sent twice");
  copy.floats[0] = 99;
  copy.map.get("k")!.push(2);
  copy.bytes[0] = 7;
  assert.deepEqual(value, {
    floats: new Float64Array([1, 2, 3]),
    list: [floats],
    map: new Map([["k", [1]]]),
    bytes: new Uint8Array(4),
  });
  const view = new Float64Array(new Float64Array([0, 1, 2, 3]).buffer, 8, 2);
  const sliced = cloneValue(view) as Float64Array;
  assert.equal(sliced.byteOffset, 0);
  assert.equal(sliced.buffer.byteLength, 16, "the copy's buffer holds only its bytes");
  const buffer = cloneValue(Buffer.from([1, 2]));
  assert.equal(Object.getPrototypeOf(buffer), Uint8Array.prototype, "a Buffer arrives plain");
  // deno-lint-ignore no-sparse-arrays
  assert.deepEqual(cloneValue([1, , { r: /a/g, u: new URL("http://h/") }]), [1, , {
    r: /a/g,
    u: new URL("http://h/"),
  }]);
  const dataView = cloneValue(new DataView(new Uint8Array([1, 2, 3]).buffer, 1)) as DataView;
  assert.deepEqual([dataView.byteLength, dataView.getUint8(0)], [2, 2]);
  const failure = cloneValue(Object.assign(new TypeError("t"), { code: 1 })) as TypeError;
  assert.ok(failure instanceof TypeError);
  assert.equal((failure as TypeError & { code: number }).code, 1);
  const shipped = {
    fn: FunctionSource.of(function twice(x: number) {
      return 2 * x;
    }),
    ref: new Reference("x"),
  };
  const copied = cloneValue(shipped) as typeof shipped;
  assert.ok(copied.fn instanceof FunctionSource && copied.ref instanceof Reference);
  assert.deepEqual(copied, roundTrip(shipped));
});

Deno.test("cloneValue() and checkValue() refuse what encodeValue() refuses, with the same error", () => {
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const refused = [
    Symbol("s"),
    { a: [1, () => 1] },
    circular,
    { p: Promise.resolve() },
    new Map([["k", new WeakMap()]]),
    new Set([new (class Point {})()]),
    [new (class AppError extends Error {})()],
    { when: new Date(NaN) },
    JSON.parse('{"__proto__": 1}'),
  ];
  for (const value of refused) {
    const expected = (() => {
      try {
        encodeValue(value);
      } catch (error) {
        return error as SerializationError;
      }
      assert.fail(`encodeValue accepted ${Deno.inspect(value)}`);
    })();
    for (const check of [cloneValue, checkValue]) {
      assert.throws(() => check(value), (error: unknown) => {
        assert.ok(error instanceof SerializationError);
        assert.equal(error.message, expected.message);
        assert.equal(error.path, expected.path);
        return true;
      });
    }
  }
});

Deno.test("encodeValue() and cloneValue() relay an extension value this process cannot decode", () => {
  const unknown = decodeValue(new Uint8Array([0xd4, 0x70, 0x2a])); // fixext 1, type 112
  const relayed = decodeValue(encodeValue({ fn: unknown })) as { fn: unknown };
  assert.deepEqual(relayed, { fn: unknown });
  assert.deepEqual(cloneValue({ fn: unknown }), { fn: unknown });
  checkValue([unknown]);
});
