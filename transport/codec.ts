/**
 * MessagePack encoding of the values that travel between actors: JSON-like data plus typed
 * arrays, `Map`, `Set`, `BigInt`, `Date`, `undefined`, `ArrayBuffer` and `Error`, and the wire
 * types other modules register with {@linkcode defineWireType}.
 *
 * @module
 */
import { Decoder, Encoder, ExtensionCodec } from "../deps.ts";
import { SerializationError } from "../errors.ts";

const EXT_UNDEFINED = 0;
const EXT_MAP = 1;
const EXT_SET = 2;
const EXT_BIGINT = 3;
const EXT_TYPED_ARRAY = 4;
const EXT_ARRAY_BUFFER = 5;
const EXT_ERROR = 6;
const EXT_NEGATIVE_ZERO = 7;
const EXT_FIRST_USER = 16;

const TYPED_ARRAYS = [
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  // Last, so that the kinds above keep their numbers on runtimes without it.
  ...(typeof Float16Array === "function" ? [Float16Array] : []),
] as const;
type TypedArrayCtor = (typeof TYPED_ARRAYS)[number];

/** Stands for `undefined` inside the tree handed to the encoder, which would write `nil`. */
const UNDEFINED = Object.freeze({ undefined: true });
/** Stands for `-0`, which the encoder would write as the integer 0. */
const NEGATIVE_ZERO = Object.freeze({ negativeZero: true });

interface WireType<T> {
  tag: number;
  test: (value: unknown) => value is T;
  toData: (value: T) => unknown;
  fromData: (data: unknown) => T;
}
const wireTypes: WireType<unknown>[] = [];

const extensions = new ExtensionCodec();
extensions.register({
  type: EXT_UNDEFINED,
  encode: (v) => (v === UNDEFINED ? new Uint8Array(0) : null),
  decode: () => undefined,
});
extensions.register({
  type: EXT_NEGATIVE_ZERO,
  encode: (v) => (v === NEGATIVE_ZERO ? new Uint8Array(0) : null),
  decode: () => -0,
});
extensions.register({
  type: EXT_MAP,
  encode: (v) => (v instanceof Map ? encodeRaw([...v]) : null),
  decode: (data) => new Map(decodeRaw(data) as [unknown, unknown][]),
});
extensions.register({
  type: EXT_SET,
  encode: (v) => (v instanceof Set ? encodeRaw([...v]) : null),
  decode: (data) => new Set(decodeRaw(data) as unknown[]),
});
extensions.register({
  type: EXT_BIGINT,
  encode: (v) => (typeof v === "bigint" ? textEncoder.encode(v.toString()) : null),
  decode: (data) => BigInt(textDecoder.decode(data)),
});
extensions.register({
  type: EXT_TYPED_ARRAY,
  encode: (v) => {
    if (!ArrayBuffer.isView(v) || v instanceof Uint8Array || v instanceof DataView) return null;
    const kind = TYPED_ARRAYS.findIndex((C) => v instanceof C);
    const out = new Uint8Array(1 + v.byteLength);
    out[0] = kind;
    out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), 1);
    return out;
  },
  decode: (data) => {
    const C: TypedArrayCtor | undefined = TYPED_ARRAYS[data[0]];
    if (!C) throw new RangeError(`Cannot decode typed array: unknown kind ${data[0]}`);
    const bytes = new Uint8Array(data.byteLength - 1); // a fresh, aligned buffer
    bytes.set(data.subarray(1));
    return new C(bytes.buffer, 0, bytes.byteLength / C.BYTES_PER_ELEMENT);
  },
});
extensions.register({
  type: EXT_ARRAY_BUFFER,
  encode: (v) => (v instanceof ArrayBuffer ? new Uint8Array(v) : null),
  decode: (data) => data.slice().buffer,
});
extensions.register({
  type: EXT_ERROR,
  encode: (v) =>
    v instanceof Error ? encodeRaw({ name: v.name, message: v.message, stack: v.stack }) : null,
  decode: (data) => {
    const { name, message, stack } = decodeRaw(data) as Record<string, string>;
    const error = new Error(message);
    error.name = name;
    error.stack = stack;
    return error;
  },
});

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
// One encoder per nesting level: extensions encode their contents with the next level's.
const encoders: Encoder[] = [];
let depth = 0;
const decoder = new Decoder({ extensionCodec: extensions });

function encodeRaw(value: unknown): Uint8Array {
  const encoder = encoders[depth] ??= new Encoder({
    extensionCodec: extensions,
    useBigInt64: false,
  });
  depth++;
  try {
    return encoder.encode(value);
  } finally {
    depth--;
  }
}
function decodeRaw(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

/**
 * Registers a class that crosses the wire as itself: `toData` turns an instance into plain data,
 * `fromData` rebuilds it. `tag` (0–111) must be the same in every process of a cluster.
 */
export function defineWireType<T>(
  tag: number,
  test: (value: unknown) => value is T,
  toData: (value: T) => unknown,
  fromData: (data: unknown) => T,
): void {
  const type = EXT_FIRST_USER + tag;
  const wireType = { tag: type, test, toData, fromData } as WireType<unknown>;
  wireTypes.push(wireType);
  extensions.register({
    type,
    encode: (v) => (test(v) ? encodeRaw(prepareAt(toData(v))) : null),
    decode: (data) => fromData(decodeRaw(data)),
  });
}

/**
 * Encodes `value` with MessagePack. Throws {@linkcode SerializationError} naming the path of the
 * first value that cannot be sent: a symbol, a function, a circular reference, a WeakMap, a
 * Promise and the like.
 */
export function encodeValue(value: unknown): Uint8Array {
  return encodeRaw(prepareAt(value));
}

const viewEncoder = new Encoder({ extensionCodec: extensions, useBigInt64: false });

/**
 * Encodes `value` as {@linkcode encodeValue} does, into a buffer this module reuses: the bytes are
 * valid until the next call, for a caller that copies them at once.
 */
export function encodeValueTransient(value: unknown): Uint8Array {
  return viewEncoder.encodeSharedRef(prepareAt(value));
}

/**
 * Why a value cannot be sent, with the path to it, built as the error unwinds (innermost step
 * first): paths cost nothing unless something fails.
 */
class Unsendable {
  readonly steps: string[] = [];
  constructor(readonly reason: string) {}
}

/** Runs a walk from the root `$`, turning its `Unsendable` into a `SerializationError`. */
function fromRoot<T>(walk: () => T): T {
  try {
    return walk();
  } catch (error) {
    if (!(error instanceof Unsendable)) throw error;
    throw new SerializationError(`$${error.steps.reverse().join("")}`, error.reason);
  }
}

/** {@linkcode prepare} at the root `$`, failing with `SerializationError`. */
function prepareAt(value: unknown): unknown {
  return fromRoot(() => prepare(value, []));
}

/**
 * A copy of `value` equal to `decodeValue(encodeValue(value))`, made without encoding: what a
 * message between two actors of one thread carries, so that the recipient owns its value. Typed
 * arrays are copied once each. Throws {@linkcode SerializationError} where
 * {@linkcode encodeValue} does, with the same path.
 */
export function cloneValue(value: unknown): unknown {
  return fromRoot(() => clone(value, []));
}

/**
 * Throws {@linkcode SerializationError} where {@linkcode encodeValue} does, with the same path,
 * without encoding or copying anything.
 */
export function checkValue(value: unknown): void {
  prepareAt(value);
}

/** Decodes what {@linkcode encodeValue} encoded. */
export function decodeValue(bytes: Uint8Array): unknown {
  return decodeRaw(bytes);
}

/**
 * Checks that `value` can be sent and returns it with every `undefined` replaced by a marker the
 * encoder understands, copying only the containers that hold one.
 */
function prepare(value: unknown, ancestors: object[]): unknown {
  switch (typeof value) {
    case "undefined":
      return UNDEFINED;
    case "number":
      return Object.is(value, -0) ? NEGATIVE_ZERO : value;
    case "string":
    case "boolean":
    case "bigint":
      return value;
    case "symbol":
      throw new Unsendable("a symbol cannot be sent");
    case "function":
      throw new Unsendable(
        `a function (${value.name || "anonymous"}) cannot be sent where data is expected`,
      );
  }
  if (value === null) return null;
  const object = value as object;
  if (
    ArrayBuffer.isView(object) || object instanceof ArrayBuffer || object instanceof Date ||
    object instanceof Error
  ) {
    if (object instanceof Date && Number.isNaN(object.getTime())) {
      throw new Unsendable("an invalid Date cannot be sent");
    }
    if (object instanceof DataView) {
      throw new Unsendable("a DataView cannot be sent; send its typed array");
    }
    return object;
  }
  if (wireTypes.some((t) => t.test(object))) return object;
  if (ancestors.includes(object)) {
    throw new Unsendable("a circular reference cannot be sent");
  }
  ancestors.push(object);
  try {
    if (Array.isArray(object)) return prepareArray(object, ancestors);
    if (object instanceof Map) {
      const entries = [...object];
      const prepared = within("<Map>", () => prepareArray(entries, ancestors));
      return prepared === entries ? object : new Map(prepared as [unknown, unknown][]);
    }
    if (object instanceof Set) {
      const items = [...object];
      const prepared = within("<Set>", () => prepareArray(items, ancestors));
      return prepared === items ? object : new Set(prepared as unknown[]);
    }
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const kind = object.constructor?.name ?? "object";
      if (
        object instanceof Promise || object instanceof WeakMap || object instanceof WeakSet ||
        object instanceof WeakRef
      ) {
        throw new Unsendable(`a ${kind} cannot be sent`);
      }
    }
    return prepareObject(object as Record<string, unknown>, ancestors);
  } finally {
    ancestors.pop();
  }
}

/** {@linkcode prepare}'s rules, copying: see {@linkcode cloneValue}. */
function clone(value: unknown, ancestors: object[]): unknown {
  switch (typeof value) {
    case "undefined":
    case "number":
    case "string":
    case "boolean":
    case "bigint":
      return value;
    case "symbol":
    case "function":
      return prepare(value, ancestors); // throws the same Unsendable
  }
  if (value === null) return null;
  const object = value as object;
  if (ArrayBuffer.isView(object)) {
    if (object instanceof DataView) return prepare(object, ancestors);
    // The constructor copies a large array faster than `new` + `set` (which first zeroes the
    // fresh memory) and than `slice`. A Buffer becomes plain.
    const C = object instanceof Uint8Array
      ? Uint8Array
      : TYPED_ARRAYS.find((C) => object instanceof C)!;
    return new C(object as never);
  }
  if (object instanceof ArrayBuffer) return object.slice(0);
  if (object instanceof Date) {
    prepare(object, ancestors); // an invalid Date throws
    return new Date(object.getTime());
  }
  if (object instanceof Error) {
    const error = new Error(object.message);
    error.name = object.name;
    error.stack = object.stack;
    return error;
  }
  const wireType = wireTypes.find((t) => t.test(object));
  if (wireType) return wireType.fromData(clone(wireType.toData(object), ancestors));
  if (ancestors.includes(object)) {
    throw new Unsendable("a circular reference cannot be sent");
  }
  ancestors.push(object);
  try {
    if (Array.isArray(object)) return cloneArray(object, ancestors);
    if (object instanceof Map) {
      return new Map(
        within("<Map>", () => cloneArray([...object], ancestors)) as [unknown, unknown][],
      );
    }
    if (object instanceof Set) {
      return new Set(within("<Set>", () => cloneArray([...object], ancestors)));
    }
    if (
      object instanceof Promise || object instanceof WeakMap || object instanceof WeakSet ||
      object instanceof WeakRef
    ) {
      throw new Unsendable(`a ${object.constructor.name} cannot be sent`);
    }
    const copy: Record<string, unknown> = {};
    for (const key in object) {
      if (!Object.hasOwn(object, key)) continue;
      if (key === "__proto__") throw new Unsendable('an own "__proto__" key cannot be sent');
      copy[key] = within(
        propertyPath(key),
        () => clone((object as Record<string, unknown>)[key], ancestors),
      );
    }
    return copy;
  } finally {
    ancestors.pop();
  }
}

function cloneArray(array: unknown[], ancestors: object[]): unknown[] {
  const copy = new Array(array.length);
  for (let i = 0; i < array.length; i++) {
    try {
      copy[i] = clone(array[i], ancestors);
    } catch (error) {
      if (error instanceof Unsendable) error.steps.push(`[${i}]`);
      throw error;
    }
  }
  return copy;
}

/** `f()`, adding `step` to the path of what it finds unsendable. */
function within<T>(step: string, f: () => T): T {
  try {
    return f();
  } catch (error) {
    if (error instanceof Unsendable) error.steps.push(step);
    throw error;
  }
}

function prepareArray(array: unknown[], ancestors: object[]): unknown[] {
  let copy: unknown[] | undefined;
  for (let i = 0; i < array.length; i++) {
    const item = array[i];
    let prepared;
    try {
      prepared = prepare(item, ancestors);
    } catch (error) {
      if (error instanceof Unsendable) error.steps.push(`[${i}]`);
      throw error;
    }
    if (prepared !== item) {
      copy ??= array.slice();
      copy[i] = prepared;
    }
  }
  return copy ?? array;
}

function prepareObject(
  object: Record<string, unknown>,
  ancestors: object[],
): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    if (key === "__proto__") throw new Unsendable('an own "__proto__" key cannot be sent');
    const item = object[key];
    let prepared;
    try {
      prepared = prepare(item, ancestors);
    } catch (error) {
      if (error instanceof Unsendable) error.steps.push(propertyPath(key));
      throw error;
    }
    if (prepared !== item) {
      copy ??= { ...object };
      copy[key] = prepared;
    }
  }
  return copy ?? object;
}

function propertyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
