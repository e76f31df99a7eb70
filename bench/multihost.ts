/**
 * Many machines on one (the network-namespace bed of `tests/_netns.ts`): Redis, the client and 2
 * or 3 engine hosts each in a namespace of its own, 4 engines per host started with `engine.ts`,
 * a delay of 0, 1 or 10 ms each way between every machine and Redis (a delaying TCP proxy in each
 * machine's namespace). Times an empty broadcast over every engine (`BroadcastView.apply`), a
 * direct apply to one engine of the last host (`client.view(id).apply`), and an `allreduce` over
 * every engine (`wireTree`, then `execute` of one `com.allreduce` and a `pull`), measured in the
 * client's process; and the Redis commands each call costs (INFO commandstats before and after,
 * less what the cluster sends while idle over as long: heartbeats, read loops).
 *
 * ```sh
 * deno run -A bench/multihost.ts [--delays 0,1,10] [--hosts 2,3] [--iterations 20] \
 *   [--out bench/results/multihost.md]
 * ```
 *
 * Needs root and iproute2 (it says so and exits otherwise).
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { makeBed, netnsUnavailable } from "../tests/_netns.ts";
import { connectAdmin } from "../tests/_redis_server.ts";
import { formatLoad, loadAverage, summarize } from "./_util.ts";

const { values } = parseArgs({
  options: {
    delays: { type: "string", default: "0,1,10" },
    hosts: { type: "string", default: "2,3" },
    iterations: { type: "string", default: "20" },
    out: { type: "string", default: "bench/results/multihost.md" },
  },
});
const delays = values.delays.split(",").map(Number);
const hostCounts = values.hosts.split(",").map(Number);
const iterations = Number(values.iterations);
const PER_HOST = 4;
const KINDS = ["broadcast", "direct", "allreduce"] as const;
type Kind = typeof KINDS[number];

const why = await netnsUnavailable();
if (why) {
  console.error(`bench/multihost.ts: cannot run: ${why}`);
  Deno.exit(1);
}

/** Calls of each command so far, from INFO commandstats. */
async function commandStats(url: string): Promise<Map<string, number>> {
  await using admin = await connectAdmin(url);
  const text = String(await admin.send(["INFO", "commandstats"]));
  const stats = new Map<string, number>();
  for (const match of text.matchAll(/cmdstat_([a-z|_-]+):calls=(\d+)/g)) {
    stats.set(match[1], Number(match[2]));
  }
  return stats;
}

function delta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, calls] of after) out.set(name, calls - (before.get(name) ?? 0));
  return out;
}

const sum = (m: Map<string, number>, only?: string) =>
  [...m].filter(([name]) => !only || name === only).reduce((a, [, n]) => a + n, 0);

interface Cell {
  hosts: number;
  engines: number;
  delayMs: number;
  kind: Kind;
  times: number[];
  commandsPerCall: number;
  xaddsPerCall: number;
}

const cells: Cell[] = [];
const loadBefore = loadAverage();
const started = new Date();
for (const hosts of hostCounts) {
  for (const delayMs of delays) {
    await using bed = await makeBed({ hosts, delayMs });
    const engines = hosts * PER_HOST;
    for (let h = 0; h < hosts; h++) {
      const ids = Array.from({ length: PER_HOST }, (_, i) => h * PER_HOST + i);
      bed.startHost(h, ids, engines);
    }
    const client = bed.driver();
    await client.send(bed.connect(engines));
    for (const kind of KINDS) {
      await client.send({ op: "time", kind, iterations: 3, engineId: engines - 1 });
    }
    // What the cluster sends while idle, per ms.
    const idleMs = 3000;
    const idle0 = await commandStats(bed.adminUrl);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const idle = delta(await commandStats(bed.adminUrl), idle0);
    for (const kind of KINDS) {
      const before = await commandStats(bed.adminUrl);
      const begun = performance.now();
      const times = await client.send({
        op: "time",
        kind,
        iterations,
        engineId: engines - 1,
      }) as number[];
      const spent = performance.now() - begun;
      const used = delta(await commandStats(bed.adminUrl), before);
      const perCall = (only?: string) =>
        (sum(used, only) - sum(idle, only) * spent / idleMs) / iterations;
      cells.push({
        hosts,
        engines,
        delayMs,
        kind,
        times,
        commandsPerCall: perCall(),
        xaddsPerCall: perCall("xadd"),
      });
      const s = summarize(times);
      console.error(
        `${hosts} hosts, ${delayMs} ms: ${kind} median ${s.median.toFixed(1)} ms, ` +
          `${perCall().toFixed(1)} commands/call (${perCall("xadd").toFixed(1)} XADD)`,
      );
    }
    await client.send({ op: "close" });
  }
}

const ms = (x: number) => x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(1)} ms`;
const rows = [];
for (const hosts of hostCounts) {
  for (const delayMs of delays) {
    const of = (kind: Kind) =>
      cells.find((c) => c.hosts === hosts && c.delayMs === delayMs && c.kind === kind)!;
    const cols = KINDS.map((kind) => {
      const c = of(kind);
      const s = summarize(c.times);
      return `${ms(s.median)} (${ms(s.p25)}–${ms(s.p75)}) | ${c.commandsPerCall.toFixed(1)} / ${
        c.xaddsPerCall.toFixed(1)
      }`;
    });
    rows.push(`| ${hosts} | ${of("broadcast").engines} | ${delayMs} ms | ${cols.join(" | ")} |`);
  }
}

// The delay's share of a call, in one-way trips to or from Redis on its critical path: the
// slope of the median from the smallest delay measured to the largest.
const trips = [];
const [low, high] = [Math.min(...delays), Math.max(...delays)];
if (high > low) {
  for (const hosts of hostCounts) {
    const median = (delayMs: number, kind: Kind) =>
      summarize(
        cells.find((c) => c.hosts === hosts && c.delayMs === delayMs && c.kind === kind)!.times,
      ).median;
    const cols = KINDS.map((kind) =>
      ((median(high, kind) - median(low, kind)) / (high - low)).toFixed(1)
    );
    trips.push(`| ${hosts} | ${hosts * PER_HOST} | ${cols.join(" | ")} |`);
  }
}

const report = `# Many machines: broadcast, direct apply and allreduce across hosts

Measured ${started.toISOString().slice(0, 16).replace("T", " ")} UTC by
\`deno run -A bench/multihost.ts --delays ${values.delays} --hosts ${values.hosts} --iterations ${iterations}\`:
Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs shared by every machine, Redis ${
  (await redisVersion()) ?? "?"
}.
Each machine is a network namespace (\`tests/_netns.ts\`): Redis, the client (\`Cluster.connect\`)
and 2 or 3 engine hosts, each an \`engine.ts\` process with ${PER_HOST} engines (\`--size\` the
cluster's). The delay is added each way between every machine and Redis by a delaying TCP proxy in
the machine's namespace (this kernel has no \`netem\`): a round trip to Redis costs twice the delay
(and the proxy's timers, which fire up to about a millisecond late, add most at 1 ms; with no
delay there is no proxy).
broadcast: an empty \`BroadcastView.apply\` over every engine; direct: \`client.view(id).apply\` on
the last engine (on the last host); allreduce: one \`com.allreduce\` on every engine of a
\`wireTree\` (an \`execute\` then a \`pull\`, two broadcasts). Times are the median (quartiles)
of ${iterations} calls after 3 warm-ups, measured in the client's process. Commands: Redis
commands per call (INFO commandstats before and after, less the idle rate of the same cluster over
as long, heartbeats and polls included), then the XADDs among them (each a crossing of a message
to Redis). Load average (1/5/15 min) ${formatLoad(loadBefore)} before, ${
  formatLoad(loadAverage())
} after.

| hosts | engines | delay | broadcast | commands / XADD | direct | commands / XADD | allreduce | commands / XADD |
| ----: | ------: | ----: | --------: | --------------: | -----: | --------------: | --------: | --------------: |
${rows.join("\n")}
${
  trips.length === 0 ? "" : `
One-way trips between a machine and Redis on each call's critical path: (median at ${high} ms −
median at ${low} ms) / ${high - low} ms. A direct apply is 4 (the call to Redis, to the engine, its
answer to Redis, to the client); a broadcast pays a few more for its tree of nodes, not one per
engine; an allreduce is two broadcasts and the tree's exchange.

| hosts | engines | broadcast | direct | allreduce |
| ----: | ------: | --------: | -----: | --------: |
${trips.join("\n")}
`
}`;

async function redisVersion(): Promise<string | undefined> {
  const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "piped" })
    .output().catch(() => undefined);
  return out && /v=(\S+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
}

await Deno.writeTextFile(values.out, report);
console.error(`wrote ${values.out}`);
