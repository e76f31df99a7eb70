// Cluster keys at rest: the hex key files that clusters, clients and engines started by hand share.
import { checkKey, type ClusterKey, generateKey, MIN_KEY_BYTES } from "./envelope.ts";

/** Longest key file read: a key of 1 KiB in hex with room for whitespace. */
const MAX_KEY_FILE_BYTES = 4096;

/** The key as hex, the form key files hold. */
export function toHex(key: ClusterKey): string {
  return [...key].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Writes a new cluster key (or `key`) to `path` in hex, readable by its owner only (mode 0600),
 * for {@linkcode ClusterOptions.keyFile}, `Cluster.connect({ keyFile })` and `engine.ts
 * --key-file`. Returns the key. The file is written beside `path` and renamed over it, so a
 * symlink planted at `path` is replaced, never followed.
 *
 * @example Share a key with engines started by hand
 * ```ts ignore
 * const key = await writeKeyFile("cluster.key");
 * await using cluster = new Cluster({ keyFile: "cluster.key", transport: "redis://…" });
 * ```
 */
export async function writeKeyFile(
  path: string,
  key: ClusterKey = generateKey(),
): Promise<ClusterKey> {
  checkKey(key, "Cannot write key file");
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 });
  try {
    await file.write(new TextEncoder().encode(toHex(key) + "\n"));
    if (Deno.build.os !== "windows") await Deno.chmod(temporary, 0o600);
  } finally {
    file.close();
  }
  try {
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  return key;
}

/**
 * Reads a key file: at least 64 hex digits (whitespace ignored), in a regular file that only its
 * owner can read or write (mode 0600 or 0400, as {@linkcode writeKeyFile} makes it). A missing
 * file fails with `Deno.errors.NotFound`, a file others can read with
 * `Deno.errors.PermissionDenied`, anything else that is not a key with a `TypeError`.
 *
 * @example A key written, then read back
 * ```ts
 * import assert from "node:assert/strict";
 * import { readKeyFile, writeKeyFile } from "../mod.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.remove(path);
 * const key = await writeKeyFile(path);
 * assert.deepEqual(await readKeyFile(path), key);
 * await Deno.remove(path);
 * ```
 */
export async function readKeyFile(path: string): Promise<ClusterKey> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Deno.errors.NotFound(
      `Cannot read key file "${path}": no such file (write one with writeKeyFile("${path}"))`,
      { cause: error },
    );
  }
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new TypeError(`Cannot read key file "${path}": it is not a regular file`);
    }
    if (Deno.build.os !== "windows" && info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new Deno.errors.PermissionDenied(
        `Cannot read key file "${path}": its mode ${
          (info.mode & 0o777).toString(8).padStart(4, "0")
        } lets others read or write it (chmod 600 "${path}")`,
      );
    }
    if (info.size > MAX_KEY_FILE_BYTES) {
      throw new TypeError(
        `Cannot read key file "${path}": ${info.size} bytes is too long for a key`,
      );
    }
    const bytes = await readAtMost(file, MAX_KEY_FILE_BYTES + 1);
    if (bytes.length > MAX_KEY_FILE_BYTES) {
      throw new TypeError(`Cannot read key file "${path}": too long for a key`);
    }
    return parseHexKey(new TextDecoder().decode(bytes).trim(), `key file "${path}"`);
  } finally {
    file.close();
  }
}

/** Parses a hex key of at least 32 bytes; `what` names its source in the error. */
export function parseHexKey(text: string, what: string): ClusterKey {
  if (!new RegExp(`^([0-9a-f]{2}){${MIN_KEY_BYTES},}$`, "i").test(text)) {
    throw new TypeError(
      `Cannot read ${what}: expected at least ${
        MIN_KEY_BYTES * 2
      } hex digits (a ${MIN_KEY_BYTES}-byte key)`,
    );
  }
  return new Uint8Array(text.match(/../g)!.map((h) => parseInt(h, 16)));
}

async function readAtMost(file: Deno.FsFile, limit: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(limit);
  let length = 0;
  while (length < limit) {
    const n = await file.read(buffer.subarray(length));
    if (n === null) break;
    length += n;
  }
  return buffer.subarray(0, length);
}
