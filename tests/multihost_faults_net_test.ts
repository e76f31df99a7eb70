/**
 * Faults of engine machines on the network-namespace bed (`_netns.ts`): one machine's `engine.ts`
 * SIGKILLed while calls are in flight, the same `--host-id` on two machines, and two machines
 * whose hosts have the same PID (each in a PID namespace of its own, as containers are) with
 * default host ids. Skipped, saying why, where namespaces cannot be made (not root, no iproute2).
 *
 * @module
 */
import assert from "node:assert/strict";
import { STREAM_LEASE_MS } from "../actors/core/_lease.ts";
import { type Bed, type Driver, type DriverError, makeBed, netnsUnavailable } from "./_netns.ts";
import { PID_NAMESPACE, pidNamespaceUnavailable } from "./_multihost.ts";
import { connectAdmin } from "./_redis_server.ts";
import { delay, waitUntil, within } from "./_async.ts";

const why = await netnsUnavailable();
if (why) {
  // deno-lint-ignore no-console
  console.log(`multihost_faults_net_test.ts skipped: ${why}`);
}
const noPidNamespace = why ?? pidNamespaceUnavailable();
if (!why && noPidNamespace) {
  // deno-lint-ignore no-console
  console.log(`multihost_faults_net_test.ts: the PID-namespace case is skipped: ${noPidNamespace}`);
}

const IDS = [0, 1, 2, 3, 4, 5, 6, 7];
const FIRST = IDS.slice(0, 4);
const SECOND = IDS.slice(4);

/** Runs `fn` on a fresh bed of two engine machines (no delay), within `ms`. */
function bedTest(
  name: string,
  fn: (bed: Bed) => Promise<void>,
  options: { ms?: number; ignore?: boolean } = {},
): void {
  Deno.test({
    name,
    ignore: options.ignore ?? why !== undefined,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await using bed = await within(makeBed({ hosts: 2 }), 30_000, "the bed to be made");
      await within(fn(bed), options.ms ?? 90_000, name);
    },
  });
}

type Outcome = { value: unknown } | { error: DriverError };

/** `answer`'s value or error, and whether it came yet. */
function track(answer: Promise<unknown>): { ended: boolean; outcome: Promise<Outcome> } {
  const tracked = {
    ended: false,
    outcome: answer.then(
      (value): Outcome => ({ value }),
      (error: DriverError): Outcome => ({ error }),
    ).finally(() => (tracked.ended = true)),
  };
  return tracked;
}

/** The engines named by the `enginedied` (or `enginerestarted`) events the client dispatched. */
function seen(client: Driver, type: string): number[] {
  return client.events.filter((e) => e.event === type).map((e) => e.detail.engineId)
    .sort((a, b) => a - b);
}

/** `outcome`'s error, failing when it has a value. */
function errorOf(outcome: Outcome, what: string): DriverError {
  assert.ok("error" in outcome, `${what} answered ${JSON.stringify(outcome)}`);
  return outcome.error;
}

/**
 * Asserts `error` is what a broadcast over both machines ends with when engines `dead` died: its
 * root runs in the client (the engines span two hosts), so the live engines answer and the error
 * is a `CompositeError` of exactly one `EngineDiedError` for each dead engine.
 */
function assertDiedOn(error: DriverError, dead: readonly number[], what: string): void {
  const said = `${what}: ${error.name}: ${error.message}`;
  assert.equal(error.name, "CompositeError", said);
  assert.deepEqual(error.engineIds, dead, said);
  for (const [i, each] of error.errors!.entries()) {
    assert.equal(each.name, "EngineDiedError", said);
    assert.equal(each.engineId, dead[i], said);
    assert.match(each.message, new RegExp(`^Engine ${dead[i]} died`), said);
  }
}

/** The client's `connect` command that takes the engines registered so far (within 5 s). */
function connectRegistered(bed: Bed): Record<string, unknown> {
  return { ...bed.connect(0), n: undefined, timeout: 5000 };
}

/** The keys of `bed`'s cluster in its Redis. */
async function clusterKeys(bed: Bed): Promise<string[]> {
  await using admin = await within(connectAdmin(bed.adminUrl), 5000, "an admin connection");
  return (await within(admin.send(["KEYS", `${bed.cluster}:*`]), 5000, "KEYS") as string[])
    .map(String).sort();
}

bedTest(
  "SIGKILL of one machine's engine.ts while calls are in flight: exactly its engines die, their " +
    "calls fail with EngineDiedError, the other machine's engines go on, a later broadcast fails " +
    "typed, and nothing is left running or stored",
  async (bed) => {
    const survivor = bed.startHost(0, FIRST, 8);
    const victim = bed.startHost(1, SECOND, 8);
    const c = bed.driver();
    assert.deepEqual(await c.send(bed.connect(8)), IDS);
    assert.deepEqual(await c.send({ op: "call", kind: "id" }), IDS);
    assert.deepEqual(await c.send({ op: "call", kind: "broadcastId" }), IDS);

    const direct = IDS.map((engineId) =>
      track(c.send({ op: "call", kind: "id", engineId, sleepMs: 4000, timeout: 30_000 }))
    );
    const broadcast = track(
      c.send({ op: "call", kind: "broadcastId", sleepMs: 4000, timeout: 30_000 }),
    );
    await delay(1000);
    assert.ok([...direct, broadcast].every((t) => !t.ended), "the calls are still in flight");
    victim.child.kill("SIGKILL");
    const killedAt = performance.now();
    const status = await within(victim.child.status, 5000, "the killed engine.ts to end");
    assert.equal(status.signal, "SIGKILL");

    await waitUntil(
      () => `engines 4–7 declared dead, saw ${JSON.stringify(c.events)}`,
      () => seen(c, "enginedied").length >= 4,
      15_000,
    );
    const detectedMs = performance.now() - killedAt;
    assert.deepEqual(seen(c, "enginedied"), SECOND);

    const outcomes = await within(
      Promise.all(direct.map((t) => t.outcome)),
      30_000,
      "the in-flight DirectView calls",
    );
    for (const [engineId, outcome] of outcomes.entries()) {
      if (FIRST.includes(engineId)) {
        assert.deepEqual(outcome, { value: engineId }, `engine ${engineId}'s in-flight call`);
        continue;
      }
      const error = errorOf(outcome, `engine ${engineId}'s in-flight call`);
      assert.equal(error.name, "EngineDiedError", error.message);
      assert.equal(error.engineId, engineId, error.message);
      assert.match(error.message, new RegExp(`^Engine ${engineId} died`));
    }
    const inFlight = await within(broadcast.outcome, 30_000, "the in-flight broadcast");
    assertDiedOn(errorOf(inFlight, "the in-flight broadcast"), SECOND, "the in-flight broadcast");

    // The other machine's engines work, one by one and together; the dead ones fail at once.
    for (const engineId of FIRST) {
      assert.equal(await c.send({ op: "call", kind: "id", engineId, timeout: 10_000 }), engineId);
    }
    const dead = track(c.send({ op: "call", kind: "id", engineId: 5, timeout: 10_000 }));
    const onDead = errorOf(await within(dead.outcome, 15_000, "a call on engine 5"), "engine 5");
    assert.equal(onDead.name, "EngineDiedError", onDead.message);
    assert.equal(onDead.engineId, 5);
    const begun = performance.now();
    const after = track(c.send({ op: "call", kind: "broadcastId", timeout: 20_000 }));
    const spanning = await within(after.outcome, 30_000, "a broadcast over both machines");
    const broadcastMs = performance.now() - begun;
    assertDiedOn(errorOf(spanning, "the broadcast after the kill"), SECOND, "after the kill");

    // Still only the killed machine's engines are dead, and none came back.
    await delay(3000);
    assert.deepEqual(seen(c, "enginedied"), SECOND);
    assert.deepEqual(seen(c, "enginerestarted"), []);

    assert.equal(await c.send({ op: "shutdown", timeout: 10_000 }), null);
    const stopped = await within(survivor.child.status, 15_000, "the other engine.ts to stop");
    assert.equal(stopped.code, 0, survivor.stderr());
    for (const machine of bed.hosts) {
      await waitUntil(
        `no process left on ${machine.ns}`,
        async () => (await bed.pids(machine)).length === 0,
        5000,
      );
    }
    const stoppedAt = performance.now();
    let keys = await clusterKeys(bed);
    while (keys.length > 0 && performance.now() - stoppedAt < 2 * STREAM_LEASE_MS) {
      await delay(1000);
      keys = await clusterKeys(bed);
    }
    assert.deepEqual(keys, [], `keys of ${bed.cluster} left`);
    // deno-lint-ignore no-console
    console.log(
      `  deaths seen ${detectedMs.toFixed(0)} ms after the SIGKILL; the broadcast after it ` +
        `failed in ${broadcastMs.toFixed(0)} ms; keys gone ` +
        `${((performance.now() - stoppedAt) / 1000).toFixed(1)} s after the stop`,
    );
  },
  { ms: 90_000 + 2 * STREAM_LEASE_MS },
);

bedTest(
  "A second machine's engine.ts started with the --host-id of a live host on another machine is " +
    "refused, naming that host id; the first host keeps its engines",
  async (bed) => {
    const first = bed.startEngineTs(0, ["--n", "4", "--host-id", "same"]);
    const c = bed.driver();
    assert.deepEqual(await c.send(bed.connect(4)), FIRST);
    const second = bed.startEngineTs(1, ["--n", "4", "--first", "4", "--host-id", "same"]);
    const status = await within(second.child.status, 20_000, "the second host to be refused");
    assert.equal(status.code, 1, second.stderr());
    assert.match(
      second.stderr(),
      new RegExp(
        `a live host \\(pid ${first.child.pid}\\) has the host id "same" \\(engines 0, 1, 2, 3\\)`,
      ),
    );
    assert.match(second.stderr(), /--host-id/);
    assert.deepEqual(await bed.pids(bed.hosts[1]), []);
    assert.deepEqual(await c.send({ op: "hosts" }), FIRST.map(() => "same"));
    assert.deepEqual(await c.send({ op: "call", kind: "id" }), FIRST);
    // A client connecting now finds the first host's engines only.
    const fresh = bed.driver();
    assert.deepEqual(await fresh.send(connectRegistered(bed)), FIRST);
    assert.deepEqual(await fresh.send({ op: "call", kind: "broadcastId" }), FIRST);
    await fresh.send({ op: "close" });
    await c.send({ op: "close" });
  },
);

bedTest(
  "Of two machines' engine.ts started at once with the same --host-id, one is refused naming it, " +
    "and a client finds only the other's engines",
  async (bed) => {
    const hosts = [0, 1].map((i) =>
      bed.startEngineTs(i, ["--n", "4", "--first", String(4 * i), "--host-id", "same"])
    );
    const loser = await within(
      Promise.race(hosts.map((h, i) => h.child.status.then(() => i))),
      30_000,
      "one of the two hosts to be refused",
    );
    const { code } = await hosts[loser].child.status;
    assert.equal(code, 1, hosts[loser].stderr());
    assert.match(hosts[loser].stderr(), /host id "same"/);
    const winner = 1 - loser;
    const ids = winner === 0 ? FIRST : SECOND;
    assert.ok((await bed.pids(bed.hosts[winner])).length > 0, "the other host runs");
    const c = bed.driver();
    assert.deepEqual(await c.send(connectRegistered(bed)), ids);
    assert.deepEqual(await c.send({ op: "hosts" }), ids.map(() => "same"));
    assert.deepEqual(await c.send({ op: "call", kind: "id" }), ids);
    await c.send({ op: "close" });
  },
);

bedTest(
  "engine.ts hosts with the same PID on two machines (each PID 1 of a PID namespace) get distinct " +
    "default host ids, and every engine answers with its own id",
  async (bed) => {
    bed.startEngineTs(0, ["--n", "4"], PID_NAMESPACE);
    bed.startEngineTs(1, ["--n", "4", "--first", "4"], PID_NAMESPACE);
    const c = bed.driver();
    assert.deepEqual(await c.send(bed.connect(8)), IDS);
    const hostIds = await c.send({ op: "hosts" }) as string[];
    const [a, b] = [hostIds[0], hostIds[4]];
    assert.deepEqual(hostIds, [...FIRST.map(() => a), ...SECOND.map(() => b)]);
    assert.notEqual(a, b);
    // Same machine name (the namespaces share it) and the same pid: only the random part differs.
    for (const hostId of [a, b]) assert.match(hostId, /-1-[0-9a-f]{6}$/, hostId);
    assert.equal(a.slice(0, -7), b.slice(0, -7));
    for (const engineId of IDS) {
      assert.equal(await c.send({ op: "call", kind: "id", engineId }), engineId);
    }
    assert.deepEqual(await c.send({ op: "call", kind: "id" }), IDS);
    assert.deepEqual(await c.send({ op: "call", kind: "broadcastId" }), IDS);
    await c.send({ op: "close" });
  },
  { ignore: noPidNamespace !== undefined },
);
