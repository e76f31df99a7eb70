/**
 * Rows of `bench/faults.ts` for issue 14 points 3, 4 and 5: stale heartbeats of a stopped host,
 * a Redis outage longer than `commandTimeoutMs`, and `kill -9` of the process that started a
 * cluster. Each counts, besides the callers' outcomes, the engines declared dead (a false death
 * is an outcome "declared dead") and what was left: processes, and keys of the cluster's
 * namespace once the keys' lease ran out.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import type { Client } from "../actors/client/client.ts";
import { Cluster } from "../actors/client/cluster.ts";
import { STREAM_LEASE_MS } from "../actors/core/_lease.ts";
import { RemoteError } from "../errors.ts";
import {
  newHandCluster,
  processAlive,
  runScriptCluster,
  spawnEngines,
} from "../tests/_engine_process.ts";
import { connectAdmin, type RedisServer, startRedisServer } from "../tests/_redis_server.ts";
import type { Fault, Trial } from "./faults.ts";

declare const rank: number;

const CALL_TIMEOUT_MS = 30_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function newTrial(): Trial {
  return { times: [], outcomes: {}, neverRan: 0, extraRuns: 0, left: 0 };
}

function count(trial: Trial, outcome: string, n = 1): void {
  trial.outcomes[outcome] = (trial.outcomes[outcome] ?? 0) + n;
}

function errorName(error: unknown): string {
  if (error instanceof RemoteError) return error.remoteName;
  return error instanceof Error ? error.name : String(error);
}

/** Counts the `"enginedied"` events of `target` into `trial` as "declared dead". */
function countDeaths(target: EventTarget, trial: Trial): void {
  target.addEventListener("enginedied", () => count(trial, "declared dead"));
}

/**
 * One broadcast `apply` on every engine, its results counted into `trial` ("ok" when the engine
 * answered its own rank); resolves to whether all were ok.
 */
async function callAll(client: Client, trial: Trial): Promise<boolean> {
  const values = await client.broadcastView().apply(() => rank)
    .get({ timeout: CALL_TIMEOUT_MS, returnExceptions: true })
    .catch((error: Error) => client.ids.map(() => error));
  let ok = true;
  for (const [i, value] of values.entries()) {
    if (value === client.ids[i]) count(trial, "ok");
    else {
      ok = false;
      count(trial, value instanceof Error ? errorName(value) : `wrong value ${value}`);
    }
  }
  return ok;
}

async function keysOf(url: string, namespace: string): Promise<string[]> {
  await using admin = await connectAdmin(url);
  return ((await admin.send(["KEYS", `${namespace}:*`])) as string[]).map(String);
}

/**
 * Waits (at most twice the keys' lease) until the namespaces of `trials` have no key left on
 * `url`, then adds to each trial's `left` its namespace's keys still there (named on stderr).
 */
async function leftAfterLease(
  url: string,
  trials: { trial: Trial; namespace: string }[],
): Promise<void> {
  const bound = Date.now() + 2 * STREAM_LEASE_MS;
  for (;;) {
    const left = await Promise.all(trials.map(({ namespace }) => keysOf(url, namespace)));
    if (left.every((keys) => keys.length === 0) || Date.now() > bound) {
      for (const [i, keys] of left.entries()) {
        trials[i].trial.left = (trials[i].trial.left ?? 0) + keys.length;
        if (keys.length) console.error(`faults: keys left: ${keys.slice(0, 10).join(", ")}`);
      }
      return;
    }
    await delay(500);
  }
}

/**
 * Point 3: `engine.ts --host-id hostA --n 2`, a client that connects and closes, SIGTERM of hostA,
 * then `engine.ts --host-id hostB --n 2` and `Cluster.connect({ n: 2 })`, then a broadcast every
 * 200 ms for 8 s (over three times the 2.5 s liveness budget). Affected: the broadcasts' results
 * and the engines declared dead; time from the start of hostB to the first answer.
 */
export function staleHeartbeats(): Fault {
  return {
    id: "stale-heartbeats",
    name: "`engine.ts` host A stopped (SIGTERM), host B started on its ids, a client calls for 8 s",
    measure: "the results of the broadcasts on engines 0 and 1 made every 200 ms for 8 s after " +
      "`Cluster.connect` to host B (an engine declared dead is an outcome _declared dead_), " +
      "time from host B's start to the first answer; left: processes, and the cluster's keys " +
      `once host B was stopped and the keys' lease (${STREAM_LEASE_MS / 1000} s) ran out`,
    async run(trials) {
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      const out: { trial: Trial; namespace: string }[] = [];
      for (let t = 0; t < trials; t++) {
        const trial = newTrial();
        const { cluster, keyFile, dir } = await newHandCluster();
        const options = { transport: server.url, cluster, keyFile, n: 2, timeout: 60_000 };
        const a = spawnEngines(server.url, cluster, keyFile, 2, "hostA");
        const first = await Cluster.connect(options);
        await callAll(first, newTrial());
        await first.close();
        a.kill("SIGTERM");
        await a.status;
        const startedAt = Date.now();
        const b = spawnEngines(server.url, cluster, keyFile, 2, "hostB");
        const client = await Cluster.connect(options);
        countDeaths(client, trial);
        const end = Date.now() + 8000;
        let first_ = true;
        while (Date.now() < end) {
          const ok = await callAll(client, trial);
          if (ok && first_) {
            trial.times.push(Date.now() - startedAt);
            first_ = false;
          }
          await delay(200);
        }
        await client.close();
        b.kill("SIGTERM");
        const exited = await Promise.race([b.status.then(() => true), delay(10_000)]);
        if (!exited) {
          trial.left! += 1;
          b.kill("SIGKILL");
          await b.status;
        }
        await Deno.remove(dir, { recursive: true });
        out.push({ trial, namespace: cluster });
      }
      await leftAfterLease(server.url, out);
      return out.map(({ trial }) => trial);
    },
  };
}

/**
 * Point 4: Redis (AOF) stopped 12 s, longer than the transport's 10 s `commandTimeoutMs`, under a
 * fresh `Cluster` of 4 engines on 2 process hosts per trial, idle (even trials) or working (odd
 * ones: engine 0 spins 3 s and every engine sleeps 3 s in a task when Redis stops). After the
 * restart, a broadcast every 200 ms for 4 s. Affected: the tasks running at the stop, the
 * broadcasts after the restart, the engines declared dead; time from the restart to the first
 * answer.
 */
export function longOutage(): Fault {
  return {
    id: "outage-12s-process",
    name: "Redis stopped 12 s (over the 10 s `commandTimeoutMs`, AOF) under a cluster of " +
      '`"process"` hosts, idle or working',
    measure: "the tasks running when Redis stopped (odd trials: engine 0 spinning 3 s, every " +
      "engine sleeping 3 s) and the results of broadcasts on the 4 engines every 200 ms for 4 s " +
      "after the restart (an engine declared dead is an outcome _declared dead_); time from the " +
      "restart to the first answer; left: processes and keys after `stop()` (but the " +
      "server-wide `deno-parallel:epoch`)",
    async run(trials) {
      const out: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        await using server = await startRedisServer({
          appendonly: true,
          args: ["--loglevel", "warning"],
        });
        const trial = newTrial();
        const c = new Cluster({
          n: 4,
          hosts: 2,
          transport: server.url,
          launcher: "process",
          progress: false,
        });
        const client = await c.startAndConnect();
        const pids = await client.view().apply(() => Deno.pid).get({ timeout: CALL_TIMEOUT_MS });
        await callAll(client, newTrial());
        countDeaths(c, trial);
        const working: Promise<void>[] = [];
        if (t % 2 === 1) {
          const settle = (p: Promise<unknown[]>, n: number) =>
            p.then(
              (values) => {
                for (const v of values) count(trial, v instanceof Error ? errorName(v) : "task ok");
              },
              (error) => count(trial, `task ${errorName(error)}`, n),
            );
          working.push(settle(
            client.view([0]).apply(() => {
              const end = Date.now() + 3000;
              while (Date.now() < end) { /* CPU-bound */ }
              return 0;
            }).get({ timeout: CALL_TIMEOUT_MS, returnExceptions: true }),
            1,
          ));
          working.push(settle(
            client.broadcastView().apply(() => new Promise((r) => setTimeout(() => r(rank), 3000)))
              .get({ timeout: CALL_TIMEOUT_MS, returnExceptions: true }),
            4,
          ));
          await delay(300);
        }
        await server.stop();
        await delay(12_000);
        await server.start();
        const backAt = Date.now();
        const end = backAt + 4000;
        let first = true;
        while (Date.now() < end) {
          if (await callAll(client, trial) && first) {
            trial.times.push(Date.now() - backAt);
            first = false;
          }
          await delay(200);
        }
        await Promise.all(working);
        await c.stop();
        trial.left! += pids.filter(processAlive).length + await keysLeft(server);
        out.push(trial);
      }
      return out;
    },
  };
}

async function keysLeft(server: RedisServer): Promise<number> {
  await using admin = await connectAdmin(server.url);
  const keys = ((await admin.send(["KEYS", "*"])) as string[]).map(String)
    .filter((key) => key !== "deno-parallel:epoch");
  if (keys.length) console.error(`faults: keys left: ${keys.slice(0, 10).join(", ")}`);
  return keys.length;
}

/**
 * Point 5: a script (tests/fixtures/process_cluster.ts) that starts `new Cluster({ n: 2, hosts: 2,
 * launcher })` and answers a call and a broadcast, SIGKILLed. With the `"process"` launcher the
 * engine processes must notice and exit, taking the cluster's keys; with `"worker"` they die
 * with the script, and the keys must leave by their lease. Affected: the script's cluster; time
 * from the kill until its engine processes exited and its namespace had no key left.
 */
export function clientKilled(launcher: "process" | "worker"): Fault {
  return {
    id: `kill-client-${launcher}`,
    name: `Script running \`new Cluster({ n: 2, hosts: 2, launcher: "${launcher}" })\` ` +
      "killed with SIGKILL",
    measure: "the killed script's cluster (outcome _cleaned up_ once its engine processes " +
      "exited and its namespace had no key left, else what stayed); time from the kill to " +
      `then; left: processes alive 30 s after the kill, and keys of the namespace left ` +
      `${2 * STREAM_LEASE_MS / 1000} s after it (twice the keys' lease)`,
    async run(trials) {
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      const out: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        const trial = newTrial();
        const { child, namespace, pids } = await runScriptCluster(server.url, launcher);
        const engines = [...new Set(pids)].filter((pid) => pid !== child.pid);
        const killedAt = Date.now();
        child.kill("SIGKILL");
        await child.status;
        let exitedAt: number | undefined;
        let keys: string[] = [];
        for (;;) {
          const now = Date.now();
          if (exitedAt === undefined && !engines.some(processAlive)) exitedAt = now;
          if (exitedAt === undefined && now - killedAt > 30_000) break;
          keys = await keysOf(server.url, namespace);
          if (exitedAt !== undefined && keys.length === 0) {
            trial.times.push(Date.now() - killedAt);
            count(trial, "cleaned up");
            break;
          }
          if (now - killedAt > 2 * STREAM_LEASE_MS) break;
          await delay(100);
        }
        const running = engines.filter(processAlive);
        if (running.length) count(trial, "engines running");
        if (keys.length) {
          count(trial, "keys stayed");
          console.error(`faults: keys left: ${keys.slice(0, 10).join(", ")}`);
        }
        trial.left! += running.length + keys.length;
        for (const pid of running) Deno.kill(pid, "SIGKILL");
        out.push(trial);
      }
      return out;
    },
  };
}
