/**
 * A plain Redis connection that writes and reads as an attacker's script would: no key, raw
 * `XADD`s and `XRANGE`s, bulk strings read as bytes.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Backend } from "./_backends.ts";
import { delay } from "./_async.ts";

/** Connects an attacker to `redis`; `await using` disconnects it. */
export async function attacker(redis: Backend) {
  const { createClient, RESP_TYPES } = await import("../deps_redis.ts");
  const client = createClient({
    url: redis.url,
    commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } },
  });
  client.on("error", () => {});
  await client.connect();
  const send = (args: (string | Uint8Array)[]): Promise<unknown> =>
    client.sendCommand(args.map((a) => typeof a === "string" ? a : Buffer.from(a)));
  return {
    send,
    /** The keys matching `pattern`, polled until there is one. */
    async keys(pattern: string): Promise<string[]> {
      for (let i = 0; i < 500; i++) {
        const keys = (await send(["KEYS", pattern]) as unknown[]).map(String);
        if (keys.length > 0) return keys;
        await delay(10);
      }
      return [];
    },
    /** The payloads of the entries of `stream`, oldest first. */
    async payloads(stream: string): Promise<Uint8Array[]> {
      const entries = await send(["XRANGE", stream, "-", "+"]) as [unknown, unknown[]][];
      return entries.map(([, fields]) => new Uint8Array(fields[1] as Uint8Array));
    },
    /** Appends `payload` to `stream` as the library's own entries are written. */
    add(stream: string, payload: Uint8Array) {
      return send(["XADD", stream, "*", "m", payload]);
    },
    async [Symbol.asyncDispose]() {
      await client.close().catch(() => client.destroy());
    },
  };
}
