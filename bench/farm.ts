/**
 * Task farming: a `LoadBalancedView` on a cluster of exactly k engines (k = 8, 32; two hosts, one
 * per core), on the embedded and on the Redis transport. Measures (a) the throughput of 10,000
 * tiny tasks (`x => x + 1`) at chunksize 1 and 100, (b) one task's round trip (`apply`, median of
 * 100), (c) the makespan of 2,000 tasks of random cost 0–20 ms (an asynchronous wait, so that the
 * cost does not depend on how many cores the machine has) against the ideal, total cost ÷ k, and
 * against the total of the run times the tasks measured (a timer fires late) ÷ k.
 *
 * Writes its table into `bench/RESULTS.md` between `<!-- farm:start/end -->` (or `--out`), and
 * prints the raw figures as one JSON line.
 *
 * ```sh
 * deno run -A bench/farm.ts [--engines 8,32] [--skip-redis] [--out FILE]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster } from "../mod.ts";
import { startRedisServer } from "../tests/_redis_server.ts";
import { formatLoad, loadAverage, median } from "./_util.ts";
import { replaceSection } from "./_report.ts";

/** The figures of one system at one k. */
export interface FarmRun {
  transport: "memory" | "redis";
  engines: number;
  /** Tiny tasks per second, chunksize 1. */
  tinyPerS: number;
  /** Tiny tasks per second, chunksize 100. */
  tinyChunkedPerS: number;
  /** Tiny tasks per second, chunksize 1, `prefetch: 4`. */
  tinyPrefetchPerS: number;
  /** Median ms of one `apply`. */
  roundTripMs: number;
  /** Ms for the 2,000 tasks of random cost. */
  makespanMs: number;
  /** Their total cost ÷ engines, in ms. */
  idealMs: number;
  /** Their total run time as the tasks measured it (the timers' lateness included) ÷ engines. */
  workMs: number;
}

const TINY = 10_000;
const UNEVEN = 2_000;

/** Waits `ms`; returns how long the wait took (a timer fires late by up to a millisecond). */
async function sleepy(ms: number): Promise<number> {
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return performance.now() - start;
}

/** Runs the three measurements on a fresh cluster of `engines` engines. */
export async function farmRun(
  transport: string,
  engines: number,
): Promise<FarmRun> {
  await using cluster = new Cluster({ n: engines, hosts: 2, transport, progress: false });
  const client = await cluster.startAndConnect();
  const lview = client.loadBalancedView();
  const xs = Array.from({ length: TINY }, (_, i) => i);
  const inc = (x: number) => x + 1;
  // Warm-up: every engine compiles the functions once.
  await lview.map(inc, xs.slice(0, 500));
  await lview.map(sleepy, new Array(engines * 2).fill(1));

  const rate = async (chunksize: number, prefetch = 1) => {
    const t = performance.now();
    const out = await lview.map(inc, xs, { chunksize, prefetch });
    if (out[TINY - 1] !== TINY) throw new Error("wrong result");
    return Math.round(TINY / ((performance.now() - t) / 1000));
  };
  const tinyPerS = await rate(1);
  const tinyChunkedPerS = await rate(100);
  const tinyPrefetchPerS = await rate(1, 4);

  const trips: number[] = [];
  for (let i = 0; i < 100; i++) {
    const t = performance.now();
    await lview.apply(inc, i);
    trips.push(performance.now() - t);
  }

  const costs = Array.from({ length: UNEVEN }, () => Math.random() * 20);
  const t = performance.now();
  const took = await lview.map(sleepy, costs);
  const makespanMs = performance.now() - t;
  const idealMs = costs.reduce((a, b) => a + b, 0) / engines;
  const workMs = took.reduce((a, b) => a + b, 0) / engines;
  return {
    transport: transport.startsWith("redis") ? "redis" : "memory",
    engines,
    tinyPerS,
    tinyChunkedPerS,
    tinyPrefetchPerS,
    roundTripMs: median(trips),
    makespanMs,
    idealMs,
    workMs,
  };
}

/** One peer's figures, as its script in `--peers DIR` printed them (one JSON line). */
export interface PeerRun {
  system: string;
  n: number;
  tasks_per_s?: number;
  /** BullMQ's name for `tasks_per_s`. */
  jobs_per_s?: number;
  round_trip_ms?: number;
  /** IPython Parallel's and Dask's name for `tasks_per_s`. */
  map_tasks_per_s?: number;
  /** IPython Parallel's `map(…, chunksize=100)`. */
  map_chunk100_tasks_per_s?: number;
  /** IPython Parallel's one `apply_sync` on a LoadBalancedView. */
  lb_apply_ms_median?: number;
}

/**
 * Runs `node <script> …args` in `dir` (where `npm install piscina@5 bullmq@5` was done and the
 * scripts of `/work/shared/peers/` were copied) and parses its JSON line.
 */
async function peerRun(dir: string, script: string, args: string[]): Promise<PeerRun> {
  const { code, stdout, stderr } = await new Deno.Command("node", {
    args: [script, ...args],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout).trim().split("\n").pop() ?? "";
  if (code !== 0) throw new Error(`${script} failed: ${new TextDecoder().decode(stderr)}`);
  return JSON.parse(text);
}

/**
 * Runs `/usr/bin/python3 <dir>/<script> …args` (Dask's and IPython Parallel's scripts of
 * `/work/shared/peers/`) and parses its JSON line; `undefined` when the Python package
 * `module` is not installed.
 */
async function pythonPeerRun(
  dir: string,
  script: string,
  module: string,
  args: string[],
): Promise<PeerRun | undefined> {
  const probe = await new Deno.Command(PYTHON, { args: ["-c", `import ${module}`], stderr: "null" })
    .output().catch(() => undefined);
  if (!probe?.success) return undefined;
  const ipythonDir = await Deno.makeTempDir({ prefix: "farm-ipython-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(PYTHON, {
      args: [`${dir}/${script}`, ...args],
      cwd: dir,
      env: { IPYTHONDIR: ipythonDir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout).trim().split("\n").pop() ?? "";
    if (code !== 0) throw new Error(`${script} failed: ${new TextDecoder().decode(stderr)}`);
    const run = JSON.parse(text) as PeerRun;
    return {
      ...run,
      system: module === "distributed" ? "Dask distributed `client.map`" : run.system,
      tasks_per_s: run.map_tasks_per_s,
      round_trip_ms: run.lb_apply_ms_median,
    };
  } finally {
    await Deno.remove(ipythonDir, { recursive: true }).catch(() => {});
  }
}

const PYTHON = "/usr/bin/python3";

/** The Markdown table of the peers' runs. */
export function peerTable(peers: readonly PeerRun[]): string {
  return [
    "| peer (same run) | workers | tiny tasks/s, one task per item | chunksize 100 | one task's round trip |",
    "|---|--:|--:|--:|--:|",
    ...peers.map((p) =>
      `| ${p.system} | ${p.n} | ${(p.tasks_per_s ?? p.jobs_per_s)?.toLocaleString("en") ?? "–"} | ${
        p.map_chunk100_tasks_per_s?.toLocaleString("en") ?? "–"
      } | ${p.round_trip_ms === undefined ? "–" : `${p.round_trip_ms.toFixed(2)} ms`} |`
    ),
  ].join("\n");
}

/** The Markdown table of `runs`. */
export function farmTable(runs: readonly FarmRun[]): string {
  const rows = runs.map((r) =>
    `| ${r.transport === "memory" ? "embedded" : "Redis"} | ${r.engines} | ` +
    `${r.tinyPerS.toLocaleString("en")} | ${r.tinyChunkedPerS.toLocaleString("en")} | ` +
    `${r.tinyPrefetchPerS.toLocaleString("en")} | ` +
    `${r.roundTripMs.toFixed(2)} ms | ${(r.makespanMs / 1000).toFixed(2)} s / ` +
    `${(r.idealMs / 1000).toFixed(2)} s (${
      ((r.makespanMs / r.idealMs - 1) * 100).toFixed(1)
    }%) | ` +
    `${(r.workMs / 1000).toFixed(2)} s (${((r.makespanMs / r.workMs - 1) * 100).toFixed(1)}%) |`
  );
  return [
    "| transport | engines | tiny tasks/s, chunksize 1 | chunksize 100 | chunksize 1, prefetch 4 | one task's round trip | makespan of 2,000 tasks of 0–20 ms / ideal (over) | ideal from the tasks' measured run times (over) |",
    "|---|--:|--:|--:|--:|--:|--:|--:|",
    ...rows,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "8,32" },
      "skip-redis": { type: "boolean", default: false },
      peers: { type: "string" },
      out: { type: "string" },
    },
  });
  const ks = values.engines.split(",").map(Number);
  const runs: FarmRun[] = [];
  const load = [loadAverage()];
  await using redis = values["skip-redis"] ? undefined : await startRedisServer();
  for (const k of ks) {
    for (const transport of ["memory:", ...(redis ? [redis.url] : [])]) {
      const run = await farmRun(transport, k);
      console.error(JSON.stringify(run));
      runs.push(run);
    }
  }
  const peers: PeerRun[] = [];
  if (values.peers) {
    for (const k of ks) {
      peers.push(await peerRun(values.peers, "piscina_bench.mjs", [String(k), String(TINY)]));
      console.error(JSON.stringify(peers.at(-1)));
      if (redis) {
        const port = new URL(redis.url).port;
        peers.push(
          await peerRun(values.peers, "bullmq_bench.mjs", [port, String(k), String(TINY)]),
        );
        console.error(JSON.stringify(peers.at(-1)));
      }
      for (
        const [script, module] of [["dask_bench.py", "distributed"], [
          "ipp_lb_bench.py",
          "ipyparallel",
        ]]
      ) {
        const run = await pythonPeerRun(values.peers, script, module, [
          String(k),
          "--tasks",
          String(TINY),
        ]);
        if (run) peers.push(run);
        else console.error(`${script}: skipped, \`import ${module}\` failed`);
        console.error(JSON.stringify(peers.at(-1)));
      }
    }
  }
  load.push(loadAverage());
  console.log(JSON.stringify({ runs, peers }));
  const outPath = values.out ?? new URL("RESULTS.md", import.meta.url).pathname;
  let doc = "";
  try {
    doc = await Deno.readTextFile(outPath);
  } catch { /* a new file */ }
  const body = [
    `Task farming (\`bench/farm.ts\`, ${new Date().toISOString().slice(0, 16)} UTC, ` +
    `load ${load.map(formatLoad).join(" → ")}): \`deno run -A bench/farm.ts --engines ${
      ks.join(",")
    }${values.peers ? " --peers DIR" : ""}\``,
    "",
    farmTable(runs),
    ...(peers.length ? ["", peerTable(peers)] : []),
  ].join("\n");
  await Deno.writeTextFile(outPath, replaceSection(doc, "farm", body));
}
