/**
 * Starting engines, and the round trip of an empty `apply`, for each launcher and transport:
 *
 * - the time `Cluster.startAndConnect()` takes for 8 and 100 engines;
 * - their memory right after: for the `"worker"` launcher, this process's RSS growth (Workers
 *   live in it); for the `"process"` launcher, that growth plus the RSS (`VmRSS`) of each engine
 *   process;
 * - the median round trip of an empty `DirectView.apply` on 1 and on 8 engines (and on all of
 *   them), after a warm-up.
 *
 * Each measurement runs in a fresh `deno run` of this file (`--one`), so that no run inherits the
 * memory or the warm caches of another; each figure is the median over `--reps` such runs. Redis is a `redis-server` of its own. Prints a markdown
 * table and writes it to `bench/results/engines.md`.
 *
 * ```sh
 * deno run -A bench/engines.ts [--sizes 8,100] [--calls 100] [--reps 3]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, type ClusterOptions } from "../actors/client/cluster.ts";
import { startRedisServer } from "../tests/_redis_server.ts";
import type { DirectView } from "../actors/client/direct_view.ts";

/** One configuration to measure. */
interface Config {
  launcher: "worker" | "process";
  transport: "memory" | "redis";
  /** `"cores"` (the default: one host per CPU core) or `"n"` (one isolate per engine). */
  hosts: "cores" | "n";
  n: number;
}

/** What one `--one` run reports. */
interface Measurement {
  config: Config;
  startMs: number;
  memoryBytes: number;
  hostProcesses: number;
  applyMs: { one: number; eight: number; all: number };
  stopMs: number;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    one: { type: "string" },
    redis: { type: "string" },
    sizes: { type: "string", default: "8,100" },
    calls: { type: "string", default: "100" },
    reps: { type: "string", default: "3" },
  },
});
const CALLS = Number(flags.calls);
const WARMUP = 10;

if (flags.one) {
  const measurement = await measure(JSON.parse(flags.one) as Config, flags.redis);
  console.log(JSON.stringify(measurement));
} else if (import.meta.main) {
  await main();
}

async function main(): Promise<void> {
  const sizes = flags.sizes!.split(",").map(Number);
  const configs: Config[] = [];
  for (const n of sizes) {
    configs.push({ launcher: "worker", transport: "memory", hosts: "cores", n });
    configs.push({ launcher: "worker", transport: "redis", hosts: "cores", n });
    configs.push({ launcher: "process", transport: "redis", hosts: "cores", n });
    configs.push({ launcher: "worker", transport: "memory", hosts: "n", n });
  }
  await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
  // Fill Deno's module caches first: every measured run then starts alike.
  await runOne({ launcher: "process", transport: "redis", hosts: "cores", n: 2 }, server.url);
  const loadBefore = Deno.loadavg()[0];
  const results: Measurement[] = [];
  for (const config of configs) {
    const reps: Measurement[] = [];
    for (let i = 0; i < Number(flags.reps); i++) reps.push(await runOne(config, server.url));
    const result = medianMeasurement(reps);
    console.error(`${label(result.config)}: ${JSON.stringify(result)}`);
    results.push(result);
  }
  const table = render(results, [loadBefore, Deno.loadavg()[0]]);
  console.log(table);
  const out = new URL("./results/engines.md", import.meta.url);
  await Deno.mkdir(new URL(".", out), { recursive: true });
  await Deno.writeTextFile(out, table);
  // The repository's `deno fmt --check` covers the results too: write them formatted.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", out.pathname] }).output();
  console.error(`Wrote ${out.pathname}`);
}

/** Each figure's median over repeated runs of one configuration. */
function medianMeasurement(reps: Measurement[]): Measurement {
  const of = (f: (m: Measurement) => number) => median(reps.map(f));
  return {
    config: reps[0].config,
    startMs: of((m) => m.startMs),
    memoryBytes: of((m) => m.memoryBytes),
    hostProcesses: reps[0].hostProcesses,
    applyMs: {
      one: of((m) => m.applyMs.one),
      eight: of((m) => m.applyMs.eight),
      all: of((m) => m.applyMs.all),
    },
    stopMs: of((m) => m.stopMs),
  };
}

/** Runs one configuration in a fresh process and returns what it measured. */
async function runOne(config: Config, redisUrl: string): Promise<Measurement> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).href,
      "--one",
      JSON.stringify(config),
      "--redis",
      redisUrl,
      "--calls",
      String(CALLS),
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    throw new Error(
      `Cannot measure ${label(config)}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return JSON.parse(text.split("\n").at(-1)!) as Measurement;
}

/** Starts the cluster of `config`, measures it, stops it. */
async function measure(config: Config, redisUrl: string | undefined): Promise<Measurement> {
  const options: ClusterOptions = {
    n: config.n,
    transport: config.transport === "redis" ? redisUrl! : "memory:",
    launcher: config.launcher,
    progress: false,
    engineTimeout: 120_000,
    ...(config.hosts === "n" ? { hosts: config.n } : {}),
  };
  const rssBefore = Deno.memoryUsage().rss;
  const started = performance.now();
  const cluster = new Cluster(options);
  const client = await cluster.startAndConnect();
  const startMs = performance.now() - started;
  try {
    const all = client.view();
    const pids = [...new Set(await all.apply(() => Deno.pid).get({ timeout: 60_000 }))];
    const children = pids.filter((pid) => pid !== Deno.pid);
    await settle();
    const memoryBytes = Deno.memoryUsage().rss - rssBefore +
      children.reduce((sum, pid) => sum + vmRss(pid), 0);
    const applyMs = {
      one: await roundTrip(client.view([0])),
      eight: await roundTrip(client.view(client.ids.slice(0, 8))),
      all: await roundTrip(all),
    };
    const stopStarted = performance.now();
    await cluster.stop();
    return {
      config,
      startMs,
      memoryBytes,
      hostProcesses: children.length,
      applyMs,
      stopMs: performance.now() - stopStarted,
    };
  } finally {
    await cluster.stop();
  }
}

/** The median of `CALLS` sequential empty applies, after `WARMUP` untimed ones. */
async function roundTrip(view: DirectView): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const t = performance.now();
    await view.apply(() => 0).get({ timeout: 60_000 });
    if (i >= WARMUP) times.push(performance.now() - t);
  }
  return median(times);
}

/** Lets the engines' start-up garbage be collected before memory is read. */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 500));
}

/** The resident set of process `pid`, in bytes (0 once it is gone). */
function vmRss(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function label(c: Config): string {
  return `${c.launcher}/${c.transport}${c.hosts === "n" ? " (hosts = n)" : ""} n=${c.n}`;
}

function render(results: Measurement[], load: number[]): string {
  const cores = navigator.hardwareConcurrency;
  const lines = [
    `# Starting engines and empty round trips`,
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    "`deno run -A bench/engines.ts`: Deno " + Deno.version.deno + `, ${cores} CPUs, Redis on ` +
    "loopback (its own server). Each row is the median of " + flags.reps +
    " runs, each in a fresh process. Memory: RSS growth of the " +
    "client's process (Workers live in it) plus the RSS of each engine process. Round trips: " +
    `median of ${CALLS} sequential empty \`DirectView.apply\` calls after ${WARMUP} untimed ones. ` +
    `Load average (1 min) ${load.map((x) => x.toFixed(1)).join(" → ")}: the machine is shared, ` +
    "so take these as orders of magnitude.",
    "",
    "| launcher | transport | hosts | engines | start + connect | memory (sum of RSS) | " +
    "empty apply, 1 engine | empty apply, 8 engines | empty apply, all engines | stop |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    const c = r.config;
    lines.push(
      `| ${c.launcher} | ${c.transport} | ${
        c.hosts === "n" ? `${c.n} (one per engine)` : `${Math.min(cores, c.n)} (one per core)`
      } | ${c.n} | ${ms(r.startMs)} | ${mib(r.memoryBytes)} | ${ms(r.applyMs.one)} | ${
        ms(r.applyMs.eight)
      } | ${ms(r.applyMs.all)} | ${ms(r.stopMs)} |`,
    );
  }
  const ipp = { startMs: 91_500, memoryBytes: 12.3 * 2 ** 30 };
  const hundred = results.filter((r) => r.config.n === 100 && r.config.hosts === "cores");
  if (hundred.length) {
    lines.push(
      "",
      "Against IPython Parallel 7.1 on this machine (MEASUREMENTS.md: 100 engines start in " +
        "~91.5 s and take 12.3 GiB; target: ≥ 30× faster, ≤ 1/10 of the memory):",
      "",
    );
    for (const r of hundred) {
      lines.push(
        `- ${r.config.launcher}/${r.config.transport}, 100 engines: start ${
          (ipp.startMs / r.startMs).toFixed(0)
        }× faster, memory 1/${(ipp.memoryBytes / r.memoryBytes).toFixed(0)}.`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 2 : 0)} ms`;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}
