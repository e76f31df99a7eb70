/**
 * Values with a meaning on the engines: a reference to a name in the engine's namespace, a
 * function shipped as source, and a function exported by a module.
 *
 * @module
 */
import { defineWireType } from "../../transport/codec.ts";

/**
 * A name in the engine's namespace, passed as an argument of `apply`: each engine replaces it by
 * its own value of that name (IPython Parallel's `Reference`).
 *
 * @example Each engine passes its own value of a name
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, Reference } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * await client.view().scatter("chunk", [1, 2, 3, 4]);
 * const sums = await client.view().apply(
 *   (xs: number[]) => xs.reduce((a, b) => a + b, 0),
 *   new Reference("chunk"),
 * );
 * assert.deepEqual(sums, [3, 7]);
 * ```
 */
export class Reference {
  /** The name to look up in the engine's namespace. */
  readonly name: string;
  /** A reference to `name`. */
  constructor(name: string) {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`Cannot make Reference: name must be a non-empty string`);
    }
    this.name = name;
  }
}

/** A function crossing the wire as its source text; the engine evaluates it in its namespace. */
export class FunctionSource {
  /** The function's source, as `Function.prototype.toString` gives it. */
  readonly source: string;
  /** The function's name, for error messages. */
  readonly name: string;
  constructor(source: string, name = "") {
    this.source = source;
    this.name = name;
  }

  /** The source form of `fn`. Throws `TypeError` for native and bound functions. */
  static of(fn: (...args: never[]) => unknown): FunctionSource {
    const source = Function.prototype.toString.call(fn);
    if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
      throw new TypeError(
        `Cannot ship function "${fn.name}": native or bound functions have no source; ` +
          `wrap it in an arrow function or use ModuleFunction`,
      );
    }
    return new FunctionSource(source, fn.name);
  }
}

/**
 * A function exported by a module, named by the module's URL or specifier (`file:`, `http:`,
 * `https:`, `node:`, `npm:`, `jsr:`): each engine imports the module and calls the export. The
 * way to use imports inside tasks.
 *
 * @example A Node built-in and an npm package, on every engine
 * ```ts ignore
 * await view.apply(new ModuleFunction("node:path", "basename"), "/data/a.csv"); // ["a.csv", …]
 * await view.apply(new ModuleFunction("npm:@msgpack/msgpack@3.1.3", "encode"), [1, 2]);
 * ```
 */
export class ModuleFunction {
  /** The module's URL. */
  readonly url: string;
  /** The name of the export; `"default"` for the default export. */
  readonly exportName: string;
  /** The export `exportName` of the module at `url`. */
  constructor(url: string | URL, exportName = "default") {
    const href = new URL(url).href;
    if (!/^(file|https?|node|npm|jsr):/.test(href)) {
      throw new TypeError(
        `Cannot use module "${href}": expected a file:, http:, https:, node:, npm: or jsr: URL`,
      );
    }
    this.url = href;
    this.exportName = exportName;
  }
}

defineWireType(
  0,
  (v): v is Reference => v instanceof Reference,
  (v) => v.name,
  (d) => new Reference(d as string),
);
defineWireType(
  1,
  (v): v is FunctionSource => v instanceof FunctionSource,
  (v) => [v.source, v.name],
  (d) => new FunctionSource(...(d as [string, string])),
);
defineWireType(
  2,
  (v): v is ModuleFunction => v instanceof ModuleFunction,
  (v) => [v.url, v.exportName],
  (d) => new ModuleFunction(...(d as [string, string])),
);

/**
 * A value too large to copy into every message: stored once in the transport under `key`. The
 * signed message that carries the reference also carries the stored bytes' length and SHA-256, so
 * that an engine uses the bytes only when they are the ones the sender stored (the stored value
 * itself is not signed: anyone who can write to the transport can change it).
 */
export class BlobRef {
  /** The transport key the encoded value is stored under. */
  readonly key: string;
  /** How many bytes were stored. */
  readonly length: number;
  /** The SHA-256 of the stored bytes (32 bytes). */
  readonly sha256: Uint8Array;
  constructor(key: string, length: number, sha256: Uint8Array) {
    if (
      typeof key !== "string" || !Number.isSafeInteger(length) || length < 0 ||
      !(sha256 instanceof Uint8Array) || sha256.byteLength !== 32
    ) {
      throw new TypeError(
        "Cannot make BlobRef: expected a key, a length and a 32-byte SHA-256",
      );
    }
    this.key = key;
    this.length = length;
    this.sha256 = sha256;
  }
}

defineWireType(
  3,
  (v): v is BlobRef => v instanceof BlobRef,
  (v) => [v.key, v.length, v.sha256],
  (d) => {
    if (!Array.isArray(d) || d.length !== 3) {
      throw new TypeError("Cannot decode BlobRef: expected [key, length, sha256]");
    }
    return new BlobRef(d[0], d[1], d[2]);
  },
);
