/**
 * Latency of an empty broadcast `apply` on a deno-parallel BroadcastView: one cluster of
 * `--engines` engines, then `client.broadcastView(ids.slice(0, k)).apply(() => null)` for every
 * k of `--ks`, after `--warmup` untimed calls (the Deno side of `ipp_broadcast.py`).
 *
 * ```sh
 * deno run -A bench/broadcast.ts --engines 100 --ks 2,8,32,100 --reps 50 [--transport redis://…]
 * ```
 *
 * Standalone, prints one line `RESULT {json}` (milliseconds). With `--serve` it prints
 * `READY {json}` once the cluster is up and answers stdin commands, one per line:
 * `measure K REPS WARMUP [broadcast|direct]` → `SAMPLES {"k": K, "samples": [ms, …], "xadds"}`
 * (`direct`: the same call on a DirectView of those engines; `xadds`: on Redis, the messages
 * written to it per call, from `INFO commandstats`); `quit` (or end of input) →
 * `STOPPED {"stop": seconds}`.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, type DirectView } from "../mod.ts";
import { connectAdmin, type RedisAdmin } from "../tests/_redis_server.ts";
import { median, summarize } from "./_util.ts";

/** A running cluster ready to time empty broadcasts. */
export interface BroadcastBench {
  /** The transport URL. */
  transport: string;
  /** The engine ids. */
  ids: number[];
  /** Seconds it took to start and connect. */
  startSeconds: number;
  /**
   * Times `reps` empty applies on a BroadcastView (or, with `direct`, a DirectView) of the first
   * `k` engines, after `warmup` untimed ones.
   */
  measure(k: number, reps: number, warmup: number, direct?: boolean): Promise<number[]>;
  /** Stops the cluster; resolves to the seconds it took. */
  stop(): Promise<number>;
}

const empty = () => null;

/** Starts a cluster of `n` engines on `transport` for {@linkcode BroadcastBench.measure}. */
export async function startBroadcastBench(n: number, transport: string): Promise<BroadcastBench> {
  const t0 = performance.now();
  // Speed, not liveness: under IPython Parallel's start-up load a host can be starved for seconds.
  const cluster = new Cluster({
    n,
    transport,
    progress: false,
    engineTimeout: 300_000,
    heartbeatTimeoutMs: 60_000,
  });
  const client = await cluster.startAndConnect();
  const startSeconds = (performance.now() - t0) / 1000;
  const ids = client.ids;
  const views = new Map<string, DirectView>();
  const once = async (view: Pick<DirectView, "apply">, k: number) => {
    const values = await view.apply(empty);
    if (values.length !== k || values.some((v) => v !== null && v !== undefined)) {
      throw new Error(`unexpected broadcast result: ${JSON.stringify(values)}`);
    }
  };
  return {
    transport,
    ids,
    startSeconds,
    async measure(k, reps, warmup, direct = false) {
      const key = `${direct ? "direct" : "broadcast"}@${k}`;
      let view = views.get(key);
      if (!view) {
        const targets = ids.slice(0, k);
        view = direct
          ? client.view(targets)
          : client.broadcastView(targets) as unknown as DirectView;
        views.set(key, view);
      }
      for (let i = 0; i < warmup; i++) await once(view, k);
      const samples: number[] = [];
      for (let i = 0; i < reps; i++) {
        const t = performance.now();
        await once(view, k);
        samples.push(performance.now() - t);
      }
      return samples;
    },
    async stop() {
      const t = performance.now();
      await cluster.stop();
      return (performance.now() - t) / 1000;
    },
  };
}

/** Messages written to the Redis at `url` so far (`XADD`s), or `undefined` off Redis. */
async function xadds(admin: RedisAdmin | undefined): Promise<number | undefined> {
  if (!admin) return undefined;
  const info = String(await admin.send(["INFO", "commandstats"]));
  return Number(/cmdstat_xadd:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

async function serve(bench: BroadcastBench): Promise<void> {
  const admin = bench.transport.startsWith("redis")
    ? await connectAdmin(bench.transport)
    : undefined;
  console.log(
    "READY " +
      JSON.stringify({
        engines: bench.ids.length,
        start: bench.startSeconds,
        transport: bench.transport.replace(/\/\/[^@]*@/, "//"),
      }),
  );
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of Deno.stdin.readable) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const words = buffer.slice(0, newline).trim().split(/\s+/);
      buffer = buffer.slice(newline + 1);
      if (words[0] === "quit") return void await admin?.[Symbol.asyncDispose]();
      if (words[0] === "measure") {
        const [k, reps, warmup] = words.slice(1, 4).map(Number);
        const direct = words[4] === "direct";
        const before = await xadds(admin);
        const samples = await bench.measure(k, reps, warmup, direct);
        const after = await xadds(admin);
        const calls = reps + warmup;
        const perCall = before === undefined || calls === 0 ? undefined : (after! - before) / calls;
        console.log("SAMPLES " + JSON.stringify({ k, samples, xadds: perCall }));
      } else if (words[0]) {
        console.log("ERROR " + JSON.stringify({ line: words.join(" ") }));
      }
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "100" },
      ks: { type: "string", default: "2,8,32,100" },
      reps: { type: "string", default: "50" },
      warmup: { type: "string", default: "5" },
      transport: { type: "string", default: Deno.env.get("REDIS_URL") ?? "memory:" },
      serve: { type: "boolean", default: false },
    },
  });
  const bench = await startBroadcastBench(Number(values.engines), values.transport);
  try {
    if (values.serve) {
      await serve(bench);
      console.log("STOPPED " + JSON.stringify({ stop: await bench.stop() }));
    } else {
      const broadcast: Record<string, unknown> = {};
      for (const k of values.ks.split(",").map(Number)) {
        const samples = await bench.measure(
          Math.min(k, bench.ids.length),
          Number(values.reps),
          Number(values.warmup),
        );
        broadcast[k] = { ...summarize(samples), samples };
        console.error(`k=${k}: median ${median(samples).toFixed(2)} ms`);
      }
      const stop = await bench.stop();
      console.log(
        "RESULT " +
          JSON.stringify({
            engines: bench.ids.length,
            transport: bench.transport.replace(/\/\/[^@]*@/, "//"),
            start: bench.startSeconds,
            stop,
            broadcast,
          }),
      );
    }
  } catch (error) {
    await bench.stop().catch(() => {});
    throw error;
  }
}
