/**
 * How long a cluster takes to notice a dead engine, for each way of dying and each launcher:
 * a worker or process host that crashes (an uncaught error in a task's timer), a process that is
 * SIGKILLed or SIGSTOPped, and a host stuck in a task that never yields (`for (;;) {}`).
 *
 * One cluster of 2 engines (one host each, `restart: true`) per scenario; engine 1 is killed
 * `--kills` times, each time after its replacement is running. Detection time: from the moment
 * of death to the cluster's `"enginedied"` event. A crash and a block start at a wall-clock time
 * the bench chose (a timer in the task, so a little timer lateness is counted in); a signal is
 * sent by the bench. Restart time: from the death to `"enginerestarted"`. Redis is a
 * `redis-server` of its own. False alarms: `"enginedied"` events for engine 0, which is never
 * killed, or for engine 1 before its death. Prints a markdown table and writes it to
 * `bench/results/liveness.md`.
 *
 * ```sh
 * deno run -A bench/liveness.ts [--kills 10] [--timeout 2500]
 * ```
 *
 * `--timeout` defaults to the default `heartbeatTimeoutMs`.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, type ClusterOptions } from "../actors/cluster.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../actors/_liveness.ts";
import { startRedisServer } from "../tests/_redis_server.ts";
import { formatLoad, loadAverage, summarize, type Summary } from "./_util.ts";

type How = "crash" | "stuck" | "sigkill" | "sigstop";

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
  },
});
const KILLS = Number(flags.kills);
const TIMEOUT_MS = Number(flags.timeout);

const SCENARIOS: Scenario[] = [
  { launcher: "worker", transport: "memory", how: "crash" },
  { launcher: "worker", transport: "memory", how: "stuck" },
  { launcher: "worker", transport: "redis", how: "crash" },
  { launcher: "worker", transport: "redis", how: "stuck" },
  { launcher: "process", transport: "redis", how: "crash" },
  { launcher: "process", transport: "redis", how: "sigkill" },
  { launcher: "process", transport: "redis", how: "stuck" },
  { launcher: "process", transport: "redis", how: "sigstop" },
];

const NOTICED: Record<How, string> = {
  crash: "worker error event / process exit",
  sigkill: "process exit",
  stuck: "event loop not run for the timeout",
  sigstop: "no heartbeat for the timeout",
};

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
    if (scenario.how === "crash" || scenario.how === "stuck") {
      deathAt = Date.now() + 300;
      dying = true;
      await client.view(1).apply(
        (at: number, how: string) => {
          setTimeout(() => {
            if (how === "crash") throw new Error("crash");
            for (;;) { /* never yields */ }
          }, at - Date.now());
          return null;
        },
        deathAt,
        scenario.how,
      ).get({ timeout: 10_000 });
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

function render(results: Result[], load: number[], loadAfter: number[]): string {
  const lines = [
    "# Noticing dead engines",
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    "`" + `deno run -A bench/liveness.ts --kills ${KILLS} --timeout ${TIMEOUT_MS}` + "`" +
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
  const table = render(results, before, loadAverage());
  console.log(table);
  await Deno.writeTextFile(new URL("./results/liveness.md", import.meta.url), table);
}
