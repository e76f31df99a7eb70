/**
 * How long a cluster takes to notice a dead engine, for each way of dying and each launcher (a
 * host killed by `Cluster.kill`, a process SIGKILLed or SIGSTOPped), and that busy engines are
 * never taken for dead: every engine of a cluster of 8 and of 32 computes without yielding for 1,
 * 5, 30 and 60 s (`--busy`), and the false deaths are counted.
 *
 * Deaths: one cluster of 2 engines (one host each, `restart: true`) per scenario; engine 1 is
 * killed `--kills` times, each time after its replacement is running. Detection time: from the
 * kill (sent by the bench) to the cluster's `"enginedied"` event. Restart time: from the death to
 * `"enginerestarted"`. False alarms: `"enginedied"` events for engine 0, which is never killed, or
 * for engine 1 before its death.
 *
 * Busy: one cluster of k engines, one host each (k threads or processes spinning on this
 * machine's cores at once, the harshest case for the hosts' heartbeat threads), `restart: true`,
 * per row; one call runs a task that spins on the CPU for the given time on every engine; false
 * deaths are its `"enginedied"` events.
 * Redis is a `redis-server` of its own. Prints a markdown table and writes it to
 * `bench/results/liveness.md`.
 *
 * ```sh
 * deno run -A bench/liveness.ts [--kills 10] [--timeout 2500] [--busy 1,5,30,60] [--sizes 8,32]
 * ```
 *
 * `--timeout` defaults to the default `heartbeatTimeoutMs`.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, type ClusterOptions } from "../actors/client/cluster.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../actors/_liveness.ts";
import { startRedisServer } from "../tests/_redis_server.ts";
import { formatLoad, loadAverage, summarize, type Summary } from "./_util.ts";

type How = "killed" | "sigkill" | "sigstop";

interface Scenario {
  launcher: "worker" | "process";
  transport: "memory" | "redis";
  how: How;
}

interface Result {
  scenario: Scenario;
  detection: Summary;
  restart: Summary;
  reason: string;
  /** `"enginedied"` events for an engine that was not dying. */
  falseAlarms: number;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    kills: { type: "string", default: "10" },
    timeout: { type: "string", default: String(DEFAULT_HEARTBEAT_TIMEOUT_MS) },
    busy: { type: "string", default: "1,5,30,60" },
    sizes: { type: "string", default: "8,32" },
  },
});
const KILLS = Number(flags.kills);
const TIMEOUT_MS = Number(flags.timeout);
const BUSY_S = flags.busy === "" ? [] : flags.busy.split(",").map(Number);
const SIZES = flags.sizes.split(",").map(Number);

const SCENARIOS: Scenario[] = [
  { launcher: "worker", transport: "memory", how: "killed" },
  { launcher: "worker", transport: "redis", how: "killed" },
  { launcher: "process", transport: "redis", how: "killed" },
  { launcher: "process", transport: "redis", how: "sigkill" },
  { launcher: "process", transport: "redis", how: "sigstop" },
];

const NOTICED: Record<How, string> = {
  killed: "`Cluster.kill` (terminate / SIGKILL)",
  sigkill: "process exit",
  sigstop: "no heartbeat for the timeout",
};

/** The launcher and transport pairs the busy rows run on. */
const BUSY_ON: Omit<Scenario, "how">[] = [
  { launcher: "worker", transport: "memory" },
  { launcher: "worker", transport: "redis" },
  { launcher: "process", transport: "redis" },
];

interface BusyResult {
  on: Omit<Scenario, "how">;
  engines: number;
  hosts: number;
  seconds: number;
  /** How long the call took, ms. */
  took: number;
  /** Engines whose task returned its own id. */
  completed: number;
  falseDeaths: number;
}

async function busy(
  on: Omit<Scenario, "how">,
  engines: number,
  seconds: number,
  redisUrl: string,
): Promise<BusyResult> {
  await using cluster = new Cluster({
    n: engines,
    hosts: engines,
    launcher: on.launcher,
    transport: on.transport === "memory" ? "memory:" : redisUrl,
    restart: true,
    heartbeatTimeoutMs: TIMEOUT_MS,
    progress: false,
    engineTimeout: 120_000,
  });
  const client = await cluster.startAndConnect();
  await client.broadcastView().apply(() => 0).get({ timeout: 120_000 });
  let falseDeaths = 0;
  cluster.addEventListener("enginedied", (e) => {
    falseDeaths++;
    const { engineId, reason } = (e as CustomEvent<{ engineId: number; reason: string }>).detail;
    console.error(`false death: engine ${engineId}: ${reason}`);
  });
  const hosts = new Set(client.ids.map((id) => client.hostOf(id))).size;
  const begun = Date.now();
  const values = await client.view().apply((ms: number) => {
    const end = Date.now() + ms;
    let spins = 0;
    while (Date.now() < end) spins++;
    // @ts-ignore: `id` is a name of the engine's namespace
    return spins > 0 ? id : -1;
  }, seconds * 1000).get({ timeout: seconds * 1000 * engines + 120_000, returnExceptions: true });
  const took = Date.now() - begun;
  const completed = values.filter((v, i) => v === client.ids[i]).length;
  return { on, engines, hosts, seconds, took, completed, falseDeaths };
}

async function run(scenario: Scenario, redisUrl: string): Promise<Result> {
  const options: ClusterOptions = {
    n: 2,
    hosts: 2,
    launcher: scenario.launcher,
    transport: scenario.transport === "memory" ? "memory:" : redisUrl,
    restart: true,
    heartbeatTimeoutMs: TIMEOUT_MS,
    progress: false,
    engineTimeout: 60_000,
  };
  await using cluster = new Cluster(options);
  const client = await cluster.startAndConnect();
  let died: { at: number; reason: string } | undefined;
  let restarted: number | undefined;
  let dying = false;
  let falseAlarms = 0;
  cluster.addEventListener("enginedied", (e) => {
    const { engineId, reason } = (e as CustomEvent<{ engineId: number; reason: string }>).detail;
    if (engineId !== 1 || !dying) {
      falseAlarms++;
      console.error(`false alarm: engine ${engineId}: ${reason}`);
      return;
    }
    died = { at: Date.now(), reason };
  });
  cluster.addEventListener("enginerestarted", () => (restarted = Date.now()));
  let failed: Error | undefined;
  cluster.addEventListener("enginerestartfailed", (e) => {
    failed = (e as CustomEvent<{ error: Error }>).detail.error;
  });
  const detections: number[] = [];
  const restarts: number[] = [];
  let reason = "";
  for (let kill = 0; kill < KILLS; kill++) {
    died = restarted = undefined;
    let deathAt: number;
    if (scenario.how === "killed") {
      deathAt = Date.now();
      dying = true;
      cluster.kill(1);
    } else {
      const pid = await client.view(1).apply(() => Deno.pid).get({ timeout: 10_000 });
      deathAt = Date.now();
      dying = true;
      Deno.kill(pid, scenario.how === "sigkill" ? "SIGKILL" : "SIGSTOP");
    }
    await until(() => died !== undefined, 60_000, "enginedied");
    await until(() => restarted !== undefined || failed !== undefined, 120_000, "enginerestarted");
    if (failed) throw failed;
    dying = false;
    detections.push(died!.at - deathAt);
    restarts.push(restarted! - deathAt);
    reason = died!.reason;
    // The replacement answers before the next kill.
    await client.view(1).apply(() => 1).get({ timeout: 10_000 });
  }
  return {
    scenario,
    detection: summarize(detections),
    restart: summarize(restarts),
    reason,
    falseAlarms,
  };
}

async function until(ready: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function render(
  results: Result[],
  busyResults: BusyResult[],
  load: number[],
  loadAfter: number[],
): string {
  const lines = [
    "# Noticing dead engines",
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    "`" +
    `deno run -A bench/liveness.ts --kills ${KILLS} --timeout ${TIMEOUT_MS} --busy ${
      BUSY_S.join(",")
    } --sizes ${SIZES.join(",")}` +
    "`" +
    `: Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, Redis on loopback ` +
    `(its own server), \`heartbeatTimeoutMs: ${TIMEOUT_MS}\`, \`restart: true\`. ` +
    `Each row: ${KILLS} deaths of engine 1 of a 2-engine cluster (one engine per host), each ` +
    "after its replacement answered. Detection: from the death to the cluster's " +
    '`"enginedied"` event; restart: from the death to `"enginerestarted"` (it includes a ' +
    "1.2 s wait for the dead host's last blocked read to expire). False alarms: " +
    '`"enginedied"` for engine 0 (never killed) or for engine 1 before its death. Load average ' +
    `(1/5/15 min) ${formatLoad(load)} before, ${formatLoad(loadAfter)} after: the machine is ` +
    "shared.",
    "",
    "| launcher | transport | death | noticed by | detection median | detection max | " +
    "restart median | restart max | false alarms |",
    "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    const s = r.scenario;
    lines.push(
      `| ${s.launcher} | ${s.transport} | ${s.how} | ${NOTICED[s.how]} | ${
        ms(r.detection.median)
      } | ${ms(r.detection.max)} | ${ms(r.restart.median)} | ${
        ms(r.restart.max)
      } | ${r.falseAlarms} |`,
    );
  }
  lines.push("", "Reasons the `EngineDiedError`s gave (last death of each row):", "");
  for (const r of results) {
    const s = r.scenario;
    lines.push(`- ${s.launcher}/${s.transport}/${s.how}: "${r.reason}"`);
  }
  if (busyResults.length) {
    lines.push(
      "",
      "## Busy engines are alive",
      "",
      "Each row: one call whose task spins on the CPU without yielding for the given time on " +
        "every engine of a k-engine cluster of one engine per host, all at once on this " +
        'machine\'s cores. False deaths: `"enginedied"` events during the call.',
      "",
      "| launcher | transport | engines | hosts | task | call took | completed | false deaths |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const b of busyResults) {
      lines.push(
        `| ${b.on.launcher} | ${b.on.transport} | ${b.engines} | ${b.hosts} | ${b.seconds} s | ${
          ms(b.took)
        } | ${b.completed}/${b.engines} | ${b.falseDeaths} |`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`;
}

if (import.meta.main) {
  await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
  const before = loadAverage();
  const results: Result[] = [];
  for (const scenario of SCENARIOS) {
    const result = await run(scenario, server.url);
    console.error(
      `${scenario.launcher}/${scenario.transport}/${scenario.how}: detection median ${
        ms(result.detection.median)
      }, max ${ms(result.detection.max)}`,
    );
    results.push(result);
  }
  const busyResults: BusyResult[] = [];
  for (const seconds of BUSY_S) {
    for (const engines of SIZES) {
      for (const on of BUSY_ON) {
        const result = await busy(on, engines, seconds, server.url);
        console.error(
          `busy ${on.launcher}/${on.transport} ${engines} engines ${seconds} s: took ${
            ms(result.took)
          }, ${result.falseDeaths} false deaths`,
        );
        busyResults.push(result);
      }
    }
  }
  const table = render(results, busyResults, before, loadAverage());
  console.log(table);
  await Deno.writeTextFile(new URL("./results/liveness.md", import.meta.url), table);
}
