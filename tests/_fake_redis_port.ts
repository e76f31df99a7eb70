/**
 * A loopback port that does not speak Redis, for the failed-connect tests and benchmarks.
 *
 * @module
 */

/**
 * A TCP server on a free loopback port that does not speak Redis: `"tls"` answers the first bytes
 * with a TLS alert record and closes, as a TLS port does to a plain-text client; `"garbage"`
 * answers every read with bytes that are no RESP type, and stays open.
 */
export function fakeRedisPort(kind: "tls" | "garbage"): { url: string } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const reply = kind === "tls"
    ? new Uint8Array([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]) // alert: protocol_version
    : new TextEncoder().encode("\x00\x01garbage\xff\r\n");
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(4096);
        try {
          while ((await conn.read(buf)) !== null) {
            await conn.write(reply);
            if (kind === "tls") break;
          }
        } catch { /* the client went away */ }
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed already */ }
      })();
    }
  })();
  return {
    url: `redis://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed already */ }
      }
      await serving.catch(() => {});
    },
  };
}
