/**
 * A host's sweep for entries other consumers left pending (`XAUTOCLAIM`) costs one Redis call for
 * all its inboxes, not one per inbox made one after another inside its read loop.
 */
import assert from "node:assert/strict";
import { Cluster } from "../mod.ts";
import { waitUntil } from "./_async.ts";
import { redisTest } from "./_backends.ts";
import { clusterFiles, startEngine } from "./_multihost.ts";

/** The commands Redis runs, as MONITOR prints them: each one's arguments. */
class Monitor implements AsyncDisposable {
  readonly commands: string[][] = [];
  readonly #conn: Deno.TcpConn;
  readonly #done: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#done = this.#read();
  }

  static async open(url: string): Promise<Monitor> {
    const { hostname, port } = new URL(url);
    const conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(new TextEncoder().encode("MONITOR\r\n"));
    return new Monitor(conn);
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    let text = "";
    try {
      for await (const chunk of this.#conn.readable) {
        text += decoder.decode(chunk, { stream: true });
        const lines = text.split("\r\n");
        text = lines.pop()!;
        for (const line of lines) {
          if (!line.startsWith("+") || line === "+OK") continue;
          const args = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
          this.commands.push(args);
        }
      }
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#conn.close();
    } catch { /* closed */ }
    await this.#done;
  }
}

redisTest(
  "an engine.ts host sweeps all its inboxes for stale entries in one Redis call",
  async ({ url }) => {
    await using files = await clusterFiles();
    const { cluster, keyFile } = files;
    await using monitor = await Monitor.open(url);
    await using _host = startEngine(
      ["--redis", url, "--cluster", cluster, "--key-file", keyFile, "--n", "8"],
    );
    const client = await Cluster.connect({ transport: url, cluster, keyFile, n: 8 });
    try {
      assert.deepEqual(await client.view().apply(() => 1), [1, 1, 1, 1, 1, 1, 1, 1]);
      const engineInbox = new RegExp(`^${cluster}:inbox:engine\\.(\\d+)$`);
      /** The engines whose inboxes each claim call names. */
      const claims = () =>
        monitor.commands
          .filter((args) => /^EVAL(SHA)?$/i.test(args[0]) && /XAUTOCLAIM/.test(args[1]))
          .map((args) => args.filter((a) => engineInbox.test(a)))
          .filter((inboxes) => inboxes.length > 0);
      await waitUntil("a claim sweep of the host", () => claims().length > 0, 10_000);
      for (const inboxes of claims()) {
        assert.equal(
          inboxes.length,
          8,
          `a claim call named ${inboxes.length} of the host's 8 engine inboxes: ${inboxes}`,
        );
      }
    } finally {
      await client.close();
    }
  },
);
