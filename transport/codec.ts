/**
 * MessagePack encoding of the values that travel between actors. A value arrives equal, of the
 * same type, or is refused before anything is sent with a `SerializationError` naming its path and
 * type. What arrives as itself: JSON-like data, `undefined`, `-0`, `BigInt`, nested and sparse
 * arrays, typed arrays, `ArrayBuffer`, `DataView`, `Map`, `Set`, `Date`, `RegExp`, `URL`, the
 * built-in errors and `Deno.errors` (with their own properties, `cause` and `errors`), and the wire
 * types this library registers with {@linkcode defineWireType}. Instances of other classes are
 * refused: they would arrive as plain objects without their prototype.
 *
 * Why this file is over 500 lines: encoding, the copy of local delivery (`cloneValue`) and the
 * check before sending must agree on every type, so each type's three cases sit side by side.
 *
 * @module
 */
import { Decoder, Encoder, ExtData, ExtensionCodec } from "../deps.ts";
import { SerializationError } from "../errors.ts";

const EXT_UNDEFINED = 0;
const EXT_MAP = 1;
const EXT_SET = 2;
const EXT_BIGINT = 3;
const EXT_TYPED_ARRAY = 4;
const EXT_ARRAY_BUFFER = 5;
const EXT_ERROR = 6;
const EXT_NEGATIVE_ZERO = 7;
const EXT_REGEXP = 8;
const EXT_URL = 9;
const EXT_DATA_VIEW = 10;
const EXT_SPARSE_ARRAY = 11;
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
// The kinds below are handed to the encoder as `ExtData` by `prepare`, which meets them anyway:
// registered without an encoder, they cost the encoder nothing for the values that are not them.
function registerDecoder(type: number, decode: (data: Uint8Array) => unknown): void {
  extensions.register({ type, encode: null as never, decode });
}
registerDecoder(EXT_ERROR, (data) => buildError(decodeRaw(data) as ErrorParts));
registerDecoder(EXT_REGEXP, (data) => makeRegExp(...(decodeRaw(data) as [string, string, number])));
registerDecoder(EXT_URL, (data) => new URL(textDecoder.decode(data)));
registerDecoder(EXT_DATA_VIEW, (data) => new DataView(data.slice().buffer));
registerDecoder(EXT_SPARSE_ARRAY, (data) => {
  const [length, pairs] = decodeRaw(data) as [number, unknown[]];
  const array = new Array(length);
  for (let i = 0; i < pairs.length; i += 2) array[pairs[i] as number] = pairs[i + 1];
  return array;
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
 * first value that cannot be sent (a symbol, a function, a circular reference, a class instance,
 * a Promise and the like), starting from `path`, the place of `value` in what is sent.
 */
export function encodeValue(value: unknown, path = "$"): Uint8Array {
  return encodeRaw(prepareAt(value, path));
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

/** Runs a walk from `root`, turning its `Unsendable` into a `SerializationError`. */
function fromRoot<T>(walk: () => T, root = "$"): T {
  try {
    return walk();
  } catch (error) {
    if (!(error instanceof Unsendable)) throw error;
    throw new SerializationError(`${root}${error.steps.reverse().join("")}`, error.reason);
  }
}

/** {@linkcode prepare} from `root`, failing with `SerializationError`. */
function prepareAt(value: unknown, root = "$"): unknown {
  return fromRoot(() => prepare(value, []), root);
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
 * encoder understands and every RegExp, URL, DataView, Error and sparse array by its `ExtData`,
 * copying only the containers that hold one. Plain objects and arrays are recognised first, by
 * their prototype, so plain data asks no other question.
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
  const proto = Object.getPrototypeOf(object);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) {
    if (ancestors.includes(object)) throw new Unsendable("a circular reference cannot be sent");
    ancestors.push(object);
    try {
      return proto === Array.prototype
        ? prepareArray(object as unknown[], ancestors)
        : prepareObject(object as Record<string, unknown>, ancestors);
    } finally {
      ancestors.pop();
    }
  }
  return prepareInstance(object, ancestors);
}

/** {@linkcode prepare} for an object that is neither plain nor an array. */
function prepareInstance(object: object, ancestors: object[]): unknown {
  if (ArrayBuffer.isView(object)) {
    if (object instanceof DataView) {
      return new ExtData(
        EXT_DATA_VIEW,
        new Uint8Array(object.buffer, object.byteOffset, object.byteLength),
      );
    }
    return object;
  }
  if (object instanceof ArrayBuffer) return object;
  if (object instanceof Date) {
    if (Number.isNaN(object.getTime())) throw new Unsendable("an invalid Date cannot be sent");
    return object;
  }
  if (object instanceof RegExp) {
    return new ExtData(EXT_REGEXP, encodeRaw([object.source, object.flags, object.lastIndex]));
  }
  if (object instanceof URL) return new ExtData(EXT_URL, textEncoder.encode(object.href));
  if (object instanceof Error) return prepareError(object, ancestors);
  if (wireTypes.some((t) => t.test(object))) return object;
  // An extension value this process has no decoder for (a wire type registered only where it is
  // used), decoded as `ExtData`: relayed as it came.
  if (object instanceof ExtData) return object;
  if (!(object instanceof Map || object instanceof Set)) return refuse(object);
  if (ancestors.includes(object)) throw new Unsendable("a circular reference cannot be sent");
  ancestors.push(object);
  try {
    if (object instanceof Map) {
      const entries = [...object];
      const prepared = within("<Map>", () => prepareArray(entries, ancestors));
      return prepared === entries ? object : new Map(prepared as [unknown, unknown][]);
    }
    const items = [...object];
    const prepared = within("<Set>", () => prepareArray(items, ancestors));
    return prepared === items ? object : new Set(prepared as unknown[]);
  } finally {
    ancestors.pop();
  }
}

/**
 * Throws the `Unsendable` of an object no rule takes: an instance of a class would arrive as a
 * plain object without its prototype, so it is refused rather than altered.
 */
function refuse(object: object): never {
  const kind = typeName(object);
  if (
    object instanceof Promise || object instanceof WeakMap || object instanceof WeakSet ||
    object instanceof WeakRef
  ) {
    throw new Unsendable(`a ${kind} cannot be sent`);
  }
  if (object instanceof Error) {
    throw new Unsendable(
      `an instance of ${kind} cannot be sent: only the built-in error classes and Deno.errors ` +
        `arrive as themselves (send a built-in error with a name and properties instead)`,
    );
  }
  throw new Unsendable(
    `an instance of ${kind} cannot be sent: only plain objects, arrays and built-in types ` +
      `arrive as themselves (send its fields, e.g. { ...value }, and rebuild the ${kind} there)`,
  );
}

function typeName(object: object): string {
  const constructor = Object.getPrototypeOf(object)?.constructor;
  if (typeof constructor === "function" && constructor.name) return constructor.name;
  return Object.prototype.toString.call(object).slice(8, -1);
}

const BUILT_IN_ERRORS = new Map<string, ErrorConstructor>(
  [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError].map((C) => [
    C.name,
    C,
  ]),
);

function denoErrors(): Record<string, unknown> | undefined {
  return (globalThis as { Deno?: { errors?: Record<string, unknown> } }).Deno?.errors;
}

/** The name the receiver rebuilds `error`'s class by, or `undefined` for a class it cannot. */
function errorKind(error: Error): string | undefined {
  const constructor = Object.getPrototypeOf(error)?.constructor;
  if (typeof constructor !== "function") return undefined;
  const name = constructor.name;
  if (
    BUILT_IN_ERRORS.get(name) === constructor || constructor === AggregateError ||
    constructor === DOMException
  ) {
    return name;
  }
  if (denoErrors()?.[name] === constructor) return `Deno.errors.${name}`;
  return undefined;
}

/** What an error crosses the wire as; `properties` are its own enumerable ones (`code`, …). */
type ErrorParts = [
  kind: string,
  name: string,
  message: string,
  stack: string | null,
  properties: Record<string, unknown>,
  hasCause: boolean,
  cause: unknown,
  errors: unknown[] | null,
];

function errorParts(
  error: Error,
  ancestors: object[],
  copy: (value: unknown, ancestors: object[]) => unknown,
): ErrorParts {
  const kind = errorKind(error);
  if (kind === undefined) refuse(error);
  if (ancestors.includes(error)) throw new Unsendable("a circular reference cannot be sent");
  ancestors.push(error);
  try {
    const hasCause = Object.hasOwn(error, "cause");
    return [
      kind,
      String(error.name),
      String(error.message),
      typeof error.stack === "string" ? error.stack : null,
      copy({ ...error }, ancestors) as Record<string, unknown>,
      hasCause,
      hasCause ? within(".cause", () => copy(error.cause, ancestors)) : null,
      error instanceof AggregateError
        ? within(".errors", () => copy([...error.errors], ancestors)) as unknown[]
        : null,
    ];
  } finally {
    ancestors.pop();
  }
}

function prepareError(error: Error, ancestors: object[]): ExtData {
  return new ExtData(EXT_ERROR, encodeRaw(errorParts(error, ancestors, prepare)));
}

function buildError(
  [kind, name, message, stack, properties, hasCause, cause, errors]: ErrorParts,
): Error {
  let error: Error;
  if (kind === "AggregateError") error = new AggregateError(errors ?? [], message);
  else if (kind === "DOMException") error = new DOMException(message, name);
  else {
    const denoName = kind.startsWith("Deno.errors.") ? kind.slice(12) : undefined;
    const C = (denoName === undefined ? BUILT_IN_ERRORS.get(kind) : denoErrors()?.[denoName]) as
      | ErrorConstructor
      | undefined;
    error = new (C ?? Error)(message);
  }
  if (hasCause) {
    Object.defineProperty(error, "cause", { value: cause, writable: true, configurable: true });
  }
  if (stack !== null) error.stack = stack;
  Object.assign(error, properties);
  if (error.name !== name) error.name = name;
  return error;
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
  const proto = Object.getPrototypeOf(object);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) {
    if (ancestors.includes(object)) throw new Unsendable("a circular reference cannot be sent");
    ancestors.push(object);
    try {
      return proto === Array.prototype
        ? cloneArray(object as unknown[], ancestors)
        : cloneObject(object as Record<string, unknown>, ancestors);
    } finally {
      ancestors.pop();
    }
  }
  return cloneInstance(object, ancestors);
}

/** {@linkcode clone} for an object that is neither plain nor an array. */
function cloneInstance(object: object, ancestors: object[]): unknown {
  if (ArrayBuffer.isView(object)) {
    if (object instanceof DataView) {
      const bytes = new Uint8Array(object.buffer, object.byteOffset, object.byteLength);
      return new DataView(new Uint8Array(bytes).buffer);
    }
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
  if (object instanceof RegExp) return makeRegExp(object.source, object.flags, object.lastIndex);
  if (object instanceof URL) return new URL(object.href);
  if (object instanceof Error) return buildError(errorParts(object, ancestors, clone));
  const wireType = wireTypes.find((t) => t.test(object));
  if (wireType) return wireType.fromData(clone(wireType.toData(object), ancestors));
  if (object instanceof ExtData) {
    const { type, data } = object;
    return new ExtData(type, data instanceof Uint8Array ? data.slice() : data);
  }
  if (!(object instanceof Map || object instanceof Set)) return refuse(object);
  if (ancestors.includes(object)) throw new Unsendable("a circular reference cannot be sent");
  ancestors.push(object);
  try {
    if (object instanceof Map) {
      return new Map(
        within("<Map>", () => cloneArray([...object], ancestors)) as [unknown, unknown][],
      );
    }
    return new Set(within("<Set>", () => cloneArray([...object], ancestors)));
  } finally {
    ancestors.pop();
  }
}

function makeRegExp(source: string, flags: string, lastIndex: number): RegExp {
  const regExp = new RegExp(source, flags);
  if (lastIndex !== 0) regExp.lastIndex = lastIndex;
  return regExp;
}

function cloneObject(object: Record<string, unknown>, ancestors: object[]): unknown {
  const copy: Record<string, unknown> = {};
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    if (key === "__proto__") throw new Unsendable('an own "__proto__" key cannot be sent');
    copy[key] = within(propertyPath(key), () => clone(object[key], ancestors));
  }
  return copy;
}

/** A copy of `array`, holes left as holes (only an `undefined` item is asked whether it is one). */
function cloneArray(array: unknown[], ancestors: object[]): unknown[] {
  const copy = new Array(array.length);
  for (let i = 0; i < array.length; i++) {
    const item = array[i];
    if (item === undefined && !(i in array)) continue;
    try {
      copy[i] = clone(item, ancestors);
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

function prepareArray(array: unknown[], ancestors: object[]): unknown {
  let copy: unknown[] | undefined;
  for (let i = 0; i < array.length; i++) {
    const item = array[i];
    if (item === undefined && !(i in array)) return prepareSparse(array, ancestors);
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

/** An array with holes, as its length and its `[index, value, …]` pairs. */
function prepareSparse(array: unknown[], ancestors: object[]): ExtData {
  const pairs: unknown[] = [];
  for (const key of Object.keys(array)) {
    const i = Number(key);
    if (!Number.isInteger(i) || String(i) !== key) break; // indices come first, in order
    pairs.push(i, within(`[${i}]`, () => prepare(array[i], ancestors)));
  }
  return new ExtData(EXT_SPARSE_ARRAY, encodeRaw([array.length, pairs]));
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

/** The step to property `key` in a path: `.name`, or `["odd key"]`. */
export function propertyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
