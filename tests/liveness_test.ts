/**
 * Engine liveness: a cluster notices an engine host that was killed (a Worker terminated, a process
 * SIGKILLed) or SIGSTOPped; pending calls on its engines fail with `EngineDiedError`,
 * the cluster dispatches `"enginedied"`, and with `restart: true` a replacement with the same ids
 * answers the next calls. Run on the embedded transport (worker launcher) and on Redis (worker
 * and process launchers), and for hosts started by hand with `engine.ts`.
 *
 * The deadlines below only guard against hangs and against detection that waits for the wrong
 * thing (a crash must not wait for heartbeats); they are not speed targets.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Client,
  Cluster,
  type ClusterOptions,
  CompositeError,
  EngineDiedError,
  type TreeCommunicator,
} from "../mod.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../actors/_liveness.ts";
import { delay, waitUntil } from "./_async.ts";
import { startByHand } from "./_engine_process.ts";
import {
  type Backend,
  forEachBackend,
  openBackend,
  unavailable,
  type Variant,
} from "./_backends.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const x: unknown;
declare const stale: unknown;
declare const com: TreeCommunicator;

/** How a victim host dies. */
type How = "killed" | "sigkill" | "sigstop";

/** The default `heartbeatTimeoutMs`. */
const TIMEOUT_MS = DEFAULT_HEARTBEAT_TIMEOUT_MS;
/** How long after the calls are sent the victims are killed. */
const DIES_AFTER_MS = 300;
const T = { timeout: 20_000 } as const;
const TEST_TIMEOUT_MS = 180_000;

/**
 * The task every engine runs: victims wait to be killed from outside, the others return their id
 * after 200 ms.
 */
async function task(victims: number[]): Promise<number> {
  if (!victims.includes(id)) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return id;
  }
  return await new Promise<number>(() => {});
}

/** Collects the `engineId`s of `type` events of `target`, with when they came. */
function record(target: EventTarget, type: string): { engineId: number; at: number }[] {
  const seen: { engineId: number; at: number }[] = [];
  target.addEventListener(type, (event) => {
    seen.push({
      engineId: (event as CustomEvent<{ engineId: number }>).detail.engineId,
      at: now(),
    });
  });
  return seen;
}

function now(): number {
  return performance.now();
}

/**
 * Starts `cluster` and makes one broadcast call, so that every engine answers and the client's
 * broadcast actors run before anything is timed.
 */
async function connect(cluster: Cluster): Promise<Client> {
  const client = await cluster.startAndConnect();
  await client.broadcastView().apply(() => id).get({ timeout: 120_000 });
  return client;
}

/** What `reason` of an `EngineDiedError` says for each way of dying. */
const REASONS: Record<How, RegExp> = {
  killed: /killed/,
  sigkill: /its process exited with code 137/,
  sigstop: /sent no heartbeat for \d+\.\d s/,
};

/** How test names say each way of dying. */
const SAYS: Record<How, string> = {
  killed: "was killed (Cluster.kill)",
  sigkill: "was SIGKILLed",
  sigstop: "was SIGSTOPped",
};

/** Ways of dying noticed from an event (an error, an exit), without waiting for heartbeats. */
const AT_ONCE: How[] = ["killed", "sigkill"];

/**
 * Kills the victims' hosts `how` while a DirectView and a BroadcastView call are pending on every
 * engine. Returns the two calls and when the victims died.
 */
async function killWhilePending(cluster: Cluster, client: Client, victims: number[], how: How) {
  const pids = how === "sigkill" || how === "sigstop"
    ? await client.view(victims).apply(() => Deno.pid).get(T)
    : [];
  const direct = client.view().apply(task, victims);
  const broadcast = client.broadcastView().apply(task, victims);
  await delay(DIES_AFTER_MS);
  const diedAt = now();
  if (how === "killed") { for (const victim of victims) cluster.kill(victim); }
  for (const pid of pids) Deno.kill(pid, how === "sigkill" ? "SIGKILL" : "SIGSTOP");
  return { direct, broadcast, diedAt };
}

/** Asserts that `error` is the `EngineDiedError` of engine `engineId` dying `how`. */
function assertDied(error: unknown, engineId: number, how: How): void {
  assert.ok(error instanceof EngineDiedError, String(error));
  assert.equal(error.engineId, engineId);
  assert.match(error.message, new RegExp(`^Engine ${engineId} died: `));
  assert.match(error.message, REASONS[how]);
}

/** A variant of the suite: how its victims die, and how the restarted one is killed. */
interface LivenessVariant extends Variant {
  readonly hows: How[];
  readonly restartHow: How;
}

const VARIANTS: LivenessVariant[] = [
  {
    name: "memory/worker",
    kind: "memory",
    launcher: "worker",
    hows: ["killed"],
    restartHow: "killed",
  },
  {
    name: "redis/worker",
    kind: "redis",
    launcher: "worker",
    hows: ["killed"],
    restartHow: "killed",
  },
  {
    name: "redis/process",
    kind: "redis",
    launcher: "process",
    hows: ["killed", "sigkill", "sigstop"],
    restartHow: "sigstop",
  },
];

forEachBackend(VARIANTS, (test, { hows, restartHow }) => {
  function start(b: Backend, n: number, extra: ClusterOptions = {}): Cluster {
    return new Cluster({
      progress: false,
      engineTimeout: 30_000,
      ...b.cluster,
      ...extra,
      n,
      hosts: n,
    });
  }

  for (const how of hows) {
    const atOnce = AT_ONCE.includes(how);
    test(
      `Cluster fails pending calls on engines whose host ${SAYS[how]} with EngineDiedError${
        atOnce ? ", without waiting for heartbeats" : " within the timeout"
      }`,
      async (b) => {
        // A kill or an exit is noticed from its event: with a 30 s heartbeat timeout, a
        // detection within 10 s cannot have come from heartbeats.
        await using cluster = start(b, 4, atOnce ? { heartbeatTimeoutMs: 30_000 } : {});
        const client = await connect(cluster);
        const died = record(cluster, "enginedied");
        const clientDied = record(client, "enginedied");
        const victims = [1, 3];
        const { direct, broadcast, diedAt } = await killWhilePending(
          cluster,
          client,
          victims,
          how,
        );

        const values = await direct.get({ ...T, returnExceptions: true });
        assert.equal(values[0], 0);
        assert.equal(values[2], 2);
        assertDied(values[1], 1, how);
        assertDied(values[3], 3, how);
        const parts = await broadcast.get({ ...T, returnExceptions: true });
        assert.deepEqual([parts[0], parts[2]], [0, 2]);
        assertDied(parts[1], 1, how);
        assertDied(parts[3], 3, how);
        const composite = await broadcast.get(T).catch((e) => e);
        assert.ok(composite instanceof CompositeError, String(composite));
        assert.deepEqual(composite.engineIds, [1, 3]);

        assert.deepEqual(died.map((d) => d.engineId).sort(), victims);
        assert.deepEqual(clientDied.map((d) => d.engineId).sort(), victims);
        const took = Math.max(...died.map((d) => d.at)) - diedAt;
        if (atOnce) assert.ok(took < 10_000, `noticed after ${took} ms`);
        else {
          assert.ok(took > TIMEOUT_MS - 500, `taken for dead too early, after ${took} ms`);
          assert.ok(took < TIMEOUT_MS + 7000, `noticed after ${took} ms`);
        }

        // Later calls on the dead engines fail at once; the survivors work.
        const later = await client.view(1).apply(() => id).get({ timeout: 1000 }).catch((e) => e);
        assertDied(later, 1, how);
        assert.deepEqual(await client.view([0, 2]).apply(() => id).get(T), [0, 2]);
        const all = await client.broadcastView().apply(() => id).get({
          ...T,
          returnExceptions: true,
        });
        assert.deepEqual([all[0], all[2]], [0, 2]);
        assertDied(all[3], 3, how);
      },
    );
  }

  test(
    "TreeCommunicator.allreduce() fails on every other engine with EngineDiedError naming an engine whose host was killed, before its pings could tell",
    async (b) => {
      await using cluster = start(b, 3);
      const client = await connect(cluster);
      const dv = client.view();
      // Pings would take 20 s to give up: a failure sooner comes from the cluster's notice.
      await dv.wireTree({ livenessMs: 20_000, ...T });
      const pending = dv.apply(async (victim: number) => {
        if (id === victim) return await new Promise(() => {});
        try {
          return await com.allreduce((a: number, b: number) => a + b, id, { timeout: 60_000 });
        } catch (error) {
          const e = error as EngineDiedError;
          return { name: e.name, engineId: e.engineId, message: e.message };
        }
      }, 1);
      await delay(DIES_AFTER_MS);
      cluster.kill(1);
      const results = await pending.get({ ...T, returnExceptions: true });
      assertDied(results[1], 1, "killed");
      for (const i of [0, 2]) {
        const r = results[i] as { name: string; engineId: number; message: string };
        assert.equal(r.name, "EngineDiedError", `engine ${i}: ${JSON.stringify(r)}`);
        assert.equal(r.engineId, 1);
        // The kill, not silent pings (20 s), is the cause the message names.
        assert.match(r.message, REASONS.killed);
      }
    },
  );

  test("Cluster.stop() while a dead engine is being replaced leaves no host behind", async (b) => {
    const cluster = start(b, 2, { restart: true });
    const client = await connect(cluster);
    const failed = record(cluster, "enginerestartfailed");
    const restarted = record(cluster, "enginerestarted");
    cluster.kill(0);
    // Into the restart, which first waits 1.2 s for the dead host's last blocked read to expire:
    // stopping then is always before the replacement runs, however fast the machine.
    await delay(600);
    await cluster.stop();
    assert.deepEqual(failed, []);
    assert.deepEqual(restarted, []);
    await assert.rejects(client.view(1).apply(() => id).get({ timeout: 1000 }));
    // The sanitizers check that no worker, process, socket or timer is left.
  });

  test("Cluster does not take an engine whose task blocks its host for 1.5 s for dead", async (b) => {
    await using cluster = start(b, 2);
    const client = await connect(cluster);
    const died = record(cluster, "enginedied");
    const busy = await client.view().apply(() => {
      const end = Date.now() + 1500;
      let spins = 0;
      while (Date.now() < end) spins++;
      return spins > 0;
    }).get(T);
    assert.deepEqual(busy, [true, true]);
    await delay(TIMEOUT_MS); // a watcher that misjudged would have spoken by now
    assert.deepEqual(died, []);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
  });

  test(
    `Cluster({ restart: true }) replaces an engine whose host ${
      SAYS[restartHow]
    } with one of the same id and a fresh namespace`,
    async (b) => {
      await using cluster = start(b, 3, { restart: true });
      const client = await connect(cluster);
      const died = record(cluster, "enginedied");
      const restarted = record(cluster, "enginerestarted");
      const clientRestarted = record(client, "enginerestarted");
      await client.view().push({ x: "old" }, T);
      const { direct, broadcast } = await killWhilePending(cluster, client, [1], restartHow);
      // Queued behind the victim's task: it must fail, and never run on the replacement.
      const queued = client.view(1).push({ stale: true });

      const values = await direct.get({ ...T, returnExceptions: true });
      assert.deepEqual([values[0], values[2]], [0, 2]);
      assertDied(values[1], 1, restartHow);
      const parts = await broadcast.get({ ...T, returnExceptions: true });
      assert.deepEqual([parts[0], parts[2]], [0, 2]);
      assertDied(parts[1], 1, restartHow);
      assertDied(await queued.get(T).catch((e) => e), 1, restartHow);
      assert.deepEqual(died.map((d) => d.engineId), [1]);

      await waitUntil("engine 1 restarted", () => restarted.length === 1, 60_000);
      assert.equal(restarted[0].engineId, 1);
      assert.deepEqual(clientRestarted.map((r) => r.engineId), [1]);
      assert.deepEqual(
        await client.view(1).apply(() => [id, typeof x, typeof stale]).get(T),
        [1, "undefined", "undefined"],
      );
      assert.deepEqual(await client.view([0, 2]).pull("x", T), ["old", "old"]);
      assert.deepEqual(await client.broadcastView().apply(() => id).get(T), [0, 1, 2]);

      // The replacement is watched and replaced in its turn.
      cluster.kill(1);
      await waitUntil("engine 1 restarted again", () => restarted.length === 2, 60_000);
      assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2]);
      assert.deepEqual(died.map((d) => d.engineId), [1, 1]);
    },
  );
}, { timeoutMs: TEST_TIMEOUT_MS });

Deno.test({
  name: "Client fails calls on engines whose engine.ts process was SIGKILLed, with EngineDiedError",
  ignore: unavailable("redis") !== undefined,
  async fn() {
    await using redis = await openBackend("redis");
    await using engines = await startByHand(redis.url, 2);
    const died: number[] = [];
    engines.client.addEventListener("enginedied", (e) => {
      died.push((e as CustomEvent<{ engineId: number }>).detail.engineId);
    });
    const view = engines.client.view();
    assert.deepEqual(await view.apply(() => 1).get({ timeout: 10_000 }), [1, 1]);
    const ar = view.apply(() => new Promise((resolve) => setTimeout(resolve, 120_000)));
    engines.process.kill("SIGKILL");
    // The deadline only guards against a hang: detection itself takes about 2.5 s.
    const error = await ar.get({ timeout: 20_000 }).then(() => null, (e) => e);
    assert.ok(error instanceof CompositeError, String(error));
    assert.deepEqual(error.engineIds, [0, 1]);
    for (const e of error.errors) {
      assert.ok(e instanceof EngineDiedError);
      assert.match(e.message, /sent no heartbeat/);
    }
    assert.deepEqual(died.sort(), [0, 1]);
    // Later calls fail at once.
    const again = await view.apply(() => 1).get({ timeout: 1000 }).then(() => null, (e) => e);
    assert.ok(again instanceof CompositeError);
  },
});

Deno.test({
  name:
    "Client does not take an engine.ts host whose task computes for 5 s without yielding for dead",
  ignore: unavailable("redis") !== undefined,
  async fn() {
    await using redis = await openBackend("redis");
    await using engines = await startByHand(redis.url, 1);
    const busy = engines.client.view().apply(() => {
      const end = Date.now() + 5000;
      while (Date.now() < end) { /* busy */ }
      return true;
    });
    assert.deepEqual(await busy.get({ timeout: 30_000 }), [true]);
    assert.equal(engines.client.deadEngine(0), undefined);
  },
});

Deno.test("Cluster() checks heartbeatTimeoutMs", () => {
  assert.throws(() => new Cluster({ heartbeatTimeoutMs: 0 }), RangeError);
  assert.throws(() => new Cluster({ heartbeatTimeoutMs: Number.NaN }), RangeError);
  assert.throws(() => new Cluster({ heartbeatTimeoutMs: -5 }), RangeError);
});
