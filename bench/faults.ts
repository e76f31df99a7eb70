/**
 * The fault table (issue 6): each fault injected several times into a cluster on a private
 * `redis-server`, with what the caller saw (outcomes, how long after the fault it knew) and what
 * work was lost. Writes `bench/results/faults.md`.
 *
 * ```sh
 * deno run -A bench/faults.ts [--trials 5] [--only NAME,NAME]
 * ```
 *
 * Every fault is a {@linkcode Fault} in {@linkcode FAULTS}; a new one (a stuck host found by
 * heartbeats, an engine restarted with `restart: true`) is one more entry there and one more row.
 *
 * Tasks mark their runs by appending a token (unique per call and engine) to a file outside
 * Redis, so that a task that ran is told apart from an answer that came back: "never ran" counts
 * tokens missing from that file, "extra runs" counts tokens found more than once.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import type { AsyncResult } from "../actors/client/async_result.ts";
import type { Client } from "../actors/client/client.ts";
import { Cluster } from "../actors/client/cluster.ts";
import { ActorSystem } from "../actors/core/system.ts";
import { RemoteError } from "../errors.ts";
import { type Envelope, generateKey, namespaceKey, sealEnvelope } from "../transport/envelope.ts";
import { RedisTransport } from "../transport/redis.ts";
import { FunctionSource } from "../actors/protocol/wire_types.ts";
import { type HandStarted, startByHand as startEngineProcess } from "../tests/_engine_process.ts";
import { fakeRedisPort } from "../tests/_fake_redis_port.ts";
import {
  connectAdmin,
  type RedisServer,
  startRedisServer,
  uniqueNamespace,
} from "../tests/_redis_server.ts";
import { formatLoad, loadAverage, median } from "./_util.ts";
import { clientKilled, longOutage, staleHeartbeats } from "./_faults_issue14.ts";

/** `rank` in the engines' namespaces. */
declare const rank: number;

/** What one injection of a fault gave. */
export interface Trial {
  /** Ms from the fault until the caller had the outcome, one per affected call (or entry). */
  times: number[];
  /** Affected calls (or entries) by outcome: "ok", an error's name, or "no answer". */
  outcomes: Record<string, number>;
  /** Tasks (or entries) that should have run and never did. */
  neverRan: number;
  /** Runs beyond the first of a task. */
  extraRuns: number;
  /** Processes and Redis keys left once the cluster (or script) was done, where counted. */
  left?: number;
}

/** One row of the table. */
export interface Fault {
  /** Short name, for `--only`. */
  id: string;
  /** What is done, for the table. */
  name: string;
  /** What counts as affected, and what the time measures, for the notes. */
  measure: string;
  /** Runs the injections; returns one result per trial. */
  run(trials: number): Promise<Trial[]>;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    trials: { type: "string", default: "5" },
    only: { type: "string" },
    /** Write the table even with `--only` (to `--out`). */
    write: { type: "boolean", default: false },
    out: { type: "string", default: new URL("./results/faults.md", import.meta.url).pathname },
  },
});
const TRIALS = Number(flags.trials);
/** How long a call may take before it counts as "no answer". */
const ANSWER_DEADLINE_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Tasks shipped to the engines (they run there: `rank` is the engine's).

/** Marks one run of the call `token` on this engine, then answers after `ms`. */
function mark(path: string, token: string, ms: number): Promise<string> {
  const t = `${token}@${rank}`;
  Deno.writeTextFileSync(path, `${t}\n`, { append: true });
  return new Promise((resolve) => setTimeout(() => resolve(t), ms));
}

/** Keeps this engine's host busy (no reads, no timers) for `ms`, then marks the run. */
function spin(path: string, token: string, ms: number): string {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* CPU-bound */ }
  const t = `${token}@${rank}`;
  Deno.writeTextFileSync(path, `${t}\n`, { append: true });
  return t;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/** A file of run tokens. */
class Marks {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  static async make(): Promise<Marks> {
    return new Marks(await Deno.makeTempFile({ prefix: "deno-parallel-faults-" }));
  }
  /** Runs per token. */
  async runs(): Promise<Map<string, number>> {
    const runs = new Map<string, number>();
    const text = await Deno.readTextFile(this.path);
    for (const line of text.split("\n")) if (line) runs.set(line, (runs.get(line) ?? 0) + 1);
    return runs;
  }
  async remove(): Promise<void> {
    await Deno.remove(this.path).catch(() => {});
  }
}

/** A call under watch: its tokens, when it was sent and when its outcome came. */
interface Watched {
  tokens: string[];
  sent: number;
  /** Resolves to when the outcome came and what it was. */
  settled: Promise<{ at: number; outcome: string[] }>;
}

function watch(result: AsyncResult<unknown>, tokens: string[]): Watched {
  const sent = Date.now();
  const settled = result.get({ timeout: ANSWER_DEADLINE_MS, returnExceptions: true }).then(
    (values) => ({
      at: Date.now(),
      outcome: values.map((v) => v instanceof Error ? errorName(v) : "ok"),
    }),
    (error: Error) => ({
      at: Date.now(),
      outcome: tokens.map(() => error.name === "TimeoutError" ? "no answer" : errorName(error)),
    }),
  );
  return { tokens, sent, settled };
}

/** The name shown for an error: a `RemoteError`'s remote name, else its own. */
function errorName(error: Error): string {
  if (error instanceof RemoteError) return error.remoteName;
  return error.name === "TimeoutError" ? "no answer" : error.name;
}

/** Sums outcomes and times of calls affected by a fault at `faultAt`. */
async function tally(
  calls: Watched[],
  faultAt: number,
  marks: Marks,
): Promise<Trial> {
  const trial: Trial = { times: [], outcomes: {}, neverRan: 0, extraRuns: 0 };
  const settled = await Promise.all(calls.map((call) => call.settled));
  const runs = await marks.runs();
  for (const [c, call] of calls.entries()) {
    const { at, outcome } = settled[c];
    // Affected: still waiting when the fault came, or sent after it.
    if (at < faultAt) continue;
    for (const [i, o] of outcome.entries()) {
      trial.outcomes[o] = (trial.outcomes[o] ?? 0) + 1;
      const n = runs.get(call.tokens[i]) ?? 0;
      // A call that failed at submission may or may not have run: only answered ones count.
      if (n === 0 && o === "ok") trial.neverRan++;
      if (n === 0 && o === "no answer") trial.neverRan++;
      trial.extraRuns += Math.max(0, n - 1);
      if (n > 1) console.error(`faults: ${call.tokens[i]} ran ${n} times (outcome ${o})`);
    }
    if (!outcome.every((o) => o === "no answer")) trial.times.push(at - faultAt);
  }
  return trial;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function cluster(url: string, options: ConstructorParameters<typeof Cluster>[0] = {}) {
  const c = new Cluster({ transport: url, progress: false, engineTimeout: 120_000, ...options });
  const client = await c.startAndConnect();
  // The first broadcast starts the broadcast actors.
  await client.broadcastView().apply(() => rank).get({ timeout: 60_000 });
  return { cluster: c, client };
}

// ---------------------------------------------------------------------------------------------
// Redis goes away.

/**
 * Redis stopped (or killed) mid-broadcast and started again after `downMs`, `trials` times on one
 * cluster of 4 engines on 2 hosts. Around each fault, calls go out every 20 ms for 1 s before,
 * during the outage and 1 s after (DirectView on one engine and BroadcastView on all,
 * alternately), plus one 1 s broadcast running when the fault comes, and a CPU-bound task that
 * keeps the host of engines 0 and 2 busy for 1.5 s with 10 calls to those engines sent meanwhile
 * (they wait in Redis, undelivered, when it goes down).
 */
function redisOutage(
  id: string,
  name: string,
  options: { appendonly: boolean; downMs: number; kill: boolean },
): Fault {
  return {
    id,
    name,
    measure: "calls running, waiting in Redis or sent while Redis was away (one outcome per " +
      "engine); time from the stop to each call's answer" +
      (options.appendonly
        ? ""
        : ". _Never ran_ counts the tasks of calls answered `ok` or not at " +
          "all; a `TransportDataLostError` says that the task may be lost, and some of those did run"),
    async run(trials) {
      await using server = await startRedisServer({
        appendonly: options.appendonly,
        args: ["--loglevel", "warning"],
      });
      const { cluster: c, client } = await cluster(server.url, { n: 4, hosts: 2 });
      await using _ = c;
      const results: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        const marks = await Marks.make();
        try {
          results.push(await outageTrial(server, client, marks, options, `t${t}`));
        } finally {
          await marks.remove();
        }
      }
      return results;
    },
  };
}

async function outageTrial(
  server: RedisServer,
  client: Client,
  marks: Marks,
  options: { downMs: number; kill: boolean },
  prefix: string,
): Promise<Trial> {
  const ids = client.ids;
  const bv = client.broadcastView();
  const calls: Watched[] = [];
  let sending = true;
  const sender = (async () => {
    for (let i = 0; sending; i++) {
      const token = `${prefix}c${i}`;
      if (i % 2 === 0) {
        const engineId = ids[(i / 2) % ids.length];
        calls.push(watch(client.view([engineId]).apply(mark, marks.path, token, 5), [
          `${token}@${engineId}`,
        ]));
      } else {
        calls.push(watch(
          bv.apply(mark, marks.path, token, 5),
          ids.map((id) => `${token}@${id}`),
        ));
      }
      await delay(20);
    }
  })();
  await delay(500);
  const busy = `${prefix}busy`;
  calls.push(watch(client.view([0]).apply(spin, marks.path, busy, 1500), [`${busy}@0`]));
  await delay(300);
  for (let i = 0; i < 10; i++) {
    const token = `${prefix}q${i}`;
    const engineId = i % 2 === 0 ? 0 : 2;
    calls.push(watch(client.view([engineId]).apply(mark, marks.path, token, 5), [
      `${token}@${engineId}`,
    ]));
  }
  const slow = `${prefix}slow`;
  calls.push(watch(bv.apply(mark, marks.path, slow, 1000), ids.map((id) => `${slow}@${id}`)));
  await delay(200);
  const faultAt = Date.now();
  if (options.kill) await server.kill();
  else await server.stop();
  await delay(options.downMs);
  await server.start();
  await delay(1000);
  sending = false;
  await sender;
  return await tally(calls, faultAt, marks);
}

// ---------------------------------------------------------------------------------------------
// An engine's host dies.

/**
 * A fresh cluster of 2 engines (one per host) per trial. Engine 0 runs a task that outlasts the
 * death of its host 300 ms in (`Cluster.kill` of its Worker, or a SIGKILL of its process sent from
 * outside); queued behind it are 3 more calls and a broadcast on both engines.
 */
function engineDeath(
  id: string,
  name: string,
  how: "kill-worker" | "sigkill-process" | "sigkill-engine.ts",
): Fault {
  return {
    id,
    name,
    measure: "the calls on engine 0 and the broadcast's two parts; time from the kill to each " +
      "call's outcome",
    async run(trials) {
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      const results: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        const marks = await Marks.make();
        try {
          if (how === "sigkill-engine.ts") {
            await using hand = await startByHand(server.url, 2);
            results.push(
              await deathTrial(hand.client, marks, async () => {
                await delay(300);
                hand.process.kill("SIGKILL");
                return Date.now();
              }),
            );
            continue;
          }
          const launcher = how === "kill-worker" ? "worker" : "process";
          const { cluster: c, client } = await cluster(server.url, { n: 2, hosts: 2, launcher });
          await using _ = c;
          results.push(
            await deathTrial(client, marks, async (pid) => {
              await delay(300);
              if (how === "sigkill-process") Deno.kill(pid, "SIGKILL");
              else c.kill(0);
              return Date.now();
            }),
          );
        } finally {
          await marks.remove();
        }
      }
      return results;
    },
  };
}

async function deathTrial(
  client: Client,
  marks: Marks,
  kill: (pid: number) => Promise<number>,
): Promise<Trial> {
  const pid = await client.view(0).apply(() => Deno.pid).get({ timeout: 10_000 });
  const calls: Watched[] = [];
  calls.push(watch(client.view([0]).apply(mark, marks.path, "first", 5000), ["first@0"]));
  for (let i = 0; i < 3; i++) {
    calls.push(watch(client.view([0]).apply(mark, marks.path, `q${i}`, 5), [`q${i}@0`]));
  }
  calls.push(watch(client.broadcastView().apply(mark, marks.path, "b", 5), ["b@0", "b@1"]));
  const deathAt = await kill(pid);
  return await tally(calls, deathAt, marks);
}

/** Engines in an `engine.ts` process started by hand, and a client on them, warmed up. */
async function startByHand(url: string, n: number): Promise<HandStarted> {
  const hand = await startEngineProcess(url, n, { timeout: 60_000 });
  await hand.client.broadcastView().apply(() => rank).get({ timeout: 60_000 });
  return hand;
}

// ---------------------------------------------------------------------------------------------
// Bad entries.

/**
 * A message whose handler kills its host every time: hosts (actor systems on Redis) run one after
 * another under new ids, each abandoned inside the handler, so that the next claims the entry
 * (`claimIdleMs` 200 ms, `maxDeliveries` 3).
 */
const poison: Fault = {
  id: "poison",
  name: "Poison message: its handler kills every host that runs it (hosts replaced, " +
    "`claimIdleMs` 200 ms, `maxDeliveries` 3)",
  measure: "the ask of the poison message; time from the ask to its `PoisonMessageError`; " +
    "extra runs = handler runs beyond the first",
  async run(trials) {
    await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
    const results: Trial[] = [];
    for (let t = 0; t < trials; t++) {
      const namespace = uniqueNamespace();
      const key = generateKey();
      const common = { key, namespace, blockMs: 100, claimIdleMs: 200, maxDeliveries: 3 };
      const transports: RedisTransport[] = [];
      const open = async () => {
        const transport = await RedisTransport.connect(server.url);
        transports.push(transport);
        return transport;
      };
      const client = new ActorSystem({ ...common, transport: await open() });
      const systems = [client];
      try {
        const asked = Date.now();
        let settled: { at: number; name: string } | undefined;
        client.ask("worker", "crash", null, { timeout: ANSWER_DEADLINE_MS }).then(
          () => (settled = { at: Date.now(), name: "ok" }),
          (error: Error) => (settled = { at: Date.now(), name: errorName(error) }),
        );
        let runs = 0;
        for (let h = 0; h < 10 && !settled; h++) {
          const host = new ActorSystem({ ...common, id: `host-${h}`, transport: await open() });
          systems.push(host);
          const before = runs;
          host.spawn("worker", {
            handlers: { crash: () => (runs++, new Promise(() => {})) },
          });
          while (runs === before && !settled) await delay(5);
          if (!settled) await host.close(); // gone inside the handler: the entry stays pending
        }
        while (!settled) await delay(5);
        results.push({
          times: [settled.at - asked],
          outcomes: { [settled.name]: 1 },
          neverRan: 0,
          extraRuns: Math.max(0, runs - 1),
        });
      } finally {
        for (const system of systems.reverse()) await system.close();
        await transports[0]?.deletePrefix(`${namespace}:`);
        for (const transport of transports) await transport.close();
      }
    }
    return results;
  },
};

/**
 * Entries appended with a raw `XADD` to an engine's inbox of a running cluster (2 engines): 20
 * per kind and trial, each an `apply` of a task that would mark the file.
 */
function badEntries(kind: "unsigned" | "wrong key" | "truncated"): Fault {
  return {
    id: kind.replace(" ", "-"),
    name: `${kind[0].toUpperCase()}${kind.slice(1)} entries in an engine's inbox (20 per trial)`,
    measure: "the entries; time from the XADD to each entry's dead letter (then a call on the " +
      "engine must still work); *never ran* here counts entries not dead-lettered within 30 s, " +
      "*extra runs* entries that ran (their task would have marked the file)",
    async run(trials) {
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      const key = generateKey();
      const { cluster: c, client } = await cluster(server.url, { n: 2, hosts: 2, key });
      await using _ = c;
      await using raw = await connectAdmin(server.url);
      const inbox = client.system.inboxOf("engine.0");
      const dead = client.system.deadLetterStream;
      const results: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        const marks = await Marks.make();
        try {
          const before = Number(await raw.send(["XLEN", dead]));
          const entries = Array.from({ length: 20 }, (_, i) => {
            const envelope: Envelope = {
              id: crypto.randomUUID(),
              type: "apply",
              from: "intruder",
              to: "engine.0",
              sent: Date.now(),
              content: { fn: FunctionSource.of(mark), args: [marks.path, `bad${i}`, 0] },
            };
            const sealed = sealEnvelope(
              envelope,
              kind === "wrong key" ? generateKey() : namespaceKey(key, client.namespace),
            );
            if (kind === "unsigned") sealed.fill(0, 1, 33);
            return kind === "truncated" ? sealed.subarray(0, sealed.length >> 1) : sealed;
          });
          const times: number[] = [];
          const sent = Date.now();
          for (const data of entries) {
            await raw.send(["XADD", inbox, "*", "m", data]);
          }
          let seen = before;
          while (seen < before + entries.length && Date.now() - sent < ANSWER_DEADLINE_MS) {
            const now = Number(await raw.send(["XLEN", dead]));
            for (; seen < now; seen++) times.push(Date.now() - sent);
            await delay(1);
          }
          // The engine still serves.
          const ok = await client.view(0).apply(() => rank).get({ timeout: 10_000 });
          const runs = await marks.runs();
          results.push({
            times,
            outcomes: { "dead-lettered": times.length, ...(ok === 0 ? {} : { "bad next": 1 }) },
            neverRan: entries.length - times.length,
            extraRuns: [...runs.values()].reduce((a, b) => a + b, 0),
          });
        } finally {
          await marks.remove();
        }
      }
      return results;
    },
  };
}

// ---------------------------------------------------------------------------------------------

const FAULTS: Fault[] = [
  redisOutage("stop-5s", "Redis stopped (SIGTERM) 5 s mid-broadcast, no persistence", {
    appendonly: false,
    downMs: 5000,
    kill: false,
  }),
  redisOutage("stop-5s-aof", "Redis stopped (SIGTERM) 5 s mid-broadcast, AOF (fsync always)", {
    appendonly: true,
    downMs: 5000,
    kill: false,
  }),
  redisOutage("kill-aof", "Redis killed (SIGKILL) and restarted at once, AOF (fsync always)", {
    appendonly: true,
    downMs: 0,
    kill: true,
  }),
  redisOutage(
    "stop-12s-aof",
    "Redis stopped 12 s (longer than the 10 s `commandTimeoutMs`), AOF (fsync always)",
    { appendonly: true, downMs: 12_000, kill: false },
  ),
  engineDeath("kill-worker", "Engine Worker host killed (`Cluster.kill`)", "kill-worker"),
  engineDeath(
    "kill-process",
    'Engine process (`"process"` launcher) killed with SIGKILL from outside',
    "sigkill-process",
  ),
  engineDeath(
    "kill-engine.ts",
    "`engine.ts` process started by hand killed with SIGKILL (found by heartbeats, 2.5 s)",
    "sigkill-engine.ts",
  ),
  poison,
  badEntries("unsigned"),
  badEntries("wrong key"),
  badEntries("truncated"),
  firstBroadcastAfterDeath("memory"),
  firstBroadcastAfterDeath("redis"),
  oversizedValue(),
  staleHeartbeats(),
  longOutage(),
  clientKilled("process"),
  clientKilled("worker"),
  failedConnect("tls"),
  failedConnect("garbage"),
];

// ---------------------------------------------------------------------------------------------
// Issue 14: calls that must end with an answer.

/**
 * Point 1: a host killed before any broadcast, then the first broadcast, on a fresh cluster of 6
 * engines on 3 hosts per trial. Affected: the 6 engines' results of that broadcast; time from
 * the kill. Left: Redis keys once the cluster stopped.
 */
function firstBroadcastAfterDeath(kind: "memory" | "redis"): Fault {
  return {
    id: `first-broadcast-${kind}`,
    name: `Host killed (\`Cluster.kill(0)\`) before the first broadcast, ${kind} transport`,
    measure: "the 6 results of the first `broadcastView().apply(() => rank)` after the kill of " +
      "the host of engines 0 and 1 (before any broadcast), time from the kill; left: Redis keys " +
      "after `stop()` (but the server-wide `deno-parallel:epoch`)",
    async run(trials) {
      const out: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        await using server = kind === "redis"
          ? await startRedisServer({ args: ["--loglevel", "warning"] })
          : undefined;
        const marks = await Marks.make();
        const c = new Cluster({
          n: 6,
          hosts: 3,
          progress: false,
          engineTimeout: 120_000,
          ...(server ? { transport: server.url } : {}),
        });
        const client = await c.startAndConnect();
        const faultAt = Date.now();
        c.kill(0);
        const token = `fb${t}`;
        const call = watch(
          client.broadcastView().apply(mark, marks.path, token, 0),
          [0, 1, 2, 3, 4, 5].map((r) => `${token}@${r}`),
        );
        const trial = await tally([call], faultAt, marks);
        await c.stop();
        if (server) {
          trial.left = await keysLeft(server.url);
        }
        await marks.remove();
        out.push(trial);
      }
      return out;
    },
  };
}

/**
 * Point 2: a push of a 2 MB value with the bench's redis-server at `proto-max-bulk-len` 1 MB,
 * then one call, then `stop()`, on a fresh cluster of 2 engines per trial. Affected: the push
 * and the next call; time from the push to its answer. Left: Redis keys after `stop()`; a
 * `stop()` over 10 s counts as an outcome "slow stop".
 */
function oversizedValue(): Fault {
  return {
    id: "oversized",
    name: "Value over Redis' `proto-max-bulk-len` (1 MB) pushed, then one call, then `stop()`",
    measure: "the push of 2 MB (answered with `SerializationError`, it should be) and the next " +
      "`apply` on both engines; time from the push to its answer; `stop()` over 10 s is counted " +
      "as an outcome; left: Redis keys after `stop()` (but the server-wide `deno-parallel:epoch`)",
    async run(trials) {
      const out: Trial[] = [];
      for (let t = 0; t < trials; t++) {
        await using server = await startRedisServer({
          args: ["--loglevel", "warning", "--proto-max-bulk-len", "1mb"],
        });
        const marks = await Marks.make();
        const { cluster: c, client } = await cluster(server.url, { n: 2 });
        const faultAt = Date.now();
        const trial: Trial = { times: [], outcomes: {}, neverRan: 0, extraRuns: 0 };
        const count = (o: string) => trial.outcomes[o] = (trial.outcomes[o] ?? 0) + 1;
        try {
          await client.broadcastView().push({ big: new Uint8Array(2 * 1024 * 1024) })
            .get({ timeout: ANSWER_DEADLINE_MS });
          count("push ok");
        } catch (error) {
          count(`push ${errorName(error as Error)}`);
        }
        trial.times.push(Date.now() - faultAt);
        const token = `ov${t}`;
        const next = await tally(
          [watch(client.broadcastView().apply(mark, marks.path, token, 0), [
            `${token}@0`,
            `${token}@1`,
          ])],
          0,
          marks,
        );
        for (const [k, v] of Object.entries(next.outcomes)) {
          trial.outcomes[k] = (trial.outcomes[k] ?? 0) + v;
        }
        trial.neverRan += next.neverRan;
        trial.extraRuns += next.extraRuns;
        const stopAt = Date.now();
        await c.stop();
        if (Date.now() - stopAt > 10_000) count("slow stop");
        trial.left = await keysLeft(server.url);
        await marks.remove();
        out.push(trial);
      }
      return out;
    },
  };
}

/**
 * How many keys the bench's own redis-server still holds (named on stderr), but for the
 * server-wide epoch key, which outlives every cluster by design.
 */
async function keysLeft(url: string): Promise<number> {
  await using admin = await connectAdmin(url);
  const keys = ((await admin.send(["KEYS", "*"])) as string[])
    .filter((key) => key !== "deno-parallel:epoch");
  if (keys.length) console.error(`faults: keys left: ${keys.join(", ")}`);
  return keys.length;
}

/**
 * Point 6: a script (tests/fixtures/failed_connect.ts, `cluster` mode) whose connect to a port
 * that does not speak Redis fails, then does one call on the bench's redis-server. Affected: the
 * script; outcome its error's name (and "hung" if it had not exited 30 s on); time from its start
 * to its exit. Left: the script itself, if it had to be killed.
 */
function failedConnect(kind: "tls" | "garbage"): Fault {
  return {
    id: `failed-connect-${kind}`,
    name: `Failed connect (\`redis://\` at a ${kind === "tls" ? "TLS" : "garbage"} port), ` +
      "then a call on a good Redis: the script exits",
    measure: "the script's failed `Cluster.startAndConnect()` (outcome: its error's name, " +
      '"hung" if it had not exited 30 s on); time from its start to its exit; left: the script ' +
      "process, if it had to be killed",
    async run(trials) {
      const out: Trial[] = [];
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      for (let t = 0; t < trials; t++) {
        await using bad = fakeRedisPort(kind);
        const startAt = Date.now();
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("../tests/fixtures/failed_connect.ts", import.meta.url).href,
            "cluster",
            bad.url,
            server.url,
          ],
          env: { NO_COLOR: "1" },
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).spawn();
        let hung = false;
        const timer = setTimeout(() => {
          hung = true;
          child.kill("SIGKILL");
        }, ANSWER_DEADLINE_MS);
        const { stdout } = await child.output();
        clearTimeout(timer);
        const line = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
        let name = "no output";
        try {
          const parsed = JSON.parse(line);
          name = `${parsed.name}${
            JSON.stringify(parsed.next) === JSON.stringify([42]) || parsed.next === 42
              ? ", next call ok"
              : ", next call failed"
          }`;
        } catch { /* no JSON */ }
        out.push({
          times: hung ? [] : [Date.now() - startAt],
          outcomes: { [hung ? "hung" : name]: 1 },
          neverRan: 0,
          extraRuns: 0,
          left: hung ? 1 : 0,
        });
      }
      return out;
    },
  };
}

if (import.meta.main) await main();

async function main(): Promise<void> {
  const only = flags.only?.split(",");
  const started = new Date();
  const loadBefore = loadAverage();
  const rows: { fault: Fault; trials: Trial[] }[] = [];
  for (const fault of FAULTS) {
    if (only && !only.includes(fault.id)) continue;
    console.error(`faults: ${fault.id}: ${TRIALS} trials`);
    const t0 = performance.now();
    const trials = await fault.run(TRIALS);
    console.error(
      `faults: ${fault.id}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s: ` +
        JSON.stringify(trials.map((t) => ({ ...t, times: t.times.length }))),
    );
    rows.push({ fault, trials });
  }
  const text = render(rows, started, [loadBefore, loadAverage()]);
  console.log(text);
  if (!only || flags.write) {
    await Deno.writeTextFile(flags.out!, text);
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", flags.out!] }).output();
    console.error(`Wrote ${flags.out}`);
  }
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return "–";
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`;
}

function render(
  rows: { fault: Fault; trials: Trial[] }[],
  started: Date,
  load: number[][],
): string {
  const lines = [
    "# Faults",
    "",
    `Measured ${started.toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    `\`deno run -A bench/faults.ts${TRIALS !== 5 ? ` --trials ${TRIALS}` : ""}${
      flags.only ? ` --only ${flags.only}` : ""
    }\`: Deno ` +
    `${Deno.version.deno}, a private \`redis-server\` per row on loopback, ` +
    `${navigator.hardwareConcurrency} CPUs shared with other jobs (load average ` +
    `${formatLoad(load[0])} before, ${formatLoad(load[1])} after). Each fault was injected ` +
    `${TRIALS} times. Calls wait at most ${ANSWER_DEADLINE_MS / 1000} s (\`get({ timeout })\`): ` +
    "past that, a call counts as *no answer*.",
    "",
    "| fault | trials | affected | outcomes | seen by the caller after: median | max | " +
    "never ran | extra runs | processes and keys left |",
    "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { fault, trials } of rows) {
    const outcomes: Record<string, number> = {};
    for (const t of trials) {
      for (const [k, v] of Object.entries(t.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
    }
    const affected = Object.values(outcomes).reduce((a, b) => a + b, 0);
    const times = trials.flatMap((t) => t.times);
    const shown = Object.entries(outcomes).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${v} ${k}`).join(", ");
    lines.push(
      `| ${fault.name} | ${trials.length} | ${affected} | ${shown} | ${ms(median(times))} | ${
        ms(Math.max(...times))
      } | ${trials.reduce((a, t) => a + t.neverRan, 0)} | ${
        trials.reduce((a, t) => a + t.extraRuns, 0)
      } | ${
        trials.some((t) => t.left !== undefined)
          ? trials.reduce((a, t) => a + (t.left ?? 0), 0)
          : "–"
      } |`,
    );
  }
  lines.push("", "What each row counts:", "");
  for (const { fault } of rows) lines.push(`- **${fault.name}**: ${fault.measure}.`);
  return lines.join("\n") + "\n";
}
