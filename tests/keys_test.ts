/**
 * Cluster keys (issue 13, point 5): key files an attacker planted or loosened, files that are not
 * keys, and keys too short to sign with, each refused with an error naming the cause, through
 * the public API.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../actors/mod.ts";
import { Cluster, MemoryTransport, readKeyFile, writeKeyFile } from "../mod.ts";

const TEST = { sanitizeOps: true, sanitizeResources: true } as const;
const HEX_KEY = "ab".repeat(32) + "\n";

async function inTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "readKeyFile() refuses a key file that others can read or write (0644, 0666)",
  ...TEST,
  fn: () =>
    inTempDir(async (dir) => {
      for (const mode of [0o644, 0o666, 0o640]) {
        const path = `${dir}/k${mode.toString(8)}`;
        await Deno.writeTextFile(path, HEX_KEY);
        await Deno.chmod(path, mode);
        await assert.rejects(readKeyFile(path), (error: Error) => {
          assert.ok(error instanceof Deno.errors.PermissionDenied, String(error));
          assert.match(error.message, new RegExp(`mode 0${mode.toString(8)}.*chmod 600`));
          return true;
        });
      }
      const owned = `${dir}/owned`;
      await Deno.writeTextFile(owned, HEX_KEY, { mode: 0o600 });
      await Deno.chmod(owned, 0o400);
      assert.equal((await readKeyFile(owned)).length, 32);
    }),
});

Deno.test({
  name: "readKeyFile() refuses /dev/zero and a huge file without reading them",
  ...TEST,
  fn: () =>
    inTempDir(async (dir) => {
      await assert.rejects(readKeyFile("/dev/zero"), (error: Error) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /not a regular file/);
        return true;
      });
      const huge = `${dir}/huge`;
      const file = await Deno.open(huge, { write: true, create: true, mode: 0o600 });
      await file.truncate(8 * 1024 ** 3); // sparse: 8 GiB of zeros that take no disk
      file.close();
      await assert.rejects(readKeyFile(huge), /too long for a key/);
    }),
});

Deno.test({
  name: "readKeyFile() refuses a key of fewer than 32 bytes (a 16-byte or empty key file)",
  ...TEST,
  fn: () =>
    inTempDir(async (dir) => {
      for (const text of ["ab".repeat(16), "", "zz".repeat(32)]) {
        const path = `${dir}/k`;
        await Deno.writeTextFile(path, text, { mode: 0o600 });
        await assert.rejects(readKeyFile(path), /expected at least 64 hex digits/);
      }
    }),
});

Deno.test({
  name: "writeKeyFile() replaces a planted symlink instead of writing through it",
  ...TEST,
  fn: () =>
    inTempDir(async (dir) => {
      const target = `${dir}/victim`;
      await Deno.writeTextFile(target, "precious\n", { mode: 0o644 });
      await Deno.chmod(target, 0o644);
      await Deno.symlink(target, `${dir}/cluster.key`);
      const key = await writeKeyFile(`${dir}/cluster.key`);
      assert.equal(await Deno.readTextFile(target), "precious\n");
      assert.equal((await Deno.stat(target)).mode! & 0o777, 0o644);
      const written = await Deno.lstat(`${dir}/cluster.key`);
      assert.ok(written.isFile && !written.isSymlink);
      assert.equal(written.mode! & 0o777, 0o600);
      assert.deepEqual(await readKeyFile(`${dir}/cluster.key`), key);
      const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(left, ["cluster.key", "victim"]);
    }),
});

Deno.test({
  name: "a key of fewer than 32 bytes, or a string, is refused by Cluster, connect and ActorSystem",
  ...TEST,
  fn: async () => {
    for (const key of [new Uint8Array(0), new Uint8Array(16), new Uint8Array(31)]) {
      assert.throws(
        () => new Cluster({ n: 1, key, progress: false }),
        (error: Error) => error instanceof RangeError && /at least 32 bytes/.test(error.message),
      );
      await assert.rejects(
        Cluster.connect({ transport: "memory:", cluster: "c", key, n: 1 }),
        RangeError,
      );
      assert.throws(
        () => new ActorSystem({ transport: new MemoryTransport(), key, namespace: "n" }),
        RangeError,
      );
    }
    assert.throws(
      // @ts-expect-error: a string is what a user might pass
      () => new Cluster({ n: 1, key: "my secret", progress: false }),
      (error: Error) =>
        error instanceof TypeError && /key must be a Uint8Array.*got a string/.test(error.message),
    );
    await assert.rejects(writeKeyFile("/nonexistent/k", new Uint8Array(8)), RangeError);
  },
});

Deno.test({
  name: "a cluster keyed from a file written by writeKeyFile() runs tasks",
  ...TEST,
  fn: () =>
    inTempDir(async (dir) => {
      await writeKeyFile(`${dir}/cluster.key`);
      await using cluster = new Cluster({ n: 2, keyFile: `${dir}/cluster.key`, progress: false });
      const client = await cluster.startAndConnect();
      assert.deepEqual(await client.broadcastView().apply((a: number) => a * 2, 21), [42, 42]);
    }),
});
