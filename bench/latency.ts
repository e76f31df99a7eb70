/**
 * Empty `apply` on a BroadcastView and on a DirectView of every engine, on clusters of exactly
 * k engines (issue 19): for each size, IPython Parallel (`bench/ipp_broadcast.py --serve`), Deno
 * on the embedded transport and Deno on a private `redis-server` (`bench/broadcast.ts --serve`)
 * are started with k engines each (default options), left to settle, then measured in rounds
 * (the systems' order rotating), one call at a time after warm-up. On Redis, the messages each
 * call writes (`XADD`s, from `INFO commandstats`) are counted too: the crossings per call.
 *
 * ```sh
 * deno run -A bench/latency.ts [--sizes 2,8,32,100] [--rounds 5] [--skip-ipp] \
 *   [--out bench/results/latency.md]
 * ```
 *
 * Writes the table (medians, ms) to `--out` and the samples next to it as JSON.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { startRedisServer } from "../tests/_redis_server.ts";
import {
  formatLoad,
  type LineProcess,
  loadAverage,
  median,
  memAvailable,
  startBroadcastServer,
} from "./_util.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "2,8,32,100" },
    rounds: { type: "string", default: "5" },
    "skip-ipp": { type: "boolean", default: false },
    out: { type: "string", default: new URL("results/latency.md", import.meta.url).pathname },
  },
});

const PYTHON = "/usr/bin/python3";
const sizes = flags.sizes.split(",").map(Number);
const rounds = Number(flags.rounds);
type System = "ipp" | "memory" | "redis";
type ViewKind = "broadcast" | "direct";
const REPS: Record<System, number> = { ipp: 10, memory: 40, redis: 40 };

function log(line: string): void {
  console.error(`[latency] ${line}`);
}

async function hasIpp(): Promise<boolean> {
  if (flags["skip-ipp"]) return false;
  const probe = new Deno.Command(PYTHON, { args: ["-c", "import ipyparallel"], stderr: "null" });
  return await probe.output().then((o) => o.success, () => false);
}

/** CPU seconds used so far by `pid` and its descendants (from `/proc`). */
function treeCpu(pid: number): number {
  let total = 0;
  const children = (p: number): number[] => {
    try {
      return Deno.readTextFileSync(`/proc/${p}/task/${p}/children`).trim().split(/\s+/)
        .filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    try {
      const fields = Deno.readTextFileSync(`/proc/${p}/stat`).split(") ")[1].split(" ");
      total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch { /* exited */ }
    stack.push(...children(p));
  }
  return total;
}

/** Waits (at most 2 min) until the processes use under 0.2 CPU seconds per second. */
async function settle(procs: LineProcess[]): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const c0 = procs.reduce((sum, p) => sum + treeCpu(p.child.pid), 0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const c1 = procs.reduce((sum, p) => sum + treeCpu(p.child.pid), 0);
    if (c1 - c0 < 0.2) return;
  }
}

interface Cell {
  samples: number[];
  xadds: number[];
}

const results: Record<string, Cell> = {};
const notes: string[] = [];
const ipp = await hasIpp();
if (!ipp) {
  notes.push("IPython Parallel not measured (`--skip-ipp`, or `import ipyparallel` failed).");
}
await using redis = await startRedisServer();

for (const k of sizes) {
  const procs = new Map<System, LineProcess>();
  try {
    const systems: System[] = ["memory", "redis"];
    if (ipp && memAvailable() > k * 125 * 2 ** 20 + 1.5 * 2 ** 30) systems.unshift("ipp");
    else if (ipp) notes.push(`IPython Parallel at ${k} engines skipped: not enough memory.`);
    for (const system of systems) {
      log(`starting ${k} engines: ${system}…`);
      const proc = startBroadcastServer(
        system,
        k,
        system === "ipp" ? "ipp" : system === "redis" ? redis.url : "memory:",
      );
      const ready = await proc.expect<{ engines: number }>("READY");
      if (ready.engines !== k) throw new Error(`${system}: ${ready.engines} engines, not ${k}`);
      procs.set(system, proc);
    }
    await settle([...procs.values()]);
    for (const [system, proc] of procs) {
      for (const view of ["broadcast", "direct"] as ViewKind[]) {
        await proc.send(`measure ${k} 0 ${system === "ipp" ? 3 : 20} ${view}`);
        await proc.expect("SAMPLES");
      }
    }
    for (let round = 0; round < rounds; round++) {
      const order = [...procs.keys()];
      for (let i = 0; i < order.length; i++) {
        const system = order[(i + round) % order.length];
        const proc = procs.get(system)!;
        const views: ViewKind[] = round % 2 ? ["direct", "broadcast"] : ["broadcast", "direct"];
        for (const view of views) {
          await proc.send(`measure ${k} ${REPS[system]} 1 ${view}`);
          const got = await proc.expect<{ samples: number[]; xadds?: number }>("SAMPLES");
          const cell = results[`${system}/${view}@${k}`] ??= { samples: [], xadds: [] };
          cell.samples.push(...got.samples);
          if (got.xadds !== undefined) cell.xadds.push(got.xadds);
        }
      }
    }
    log(
      `k=${k}: ` + [...procs.keys()].map((s) =>
        `${s} ${fmt(`${s}/broadcast@${k}`)} / ${fmt(`${s}/direct@${k}`)} ms`
      ).join(", ") + ` (load ${formatLoad(loadAverage())})`,
    );
  } finally {
    for (const proc of procs.values()) {
      await proc.send("quit").catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([proc.close(), new Promise((r) => (timer = setTimeout(r, 60_000)))]);
      clearTimeout(timer);
      proc.kill();
    }
  }
}

function cellMedian(key: string): number | undefined {
  const cell = results[key];
  return cell && cell.samples.length > 0 ? median(cell.samples) : undefined;
}

function fmt(key: string): string {
  const m = cellMedian(key);
  return m === undefined ? "–" : m < 10 ? m.toFixed(2) : m.toFixed(1);
}

function ratio(a: string, b: string): string {
  const x = cellMedian(a), y = cellMedian(b);
  return x === undefined || y === undefined ? "–" : `${(x / y).toFixed(1)}×`;
}

function crossings(key: string): string {
  const cell = results[key];
  return cell && cell.xadds.length > 0 ? median(cell.xadds).toFixed(1) : "–";
}

const command = `deno run -A bench/latency.ts --sizes ${flags.sizes} --rounds ${rounds}` +
  (flags["skip-ipp"] ? " --skip-ipp" : "");
const lines = [
  "# Broadcast and direct apply latency, clusters of exactly k engines",
  "",
  `\`${command}\` — ${new Date().toISOString().slice(0, 16)} UTC, ` +
  `${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}, load after the run ` +
  `${formatLoad(loadAverage())}.`,
  "",
  "Medians of one empty `apply` at a time (ms), each system a cluster of exactly k engines with " +
  "default options (Deno: one host per CPU), measured in the same run in rotating order. " +
  "_Messages per call_: what one call writes to Redis (`XADD`s: requests and answers), the " +
  "crossings of the transport. _×_: IPython's BroadcastView over ours.",
  "",
  "| engines | IPython BroadcastView / DirectView | embedded BroadcastView / DirectView | Redis BroadcastView / DirectView | Redis messages per call (BV / DV) | × IPython BV: embedded BV / Redis BV |",
  "|--:|--:|--:|--:|--:|--:|",
  ...sizes.map((k) =>
    `| ${k} | ${fmt(`ipp/broadcast@${k}`)} / ${fmt(`ipp/direct@${k}`)} | ` +
    `${fmt(`memory/broadcast@${k}`)} / ${fmt(`memory/direct@${k}`)} | ` +
    `${fmt(`redis/broadcast@${k}`)} / ${fmt(`redis/direct@${k}`)} | ` +
    `${crossings(`redis/broadcast@${k}`)} / ${crossings(`redis/direct@${k}`)} | ` +
    `${ratio(`ipp/broadcast@${k}`, `memory/broadcast@${k}`)} / ` +
    `${ratio(`ipp/broadcast@${k}`, `redis/broadcast@${k}`)} |`
  ),
  "",
  ...notes.map((n) => `- ${n}`),
  "",
];
await Deno.writeTextFile(flags.out, lines.join("\n"));
await Deno.writeTextFile(flags.out.replace(/\.md$/, ".json"), JSON.stringify(results) + "\n");
console.log(lines.join("\n"));
