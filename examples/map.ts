/**
 * Task farming with a LoadBalancedView: a Monte Carlo estimate of π over tasks of very uneven
 * cost (each a random number of iterations, from a few to `--max-iterations`), checked against a
 * local map. Each engine takes its next task only when it is free, so the long tasks do not hold
 * up the short ones; the script prints the throughput and the makespan against the ideal (the
 * total work, as the local map took it, ÷ the engines).
 *
 * ```sh
 * deno run -A examples/map.ts [--engines 4] [--tasks 200] [--max-iterations 2000000] [--redis redis://…]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster } from "../mod.ts";

/**
 * One task: how many of `iterations` seeded random points of the unit square fall inside the
 * quarter circle. Self-contained (it travels as its source): the same seed gives the same count
 * on any engine and here.
 */
function monteCarlo(seed: number, iterations: number): number {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let inside = 0;
  for (let i = 0; i < iterations; i++) {
    const x = next(), y = next();
    if (x * x + y * y <= 1) inside++;
  }
  return inside;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "4" },
      tasks: { type: "string", default: "200" },
      "max-iterations": { type: "string", default: "2000000" },
      redis: { type: "string" },
    },
  });
  const nEngines = Number(values.engines);
  const nTasks = Number(values.tasks);
  const maxIterations = Number(values["max-iterations"]);
  const transport = values.redis ?? Deno.env.get("REDIS_URL") ?? "memory:";
  const seconds = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

  // Very uneven tasks: iteration counts spread over three orders of magnitude.
  const seeds = Array.from({ length: nTasks }, (_, i) => i + 1);
  const iterations = seeds.map(() =>
    Math.max(1, Math.round(maxIterations * Math.pow(10, -3 * Math.random())))
  );
  const total = iterations.reduce((a, b) => a + b, 0);

  let t = performance.now();
  const local = seeds.map((seed, i) => monteCarlo(seed, iterations[i]));
  const work = performance.now() - t;
  console.log(`local map: ${nTasks} tasks, ${total} iterations in ${seconds(work)}`);

  await using cluster = new Cluster({ n: nEngines, transport, progress: false });
  const rc = await cluster.startAndConnect();
  const lview = rc.loadBalancedView();
  t = performance.now();
  const ar = lview.map(monteCarlo, seeds, iterations);
  const parallel = await ar;
  const makespan = performance.now() - t;

  if (JSON.stringify(parallel) !== JSON.stringify(local)) {
    throw new Error("parallel result differs from the local result");
  }
  const inside = parallel.reduce((a, b) => a + b, 0);
  console.log(`parallel result equals local result (${nTasks} counts); π ≈ ${4 * inside / total}`);
  const perEngine = new Map<number, number>();
  for (const e of ar.engineIds) perEngine.set(e, (perEngine.get(e) ?? 0) + 1);
  const ideal = work / nEngines;
  const cores = navigator.hardwareConcurrency;
  console.log(
    `engines: ${nEngines} (${transport.replace(/\/\/[^@]*@/, "//")}), ${cores} cores\n` +
      `tasks per engine: ${[...perEngine].sort((a, b) => a[0] - b[0]).map(([, n]) => n)}\n` +
      `throughput: ${(nTasks / (makespan / 1000)).toFixed(0)} tasks/s\n` +
      `makespan: ${seconds(makespan)}  ideal (total work ÷ engines): ${seconds(ideal)}  ` +
      `ratio: ${(makespan / ideal).toFixed(2)}` +
      (nEngines > cores ? ` (more engines than cores: the ideal is not reachable here)` : ""),
  );
}
