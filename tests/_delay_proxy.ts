/**
 * A TCP proxy that delays every byte by a fixed time in each direction, in order: the per-link
 * delay of the network-namespace test bed (this kernel has no `netem` qdisc). Run it inside a
 * namespace, in front of that namespace's link to Redis:
 *
 * ```sh
 * deno run -A tests/_delay_proxy.ts --listen 127.0.0.1:6380 --to 10.0.0.1:6379 --delay-ms 10
 * ```
 *
 * Prints `ready` on stdout once it listens. A connection whose other side ends or fails is ended
 * on both sides.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Copies `from` to `to`, each chunk written `delayMs` after it was read, in order. */
async function pump(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  delayMs: number,
): Promise<void> {
  const queue: { at: number; data: Uint8Array }[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        queue.push({ at: performance.now() + delayMs, data: buffer.slice(0, n) });
        wake?.();
      }
    } catch { /* reset: end both sides */ }
    ended = true;
    wake?.();
  })();
  try {
    while (true) {
      const next = queue.shift();
      if (!next) {
        if (ended) break;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      const wait = next.at - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      let written = 0;
      while (written < next.data.length) written += await to.write(next.data.subarray(written));
    }
  } catch { /* the other side is gone */ }
  for (const conn of [from, to]) {
    try {
      conn.closeWrite();
    } catch { /* closed */ }
  }
  await reading;
}

async function serve(conn: Deno.TcpConn, host: string, port: number, delayMs: number) {
  let upstream: Deno.TcpConn;
  try {
    upstream = await Deno.connect({ hostname: host, port });
  } catch {
    conn.close();
    return;
  }
  upstream.setNoDelay(true);
  conn.setNoDelay(true);
  await Promise.all([pump(conn, upstream, delayMs), pump(upstream, conn, delayMs)]);
  for (const c of [conn, upstream]) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      listen: { type: "string" },
      to: { type: "string" },
      "delay-ms": { type: "string" },
    },
  });
  const [listenHost, listenPort] = values.listen!.split(":");
  const [toHost, toPort] = values.to!.split(":");
  const delayMs = Number(values["delay-ms"] ?? 0);
  const listener = Deno.listen({ hostname: listenHost, port: Number(listenPort) });
  // deno-lint-ignore no-console
  console.log("ready");
  for await (const conn of listener) serve(conn, toHost, Number(toPort), delayMs);
}
