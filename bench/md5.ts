/**
 * The md5 seed notebook, timed end to end: `examples/md5.ts --engines N` run as a subprocess (on
 * the embedded transport or Redis), and IPython Parallel's version (`bench/ipp_md5.py`) run the
 * same way. "Whole script" is the subprocess's wall time from spawn to exit, interpreter
 * start-up and imports included, for both.
 *
 * ```sh
 * deno run -A bench/md5.ts --engines 8 [--transport redis://…] [--ipp]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { envWithout, timedRun } from "./_util.ts";

/** Phase times (seconds) and memory of one run of the md5 script. */
export interface Md5Run {
  system: "deno" | "ipp";
  transport: string;
  engines: number;
  /** Start and connect the cluster. */
  start: number;
  /** Scatter rank and push size (+ functions / cloudpickle). */
  scatterPush: number;
  /** The SPMD apply and its results. */
  apply: number;
  /** Stop the cluster. */
  stop: number;
  /** The script's own total (from its first line). */
  whole: number;
  /** Wall time of the process, spawn to exit. */
  wall: number;
  /** Deno: the largest PSS sampled and the peak RSS of the process (engines are threads). */
  /** IPython: PSS and RSS summed over the client, controller, engines and nannies. */
  pss?: number;
  rss?: number;
}

const MD5_SCRIPT = new URL("../examples/md5.ts", import.meta.url);
const IPP_SCRIPT = new URL("./ipp_md5.py", import.meta.url);

/** Runs `examples/md5.ts --engines n` on `transport` (`memory:` or a Redis URL). */
export async function runDenoMd5(engines: number, transport: string): Promise<Md5Run> {
  const args = ["run", "-A", MD5_SCRIPT.pathname, "--engines", String(engines)];
  if (transport !== "memory:") args.push("--redis", transport);
  const out = await timedRun(Deno.execPath(), args, {
    env: { ...envWithout("REDIS_URL"), NO_COLOR: "1" },
    sample: true,
  });
  if (out.code !== 0) {
    throw new Error(
      `examples/md5.ts --engines ${engines} failed (code ${out.code}):\n` +
        out.stdout.slice(-2000) + out.stderr.slice(-4000),
    );
  }
  const phases =
    /start: ([\d.]+) s\s+scatter\/push: ([\d.]+) s\s+apply: ([\d.]+) s\s+stop: ([\d.]+) s/
      .exec(out.stdout);
  const whole = /whole script: ([\d.]+) s/.exec(out.stdout);
  if (!phases || !whole || !out.stdout.includes("parallel result equals local result")) {
    throw new Error(`cannot parse the output of examples/md5.ts:\n${out.stdout}\n${out.stderr}`);
  }
  const [start, scatterPush, apply, stop] = phases.slice(1).map(Number);
  return {
    system: "deno",
    transport: transport === "memory:" ? "memory" : "redis",
    engines,
    start,
    scatterPush,
    apply,
    stop,
    whole: Number(whole[1]),
    wall: out.wallSeconds,
    pss: out.memory?.maxPss,
    rss: out.memory?.peakRss,
  };
}

/** Runs `bench/ipp_md5.py --engines n` with `/usr/bin/python3`. */
export async function runIppMd5(engines: number, python = "/usr/bin/python3"): Promise<Md5Run> {
  const out = await timedRun(python, [IPP_SCRIPT.pathname, "--engines", String(engines)]);
  const line = out.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (out.code !== 0 || !line) {
    throw new Error(
      `ipp_md5.py --engines ${engines} failed (code ${out.code}):\n` +
        out.stdout.slice(-2000) + out.stderr.slice(-4000),
    );
  }
  const result = JSON.parse(line.slice("RESULT ".length));
  const t = result.times;
  return {
    system: "ipp",
    transport: "zmq",
    engines,
    start: t.start,
    scatterPush: t.scatter_push,
    apply: t.apply,
    stop: t.stop,
    whole: t.whole,
    wall: out.wallSeconds,
    pss: result.cluster_pss,
    rss: result.cluster_rss,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "8" },
      transport: { type: "string", default: Deno.env.get("REDIS_URL") ?? "memory:" },
      ipp: { type: "boolean", default: false },
    },
  });
  const n = Number(values.engines);
  const run = values.ipp ? await runIppMd5(n) : await runDenoMd5(n, values.transport);
  console.log("RESULT " + JSON.stringify(run));
}
