/**
 * `deno task bench`: deno-parallel against IPython Parallel on this machine, in one run.
 *
 * 1. Empty broadcast `apply` at k = 2, 8, 32, 100 engines: ONE cluster of 100 engines per system
 *    (IPython Parallel via `/usr/bin/python3 bench/ipp_broadcast.py --serve`, Deno on the memory
 *    and on the Redis transport via `bench/broadcast.ts --serve`), all three up at once and
 *    measured in interleaved rounds, so the machine's load falls on all of them alike.
 * 2. The md5 seed notebook, whole script as a subprocess, at 8, 32 and 100 engines: Deno on both
 *    transports (`examples/md5.ts`) and IPython Parallel (`bench/ipp_md5.py`), interleaved.
 *
 * Writes the tables to `bench/RESULTS.md` (only between its own `<!-- …:start/end -->` markers;
 * other sections are kept), the plot to `bench/broadcast.svg` and the raw samples to
 * `bench/results/<date>.json`.
 *
 * ```sh
 * deno task bench [--quick] [--skip-ipp] [--ipp-md5-reps 3,2,1] [--deno-md5-reps 5] [--rounds 5]
 * ```
 * `--quick`: 8 and 32 engines only (broadcast on a cluster of 32). `--skip-ipp`: Deno only.
 * 3. Task farming, `bench/farm.ts` (skip with `--skip-farm`; `--farm-peers DIR` runs piscina and
 *    BullMQ beside it, see that file).
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { startRedisServer } from "../tests/_redis_server.ts";
import {
  broadcastSvg,
  broadcastTable,
  formatMs,
  formatRatio,
  formatSeconds,
  LABELS,
  md5Table,
  medianOf,
  replaceSection,
  type SystemName,
} from "./_report.ts";
import { type Md5Run, runDenoMd5, runIppMd5 } from "./md5.ts";
import {
  formatBytes,
  formatLoad,
  type LineProcess,
  loadAverage,
  startBroadcastServer,
  summarize,
  type Summary,
  treeCpuSeconds,
  waitForMemory,
} from "./_util.ts";

const PYTHON = "/usr/bin/python3";
const HERE = new URL(".", import.meta.url);

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    "skip-ipp": { type: "boolean", default: false },
    "skip-redis": { type: "boolean", default: false },
    "skip-farm": { type: "boolean", default: false },
    "farm-peers": { type: "string" },
    "ipp-md5-reps": { type: "string" },
    "deno-md5-reps": { type: "string" },
    rounds: { type: "string" },
    out: { type: "string" },
  },
});
const quick = flags.quick;
// A quick run does not overwrite the full results.
const outPath = flags.out ?? new URL(quick ? "results/quick.md" : "RESULTS.md", HERE).pathname;
const md5Counts = quick ? [8, 32] : [8, 32, 100];
const broadcastKs = quick ? [2, 8, 32] : [2, 8, 32, 100];
const clusterSize = Math.max(...broadcastKs);
const rounds = Number(flags.rounds ?? (quick ? 3 : 5));
const denoMd5Reps = Number(flags["deno-md5-reps"] ?? (quick ? 3 : 5));
const ippMd5Reps = (flags["ipp-md5-reps"] ?? (quick ? "1,1" : "3,2,1")).split(",").map(Number);
// per round: IPython ≥ 20 samples in all, Deno ≥ 50
const ippPerRound = Math.ceil(20 / rounds) + (rounds < 5 ? 1 : 0);
const denoPerRound = Math.ceil(50 / rounds) + 2;

const log = (message: string) =>
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const args = Deno.args.join(" ");
const command = `deno task bench${args ? " " + args : ""}`;
const startedAt = new Date();
const loads: { when: string; load: [number, number, number] }[] = [];
const noteLoad = (when: string) => {
  const load = loadAverage();
  loads.push({ when, load });
  log(`load average (${when}): ${formatLoad(load)}`);
};
const notes: string[] = [];

// --- environment ---------------------------------------------------------------------------------

async function output(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

const cpuModel = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1];
const memTotal = Number(/MemTotal:\s+(\d+)/.exec(await Deno.readTextFile("/proc/meminfo"))?.[1]) *
  1024;
const nproc = (await output("nproc", [])) ?? String(navigator.hardwareConcurrency);
const redisVersion = (await output("redis-server", ["--version"]))?.match(/v=(\S+)/)?.[1];
const pythonVersion = await output(PYTHON, ["--version"]);
let ippVersion: string | undefined;
if (flags["skip-ipp"]) {
  notes.push("IPython Parallel skipped (`--skip-ipp`).");
} else {
  ippVersion = await output(PYTHON, [
    "-c",
    "import ipyparallel, zmq, cloudpickle; print(ipyparallel.__version__)",
  ]);
  if (!ippVersion) {
    notes.push(
      `IPython Parallel skipped: \`${PYTHON} -c "import ipyparallel, zmq, cloudpickle"\` failed ` +
        "(install Debian's `python3-ipyparallel` and `python3-cloudpickle`).",
    );
    log(notes.at(-1)!);
  }
}
const withIpp = ippVersion !== undefined;

// --- a private Redis -----------------------------------------------------------------------------

let redis: Awaited<ReturnType<typeof startRedisServer>> | undefined;
if (!flags["skip-redis"]) {
  try {
    redis = await startRedisServer();
    log(`private redis-server on ${redis.url}`);
  } catch (error) {
    notes.push(`Deno on Redis skipped: cannot start redis-server (${(error as Error).message}).`);
    log(notes.at(-1)!);
  }
} else notes.push("Deno on Redis skipped (`--skip-redis`).");
const systems: SystemName[] = [
  ...(withIpp ? ["ipp" as const] : []),
  "deno-memory",
  ...(redis ? ["deno-redis" as const] : []),
];
const transportOf = (system: SystemName) => system === "deno-redis" ? redis!.url : "memory:";

noteLoad("start");

/**
 * IPython Parallel needs ~120 MiB per engine (engine + nanny): wait until the machine has that
 * much available (other people's jobs run here too; an OOM kill stalls a cluster's start).
 */
async function ippMemoryGuard(engines: number): Promise<boolean> {
  const need = engines * 125 * 2 ** 20 + 1.5 * 2 ** 30;
  const ok = await waitForMemory(need, 20 * 60_000, (available) =>
    log(
      `waiting for ${formatBytes(need)} of available memory for ${engines} IPython engines ` +
        `(${formatBytes(available)} now)…`,
    ));
  if (!ok) {
    notes.push(
      `IPython Parallel with ${engines} engines skipped once: less than ${formatBytes(need)} of ` +
        "memory available after waiting 20 min.",
    );
    log(notes.at(-1)!);
  }
  return ok;
}

// --- 1. empty broadcast apply ------------------------------------------------------------------

const broadcastSamples = new Map<string, number[]>();
const clusterInfo: Partial<Record<SystemName, Record<string, unknown>>> = {};
const keyOf = (k: number, system: SystemName) => `${system}@${k}`;
/** CPU seconds a system's processes used while it was measured, and the calls made. */
const cpuPerCall: Record<string, { cpu: number; calls: number; seconds: number }> = {};
let settleSeconds = 0;
/** CPU seconds a system's processes used while another system was measured, and how long. */
const idleCpu: Partial<Record<SystemName, { cpu: number; seconds: number }>> = {};

function cpuSnapshot(procs: Map<SystemName, LineProcess>): Map<SystemName, [number, number]> {
  const now = performance.now() / 1000;
  return new Map(
    [...procs].map(([system, proc]) => [system, [treeCpuSeconds(proc.child.pid), now]]),
  );
}

async function benchBroadcast(): Promise<void> {
  const procs = new Map<SystemName, LineProcess>();
  try {
    // IPython first, alone: starting its engines is the heavy part, and should not disturb the
    // Deno clusters' start (nor the other way round).
    for (const system of systems) {
      if (system === "ipp" && !(await ippMemoryGuard(clusterSize))) continue;
      log(`starting a ${clusterSize}-engine cluster for ${LABELS[system]}…`);
      const proc = startBroadcastServer(
        system,
        clusterSize,
        system === "ipp" ? "ipp" : transportOf(system),
      );
      procs.set(system, proc);
      let ready: Record<string, unknown>;
      try {
        ready = await proc.expect<Record<string, unknown>>("READY");
      } catch (error) {
        procs.delete(system);
        proc.kill();
        await proc.close().catch(() => {});
        notes.push(
          `${LABELS[system]}: broadcast cluster failed to start: ` +
            `\`${(error as Error).message.split("\n").slice(-3).join(" ").slice(0, 300)}\``,
        );
        log(notes.at(-1)!);
        continue;
      }
      clusterInfo[system] = ready;
      log(
        `  ${LABELS[system]}: ${ready.engines} engines up in ${
          formatSeconds(ready.start as number)
        }` +
          (ready.cluster_pss ? `, PSS ${formatBytes(ready.cluster_pss as number)}` : ""),
      );
    }
    noteLoad("broadcast clusters up");
    // A cluster just started still works for a while (IPython's engines and hub finish
    // registering): wait until all of them are nearly idle, then run one untimed round.
    const settleStart = performance.now();
    for (let i = 0; i < 120; i++) {
      const c0 = [...procs.values()].reduce((sum, p) => sum + treeCpuSeconds(p.child.pid), 0);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const c1 = [...procs.values()].reduce((sum, p) => sum + treeCpuSeconds(p.child.pid), 0);
      if (c1 - c0 < 0.2) break;
    }
    settleSeconds = (performance.now() - settleStart) / 1000;
    log(`clusters idle after ${settleSeconds.toFixed(0)} s; warm-up round…`);
    for (const k of broadcastKs) {
      for (const [system, proc] of procs) {
        await proc.send(`measure ${k} 0 ${system === "ipp" ? 3 : 10}`);
        await proc.expect("SAMPLES");
      }
    }
    for (let round = 0; round < rounds; round++) {
      for (const k of broadcastKs) {
        // rotate the order of the systems from round to round
        const live = systems.filter((s) => procs.has(s));
        const order = live.map((_, i) => live[(i + round) % live.length]);
        for (const system of order) {
          const reps = system === "ipp" ? ippPerRound : denoPerRound;
          const warmup = 1;
          const proc = procs.get(system)!;
          const before = cpuSnapshot(procs);
          await proc.send(`measure ${k} ${reps} ${warmup}`);
          const { samples } = await proc.expect<{ samples: number[] }>("SAMPLES");
          const after = cpuSnapshot(procs);
          const key = keyOf(k, system);
          broadcastSamples.set(key, [...(broadcastSamples.get(key) ?? []), ...samples]);
          // CPU used by the measured system per call, and by the idle ones meanwhile
          for (const [other, [cpu0, t0]] of before) {
            const [cpu1, t1] = after.get(other)!;
            if (other === system) {
              const c = (cpuPerCall[key] ??= { cpu: 0, calls: 0, seconds: 0 });
              c.cpu += cpu1 - cpu0;
              c.calls += reps + warmup;
              c.seconds += t1 - t0;
            } else {
              const c = (idleCpu[other] ??= { cpu: 0, seconds: 0 });
              c.cpu += cpu1 - cpu0;
              c.seconds += t1 - t0;
            }
          }
        }
      }
      log(
        `broadcast round ${round + 1}/${rounds}: ` +
          broadcastKs.map((k) =>
            `k=${k} ` +
            [...procs.keys()].map((s) =>
              summarize(broadcastSamples.get(keyOf(k, s)) ?? []).median.toFixed(1)
            ).join("/")
          ).join("  ") + " ms (" + [...procs.keys()].join("/") + ")",
      );
    }
    noteLoad("broadcast measured");
  } finally {
    for (const [system, proc] of procs) {
      try {
        await proc.send("quit");
        const { stop } = await proc.expect<{ stop: number }>("STOPPED");
        (clusterInfo[system] ??= {}).stop = stop;
        await proc.close();
      } catch (error) {
        log(`${system}: ${(error as Error).message}`);
        proc.kill();
        await proc.close().catch(() => {});
      }
    }
  }
}

// --- 2. the md5 script ---------------------------------------------------------------------------

const md5Runs: Md5Run[] = [];
const md5Failures = new Map<string, string[]>();

async function md5Once(system: SystemName, n: number): Promise<void> {
  const attempt = async () => {
    if (system !== "ipp") return await runDenoMd5(n, transportOf(system));
    if (!(await ippMemoryGuard(n))) throw new Error("not enough memory available");
    return await runIppMd5(n, PYTHON);
  };
  try {
    let run: Md5Run;
    try {
      run = await attempt();
    } catch (error) {
      // Library files may be mid-edit by someone else (Deno), or the machine ran short of
      // memory (IPython): one retry.
      log(
        `${LABELS[system]} md5 at ${n} failed, retrying: ${(error as Error).message.slice(0, 500)}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 3000));
      run = await attempt();
    }
    md5Runs.push({ ...run, transport: system });
    log(
      `md5 ${LABELS[system]} n=${n}: start ${formatSeconds(run.start)}, apply ` +
        `${formatSeconds(run.apply)}, whole ${formatSeconds(run.wall)}`,
    );
  } catch (error) {
    const key = keyOf(n, system);
    md5Failures.set(key, [...(md5Failures.get(key) ?? []), (error as Error).message]);
    log(`md5 ${LABELS[system]} n=${n} FAILED: ${(error as Error).message.slice(0, 2000)}`);
  }
}

async function benchMd5(): Promise<void> {
  // warm the file cache and Deno's module cache (untimed)
  for (const system of systems.filter((s) => s !== "ipp")) {
    await runDenoMd5(8, transportOf(system)).catch(() => {});
  }
  for (const [i, n] of md5Counts.entries()) {
    const ippReps = withIpp ? (ippMd5Reps[i] ?? ippMd5Reps.at(-1) ?? 1) : 0;
    const reps = Math.max(denoMd5Reps, ippReps);
    for (let rep = 0; rep < reps; rep++) {
      const order = systems.map((_, j) => systems[(j + rep) % systems.length]);
      for (const system of order) {
        if (system === "ipp" ? rep < ippReps : rep < denoMd5Reps) await md5Once(system, n);
      }
    }
    noteLoad(`md5 at ${n} engines done`);
  }
}

// --- run -----------------------------------------------------------------------------------------

try {
  await benchBroadcast();
  await benchMd5();
} finally {
  await redis?.[Symbol.asyncDispose]();
}
noteLoad("end");
const finishedAt = new Date();

// --- report --------------------------------------------------------------------------------------

const broadcastSummary = (k: number, system: SystemName): Summary | undefined => {
  const samples = broadcastSamples.get(keyOf(k, system));
  return samples?.length ? summarize(samples) : undefined;
};
const md5Cell = (n: number, system: SystemName) => {
  const runs = md5Runs.filter((r) => r.engines === n && r.transport === system);
  const failures = md5Failures.get(keyOf(n, system)) ?? [];
  if (!runs.length && !failures.length) return undefined;
  const m = (key: keyof Md5Run) => medianOf(runs.map((r) => r[key] as number | undefined));
  return {
    runs: runs.length,
    failures,
    start: m("start"),
    scatterPush: m("scatterPush"),
    apply: m("apply"),
    stop: m("stop"),
    wall: m("wall"),
    pss: m("pss"),
  };
};

const denoSystems = systems.filter((s) => s !== "ipp");
const targets: string[] = [];
if (withIpp) {
  for (const system of denoSystems) {
    for (const k of broadcastKs.filter((k) => k >= 32)) {
      const ipp = broadcastSummary(k, "ipp"), deno = broadcastSummary(k, system);
      if (!ipp || !deno) continue;
      const ratio = ipp.median / deno.median;
      targets.push(
        `- Empty broadcast at ${k} engines, ${LABELS[system]}: ${formatRatio(ratio)} ` +
          (ratio >= 20
            ? "✅ (target ≥ 20×)"
            : `❌ (target ≥ 20×: ${(20 / ratio).toFixed(1)}× short)`),
      );
    }
    const n = Math.max(...md5Counts);
    const ipp = md5Cell(n, "ipp"), deno = md5Cell(n, system);
    if (ipp?.wall && deno?.wall) {
      const ratio = ipp.wall / deno.wall;
      targets.push(
        `- Whole md5 script at ${n} engines, ${LABELS[system]}: ${formatRatio(ratio)} ` +
          (n < 100
            ? "(the target is at 100 engines)"
            : ratio >= 20
            ? "✅ (target ≥ 20×)"
            : `❌ (target ≥ 20×: ${(20 / ratio).toFixed(1)}× short)`),
      );
    }
  }
}

const denoVersion = `${Deno.version.deno} (V8 ${Deno.version.v8})`;
const date = `${startedAt.toISOString().replace("T", " ").slice(0, 16)} UTC`;
const minutes = ((finishedAt.getTime() - startedAt.getTime()) / 60_000).toFixed(1);
const loadLines = loads.map(({ when, load }) => `${when}: ${formatLoad(load)}`).join("; ");
const runSection = [
  `## Deno vs IPython Parallel (\`${command}\`)`,
  "",
  `- Command: \`${command}\`${quick ? " (quick: 8 and 32 engines only)" : ""}; ` +
  `${date}, ${minutes} min.`,
  `- Machine: ${nproc} cores (${cpuModel ?? "unknown CPU"}), ${formatBytes(memTotal)} RAM, ` +
  `shared with other people's jobs. Load average (1/5/15 min) — ${loadLines}.`,
  `- Deno ${denoVersion}; Redis ${redisVersion ?? "–"} (a private \`redis-server\`, no ` +
  `persistence); ${
    withIpp ? `IPython Parallel ${ippVersion} on ${pythonVersion} (\`${PYTHON}\`)` : "no IPython"
  }.`,
  `- Raw samples: \`bench/results/${
    startedAt.toISOString().slice(0, 19).replace(/:/g, "")
  }.json\`.`,
  ...notes.map((n) => `- ${n}`),
  "",
  ...(targets.length ? ["Targets (IPython time ÷ Deno time, medians):", "", ...targets] : []),
].join("\n");

const md5Section = [
  "### The md5 seed notebook, whole script",
  "",
  "`examples/md5.ts --engines N` (Deno) and `bench/ipp_md5.py --engines N` (the notebook as a " +
  "script) run as subprocesses, interleaved, N × 5 files of 1 KiB. Medians of the runs. " +
  "*Whole script* is the process's wall time, spawn to exit (interpreter start-up, imports, " +
  "files, local map, start, scatter/push, apply, stop, clean-up). *Scatter/push*: scatter `rank`, " +
  "push `size` (Deno also pushes the task's helper functions; IPython includes " +
  "`use_cloudpickle()`). Memory: Deno, the largest PSS sampled every 50 ms of its one process " +
  "(engines are Workers; Redis's own memory not counted); IPython, PSS summed over the client, " +
  "controller, engines and nannies just after start. IPython's engine registration timeout is " +
  "raised to 300 s (`ipp.Cluster(engine_timeout=300)`; the default 60 s fails at 100 engines " +
  "here). Speedup = IPython ÷ Deno.",
  "",
  md5Table(md5Counts, systems, md5Cell),
  ...[...md5Failures].map(([key, errors]) =>
    `\nFailed: ${key}: ${errors.map((e) => "`" + e.split("\n")[0].slice(0, 200) + "`").join(", ")}`
  ),
].join("\n");

const clusterLine = systems.map((s) => {
  const info = clusterInfo[s];
  if (!info) return undefined;
  return `${LABELS[s]}: start ${formatSeconds(info.start as number)}` +
    (info.cluster_pss ? `, PSS ${formatBytes(info.cluster_pss as number)}` : "") +
    (info.stop !== undefined ? `, stop ${formatSeconds(info.stop as number)}` : "");
}).filter(Boolean).join("; ");
const svgName = new URL("broadcast.svg", new URL(".", `file://${outPath}`)).pathname;
const broadcastSection = [
  "### Empty broadcast `apply`",
  "",
  `One cluster of ${clusterSize} engines per system, all three up at once (${clusterLine}). ` +
  "`view.apply(() => null)` / `view.apply_sync(lambda: None)` on a BroadcastView of the " +
  `first k engines, timed one call at a time, in ${rounds} interleaved rounds (system order ` +
  `rotated each round), after the clusters went idle (${settleSeconds.toFixed(0)} s) and an ` +
  "untimed warm-up round, with one untimed call before each batch: " +
  `${ippPerRound * rounds} samples per point for IPython, ${denoPerRound * rounds} for Deno. ` +
  "Speedup = IPython median ÷ Deno median.",
  "",
  broadcastTable(broadcastKs, systems, broadcastSummary),
  "",
  "CPU time per call: user + system time of all the system's processes (client, hub, engines, " +
  "nannies / worker threads) during its batches, divided by the calls, and the cores that " +
  "makes over the batches' wall time (redis-server's own CPU is not counted). Background CPU of " +
  "each idle cluster while the others were measured: " +
  systems.map((system) => {
    const c = idleCpu[system];
    return `${LABELS[system]} ${c ? (c.cpu / c.seconds).toFixed(2) : "–"} cores`;
  }).join(", ") + ".",
  "",
  `| engines (k) |${systems.map((s) => ` ${LABELS[s]}: CPU ms per call (cores) |`).join("")}`,
  `|---:|${systems.map(() => "---:|").join("")}`,
  ...broadcastKs.map((k) =>
    `| ${k} |` + systems.map((system) => {
      const c = cpuPerCall[keyOf(k, system)];
      return c
        ? ` ${formatMs((1000 * c.cpu) / c.calls)} (${(c.cpu / c.seconds).toFixed(2)}) |`
        : " – |";
    }).join("")
  ),
  "",
  `![Empty broadcast latency against engine count](broadcast.svg)`,
].join("\n");

const raw = {
  command,
  startedAt,
  finishedAt,
  machine: { nproc, cpuModel, memTotal, loads },
  versions: {
    deno: denoVersion,
    redis: redisVersion,
    ipyparallel: ippVersion,
    python: pythonVersion,
  },
  notes,
  broadcast: {
    clusterSize,
    ks: broadcastKs,
    rounds,
    clusterInfo,
    settleSeconds,
    cpuPerCall,
    idleCpu,
    samples: Object.fromEntries(broadcastSamples),
  },
  md5: { counts: md5Counts, runs: md5Runs, failures: Object.fromEntries(md5Failures) },
};
const rawDir = new URL("results/", HERE);
await Deno.mkdir(rawDir, { recursive: true });
const rawPath = new URL(`${startedAt.toISOString().slice(0, 19).replace(/:/g, "")}.json`, rawDir)
  .pathname;
await Deno.writeTextFile(rawPath, JSON.stringify(raw, null, 2) + "\n");

let doc = "";
try {
  doc = await Deno.readTextFile(outPath);
} catch { /* a new file */ }
if (!doc.trim()) doc = "# Benchmarks\n";
doc = replaceSection(doc, "bench-run", runSection);
doc = replaceSection(doc, "md5", md5Section);
doc = replaceSection(doc, "broadcast", broadcastSection);
await Deno.writeTextFile(outPath, doc);
await Deno.writeTextFile(
  svgName,
  broadcastSvg(
    broadcastKs,
    systems,
    broadcastSummary,
    `${date}, ${nproc} cores, load ${formatLoad(loads[0].load)} → ${
      formatLoad(loads.at(-1)!.load)
    }`,
  ),
);
// `deno fmt --check` covers markdown and JSON: leave them formatted.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", outPath, rawPath, svgName] })
  .output();
console.log([runSection, md5Section, broadcastSection].join("\n\n"));
log(`wrote ${outPath} and ${svgName}`);

// 3. Task farming (`bench/farm.ts`), after the others: it writes its own section of `outPath`.
if (!flags["skip-farm"]) {
  log("task farming: bench/farm.ts");
  const farmArgs = ["run", "-A", new URL("farm.ts", HERE).pathname, "--out", outPath];
  if (flags["skip-redis"]) farmArgs.push("--skip-redis");
  if (flags["farm-peers"]) farmArgs.push("--peers", flags["farm-peers"]);
  const farm = await new Deno.Command(Deno.execPath(), { args: farmArgs, stdout: "inherit" })
    .output();
  if (!farm.success) log("bench/farm.ts failed");
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", outPath] }).output();
}
