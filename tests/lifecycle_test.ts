/**
 * Call lifecycle (issue 6, items 4 and 5): results fetched by call id from a new client
 * (`Client.getResult`, `Client.fetchResult`), `AsyncResult.abort()`, `AbortSignal`s, and call
 * deadlines enforced by the engines. Run on the embedded transport and on a private
 * `redis-server` (or `REDIS_URL` when no server binary is installed).
 *
 * Functions shipped to the engines are written here but run there: the names they use freely
 * (`id`) are declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../actors/core/system.ts";
import { Client } from "../actors/client/client.ts";
import {
  Cluster,
  type ClusterKey,
  type ClusterOptions,
  CompositeError,
  generateKey,
  InvalidMessageError,
  RemoteError,
  ResultNotFoundError,
  TaskAbortedError,
  TaskError,
  TimeoutError,
} from "../mod.ts";
import { alarm, delay, within } from "./_async.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;

/** Options for every call made here: no wait goes without a deadline. */
const T = { timeout: 15_000 } as const;
/** The deadline of one whole test. */
const TEST_TIMEOUT_MS = 90_000;

/** What a test gets: a started cluster of two engines, its client, key and transport URL. */
interface Fixture {
  readonly cluster: Cluster;
  readonly client: Client;
  readonly key: ClusterKey;
  readonly url: string;
}

/** A task that marks its engine's global object: it must never run when it was cancelled. */
function sideEffect(): string {
  (globalThis as { lifecycleMark?: string }).lifecycleMark = "ran";
  return "ran";
}

/** Reads the mark `sideEffect` leaves, on every engine of `client`. */
function marks(client: Client): Promise<unknown[]> {
  return client.view().apply(() => (globalThis as { lifecycleMark?: string }).lifecycleMark ?? "")
    .get(T);
}

/**
 * Starts the client's broadcast actors, with a long deadline: the first Worker of a test run may
 * wait for Deno to type-check its modules.
 */
async function startBroadcasts(client: Client): Promise<void> {
  assert.deepEqual(await client.broadcastView().apply(() => id).get({ timeout: 60_000 }), [0, 1]);
}

/** A task that holds its engine for `ms`. */
async function sleep(ms: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return "slept";
}

/** A task that never ends. */
function forever(): Promise<never> {
  return new Promise(() => {});
}

/**
 * A second client of the cluster, as after a restart: `Cluster.connect()` on Redis; on the
 * embedded transport (which lives in this process) a `Client` on its own actor system.
 */
async function newClient(fx: Fixture): Promise<Client> {
  if (fx.url.startsWith("redis")) {
    return await Cluster.connect({
      transport: fx.url,
      cluster: fx.cluster.namespace,
      key: fx.key,
      n: 2,
      timeout: 20_000,
    });
  }
  const system = new ActorSystem({
    transport: fx.client.transport,
    key: fx.key,
    namespace: fx.cluster.namespace,
  });
  const hosts = new Map(fx.client.ids.map((id) => [id, fx.client.hostOf(id)]));
  return new Client({ system, hosts, key: fx.key, transportUrl: fx.url });
}

forEachBackend(BACKENDS, (backendCase) => {
  function test(
    title: string,
    fn: (fx: Fixture) => Promise<void>,
    extra: ClusterOptions = {},
  ): void {
    backendCase(title, async (backend) => {
      const key = generateKey();
      await using cluster = new Cluster({
        n: 2,
        hosts: 2,
        key,
        transport: backend.url,
        progress: false,
        engineTimeout: 20_000,
        ...extra,
      });
      const client = await cluster.startAndConnect();
      await fn({ cluster, client, key, url: backend.url });
    }, { timeoutMs: TEST_TIMEOUT_MS });
  }

  test("Client.getResult() fetches DirectView and BroadcastView calls by id from a new client", async (fx) => {
    const { client } = fx;
    await startBroadcasts(client);
    const reversed = client.view([1, 0]);
    const direct = reversed.apply((x: number) => {
      // deno-lint-ignore no-console -- the task prints on purpose
      console.log("hello from", id);
      return x * 10 + id;
    }, 4);
    assert.deepEqual(await direct.get(T), [41, 40]);
    const failed = client.view(0).apply(function failing() {
      throw new RangeError("kept");
    });
    await assert.rejects(failed.get(T), RemoteError);
    const bv = client.broadcastView();
    const broadcast = bv.apply(() => id * 2);
    assert.deepEqual(await broadcast.get(T), [0, 2]);
    // A tree on one host: its node there keeps the answer, not the engine.
    const onOneHost = client.broadcastView([1]).apply(() => id * 3);
    assert.deepEqual(await onOneHost.get(T), [3]);
    const pulled = reversed.pull("id");
    assert.deepEqual(await pulled.get(T), [1, 0]);
    const pulledList = reversed.pull(["id", "size"]);
    assert.deepEqual(await pulledList.get(T), [[1, 2], [0, 2]]);
    const executed = bv.execute("const kept = id + 100;");
    await executed.get(T);

    // The client that made the calls goes away; another one takes its place.
    await client.close();
    const other = await newClient(fx);
    try {
      assert.deepEqual(await other.getResult(direct.id, T), [41, 40]);
      const fetched = await other.fetchResult(direct.id);
      assert.equal(fetched.id, direct.id);
      assert.equal(fetched.type, "apply");
      assert.deepEqual(fetched.engineIds, [1, 0]);
      assert.deepEqual(await fetched.result.get(T), [41, 40]);
      assert.deepEqual(fetched.result.stdout, ["hello from 1\n", "hello from 0\n"]);
      assert.deepEqual(fetched.result.timings.map((t) => t.engineId), [1, 0]);
      assert.deepEqual(fetched.result.timings, direct.timings);
      assert.deepEqual(await other.getResult(broadcast.id, T), [0, 2]);
      assert.deepEqual(await other.getResult(onOneHost.id, T), [3]);
      assert.deepEqual(await other.getResult(pulled.id, T), [1, 0], "pull of one name, unwrapped");
      assert.deepEqual(await other.getResult(pulledList.id, T), [[1, 2], [0, 2]]);
      assert.deepEqual(await other.getResult(executed.id, T), [undefined, undefined]);
      const error = await other.getResult(failed.id, T).catch((e) => e);
      assert.ok(error instanceof RemoteError, String(error));
      assert.equal(error.engineId, 0);
      assert.equal(error.remoteName, "RangeError");
      assert.equal(error.remoteMessage, "kept");

      // Unknown ids fail with a typed error; bad ones with TypeError.
      const unknown = crypto.randomUUID();
      const missing = await other.getResult(unknown).catch((e) => e);
      assert.ok(missing instanceof ResultNotFoundError, String(missing));
      assert.equal(missing.id, unknown);
      assert.match(missing.message, new RegExp(unknown));
      await assert.rejects(other.fetchResult(`${direct.id}_0`), ResultNotFoundError);
      await assert.rejects(other.getResult(""), TypeError);
      await assert.rejects(other.getResult(42 as unknown as string), TypeError);

      // The engines go on, for the new client, whose calls can be fetched as well.
      const next = other.broadcastView().apply(() => id + 1);
      assert.deepEqual(await next.get(T), [1, 2]);
      assert.deepEqual(await other.view().pull("kept", T), [100, 101]);
      assert.deepEqual(await other.getResult(next.id, T), [1, 2]);
    } finally {
      await other.close();
    }
  });

  test("Client.getResult() fetches load-balanced and partitioned maps by id from a new client", async (fx) => {
    const { client } = fx;
    const lview = client.loadBalancedView();
    const f = (x: number) => {
      if (x === 4) throw new RangeError("no fours");
      return x * 10;
    };
    const xs = Array.from({ length: 10 }, (_, i) => i);
    // Item 4 fails on its first try and on its retry (a message of its own).
    const mapped = lview.map(f, xs, { chunksize: 3, retries: 1 });
    const local = await mapped.get({ ...T, returnExceptions: true });
    const applied = lview.apply(
      (a: number, b: number) => {
        // deno-lint-ignore no-console -- the task prints on purpose
        console.log("adding on", id);
        return a + b;
      },
      2,
      3,
    );
    assert.equal(await applied.get(T), 5);
    const direct = client.view().map((x: number) => x + 1, xs);
    assert.deepEqual(await direct.get(T), xs.map((x) => x + 1));
    const broadcast = client.broadcastView().map(f, xs);
    await broadcast.get({ ...T, returnExceptions: true });

    await client.close();
    const other = await newClient(fx);
    try {
      const values = await other.getResult(mapped.id, {
        ...T,
        returnExceptions: true,
      }) as unknown[];
      assert.deepEqual(values.filter((_, i) => i !== 4), local.filter((_, i) => i !== 4));
      const error = values[4] as TaskError;
      assert.ok(error instanceof TaskError, String(error));
      assert.equal(error.index, 4);
      assert.equal(error.remoteMessage, "no fours");
      await assert.rejects(other.getResult(mapped.id, T), TaskError);
      const fetched = await other.fetchResult(mapped.id);
      assert.equal(fetched.type, "map");
      await fetched.tasks!.get({ ...T, returnExceptions: true });
      assert.deepEqual(fetched.tasks!.attempts, mapped.attempts);
      assert.deepEqual(fetched.tasks!.engineIds, mapped.engineIds);
      assert.equal(await other.getResult(applied.id, T), 5);
      const fetchedApply = await other.fetchResult(applied.id);
      await fetchedApply.tasks!.get(T);
      assert.equal(fetchedApply.tasks!.stdout[0], `adding on ${applied.engineId}\n`);
      assert.deepEqual(await other.getResult(direct.id, T), xs.map((x) => x + 1));
      const partitioned = await other.getResult(broadcast.id, { ...T, returnExceptions: true });
      assert.deepEqual(
        (partitioned as unknown[]).map((v) =>
          v instanceof TaskError ? `${v.index}@${v.engineId}` : v
        ),
        xs.map((x) => (x === 4 ? `4@${broadcast.engineIds[4]}` : x * 10)),
      );
    } finally {
      await other.close();
    }
  });

  test("Client.getResult() of a call past its retention rejects with ResultNotFoundError", async (
    { client },
  ) => {
    await startBroadcasts(client);
    const direct = client.view().apply(() => id);
    const broadcast = client.broadcastView().apply(() => id);
    assert.deepEqual(await direct.get(T), [0, 1]);
    assert.deepEqual(await broadcast.get(T), [0, 1]);
    // Within the retention they are found...
    assert.deepEqual(await client.getResult(direct.id, T), [0, 1]);
    assert.deepEqual(await client.getResult(broadcast.id, T), [0, 1]);
    await delay(3500);
    // ...and after it they are gone, with a typed error.
    for (const ar of [direct, broadcast]) {
      const error = await client.getResult(ar.id, T).catch((e) => e);
      assert.ok(error instanceof ResultNotFoundError, String(error));
      assert.equal(error.id, ar.id);
    }
    assert.deepEqual(await client.view().apply(() => id * 3).get(T), [0, 3]);
  }, { resultRetention: 3000 });

  test("Client.fetchResult() of a call still running waits for the engines' results", async ({ client }) => {
    const ar = client.view([1, 0]).apply(sleep, 1500);
    const fetched = await client.fetchResult(ar.id);
    assert.deepEqual(fetched.engineIds, [1, 0]);
    assert.equal(fetched.result.ready(), false);
    assert.deepEqual(await fetched.result.get(T), ["slept", "slept"]);
    assert.deepEqual(await ar.get(T), ["slept", "slept"]);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
  });

  test("Client.getResult() refuses a kept value that was changed or moved", async ({ client, cluster }) => {
    const a = client.view().apply(() => `a${id}`);
    const b = client.view().apply(() => `b${id}`);
    assert.deepEqual(await a.get(T), ["a0", "a1"]);
    assert.deepEqual(await b.get(T), ["b0", "b1"]);
    const { transport } = client;
    const ns = cluster.namespace;
    // Engine 0's answer to `b` copied over its answer to `a`: signed, but not this call's.
    const moved = await transport.getBlob(`${ns}:result:${b.id}_0`);
    assert.ok(moved !== null, "engine 0 kept its answer");
    await transport.putBlob(`${ns}:result:${a.id}_0`, moved, 60_000);
    const values = await client.getResult(a.id, { ...T, returnExceptions: true }) as unknown[];
    assert.ok(values[0] instanceof InvalidMessageError, String(values[0]));
    assert.equal(values[1], "a1");
    // One byte changed: the signature no longer verifies.
    const changed = (await transport.getBlob(`${ns}:result:${b.id}_1`))!.slice();
    changed[changed.length - 1] ^= 1;
    await transport.putBlob(`${ns}:result:${b.id}_1`, changed, 60_000);
    const error = await client.getResult(b.id, T).catch((e) => e);
    assert.ok(error instanceof InvalidMessageError, String(error));
    assert.match(error.message, /signature/);
    // A call record written without the key.
    await transport.putBlob(`${ns}:call:forged`, new TextEncoder().encode("{}"), 60_000);
    await assert.rejects(client.getResult("forged"), InvalidMessageError);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
  });

  test("ClusterOptions.resultRetention: 0 keeps nothing; bad values throw RangeError", async (
    { client },
  ) => {
    const ar = client.view().apply(() => id);
    assert.deepEqual(await ar.get(T), [0, 1]);
    await assert.rejects(client.getResult(ar.id, T), ResultNotFoundError);
    assert.throws(() => new Cluster({ resultRetention: -1 }), RangeError);
    assert.throws(() => new Cluster({ resultRetention: 1.5 }), RangeError);
  }, { resultRetention: 0 });

  test("AsyncResult.abort() skips a DirectView or BroadcastView call queued behind a slow task", async ({ client }) => {
    const dv = client.view();
    const bv = client.broadcastView();
    await startBroadcasts(client);

    for (const view of [dv, bv]) {
      const slow = dv.apply(sleep, 1500);
      const queued = view.apply(sideEffect);
      queued.abort();
      const values = await queued.get({ ...T, returnExceptions: true });
      values.forEach((value, i) => {
        assert.ok(value instanceof TaskAbortedError, `${view.constructor.name}: ${value}`);
        assert.equal(value.engineId, i);
        assert.match(value.message, new RegExp(`engine ${i}`));
      });
      const thrown = await queued.get(T).catch((e) => e);
      assert.ok(thrown instanceof CompositeError, String(thrown));
      assert.ok(thrown.errors.every((e) => e instanceof TaskAbortedError));
      // The slow task was not affected, and its engines take the next call.
      assert.deepEqual(await slow.get(T), ["slept", "slept"]);
      assert.deepEqual(await view.apply(() => id).get(T), [0, 1]);
      assert.deepEqual(await marks(client), ["", ""], `${view.constructor.name} ran the task`);
      // The kept result says so too.
      const kept = await client.getResult(queued.id, { ...T, returnExceptions: true }) as unknown[];
      assert.ok(kept.every((e) => e instanceof TaskAbortedError));
    }
  });

  test("CallOptions.signal of apply and execute rejects at once and the engines skip the call", async ({ client }) => {
    const dv = client.view();
    const bv = client.broadcastView();
    await startBroadcasts(client);

    const calls = [
      (signal: AbortSignal) => dv.applyWith({ signal }, sideEffect),
      (signal: AbortSignal) => bv.applyWith({ signal }, sideEffect),
      (signal: AbortSignal) => dv.execute("globalThis.lifecycleMark = 'ran'", { signal }),
      (signal: AbortSignal) => bv.execute("globalThis.lifecycleMark = 'ran'", { signal }),
    ];
    // Aborted at once (before or just after it is sent), or once it is queued on the engines.
    for (const [i, call] of calls.entries()) {
      for (const wait of [0, 300]) {
        const what = `call ${i} aborted after ${wait} ms`;
        const slow = dv.apply(sleep, 2000);
        const controller = new AbortController();
        const ar = call(controller.signal);
        if (wait) await delay(wait);
        const reason = new Error(what);
        controller.abort(reason);
        // Rejected with the signal's reason while the engines are still busy with the slow task.
        const error = await ar.get(T).catch((e) => e);
        assert.equal(error, reason, what);
        assert.equal(slow.ready(), false, `${what}: waited for the slow task`);
        assert.deepEqual(await slow.get(T), ["slept", "slept"]);
        assert.deepEqual(await dv.apply(() => id).get(T), [0, 1]);
        assert.deepEqual(await marks(client), ["", ""], `${what}: it ran`);
        // The engines skipped it (or it was never sent).
        const kept = await client.getResult(ar.id, { ...T, returnExceptions: true })
          .catch((e) => e);
        if (wait === 0 && kept instanceof ResultNotFoundError) continue;
        assert.ok(Array.isArray(kept), `${what}: ${kept}`);
        assert.ok(kept.every((e) => e instanceof TaskAbortedError), `${what}: ${kept}`);
      }
    }

    // get({ signal }) cancels the call as well.
    const slow = dv.apply(sleep, 2000);
    const ar = dv.apply(sideEffect);
    const controller = new AbortController();
    const waiting = ar.get({ ...T, signal: controller.signal });
    controller.abort();
    const error = await waiting.catch((e) => e);
    assert.equal(error.name, "AbortError");
    assert.equal(slow.ready(), false);
    const values = await ar.get({ ...T, returnExceptions: true });
    assert.ok(values.every((v) => v instanceof TaskAbortedError), String(values));
    await slow.get(T);
    assert.deepEqual(await marks(client), ["", ""]);

    // A signal aborted before the call sends nothing at all.
    const already = dv.applyWith({ signal: AbortSignal.abort(new Error("early")) }, sideEffect);
    await assert.rejects(already.get(T), /early/);
    assert.deepEqual(await marks(client), ["", ""]);

    // A running task cannot be stopped: the client stops waiting, the engine finishes it.
    const controller2 = new AbortController();
    const running = dv.applyWith({ signal: controller2.signal }, sleep, 500);
    await delay(100);
    controller2.abort();
    await assert.rejects(running.get(T), (e: Error) => e.name === "AbortError");
    assert.deepEqual(await dv.apply(() => id).get(T), [0, 1]);
    assert.deepEqual(await client.getResult(running.id, T), ["slept", "slept"]);
  });

  test("CallOptions.timeout ends a task that awaits forever with TimeoutError; the engine goes on", async ({ client }) => {
    const dv = client.view();
    const bv = client.broadcastView();
    await startBroadcasts(client);

    for (const view of [dv, bv]) {
      using deadline = alarm(900);
      const ar = view.applyWith({ timeout: 1000 }, forever);
      const error = await within(ar.get(), 1000 + 10_000, "the deadline").catch((e) => e);
      assert.ok(error instanceof TimeoutError, `${view.constructor.name}: ${error}`);
      assert.deepEqual(error.engineIds, [0, 1]);
      assert.ok(deadline.fired, "not before the deadline");
      // The engines are not stuck: they stopped waiting for the task at its deadline.
      assert.deepEqual(await view.apply(() => id * 5).get(T), [0, 5]);
      const kept = await client.getResult(ar.id, { ...T, returnExceptions: true }) as unknown[];
      kept.forEach((value, i) => {
        assert.ok(value instanceof TimeoutError, String(value));
        assert.deepEqual(value.engineIds, [i]);
        assert.match(value.message, new RegExp(`engine ${i}: it did not finish within`));
      });
    }

    // One engine late: only it is named.
    const one = dv.applyWith({ timeout: 1000 }, async (ms: number) => {
      if (id === 1) await new Promise(() => {});
      await new Promise((resolve) => setTimeout(resolve, ms));
      return id;
    }, 0);
    const values = await one.get({ ...T, returnExceptions: true });
    assert.equal(values[0], 0);
    assert.ok(values[1] instanceof TimeoutError);
    assert.deepEqual((values[1] as unknown as TimeoutError).engineIds, [1]);
    const single = await one.get(T).catch((e) => e);
    assert.ok(single instanceof TimeoutError);
    assert.deepEqual(single.engineIds, [1]);
  });

  test("CallOptions.timeout: a task still queued at its deadline is not started", async ({ client }) => {
    const dv = client.view();
    const bv = client.broadcastView();
    await startBroadcasts(client);
    for (const view of [dv, bv]) {
      const slow = dv.apply(sleep, 2000);
      const late = view.applyWith({ timeout: 300 }, sideEffect);
      const error = await late.get(T).catch((e) => e);
      assert.ok(error instanceof TimeoutError, String(error));
      assert.deepEqual(error.engineIds, [0, 1]);
      assert.deepEqual(await slow.get(T), ["slept", "slept"]);
      assert.deepEqual(await view.apply(() => id).get(T), [0, 1]);
      assert.deepEqual(await marks(client), ["", ""], `${view.constructor.name} started it`);
      const kept = await client.getResult(late.id, { ...T, returnExceptions: true }) as unknown[];
      for (const value of kept) {
        assert.ok(value instanceof TimeoutError, String(value));
        assert.match(value.message, /not started/);
      }
    }
  });

  test("CallOptions with a bad timeout or signal throw before anything is sent", async ({ client }) => {
    const dv = client.view();
    assert.throws(() => dv.applyWith({ timeout: -5 }, sideEffect), RangeError);
    assert.throws(() => dv.applyWith({ timeout: Number.NaN }, sideEffect), RangeError);
    assert.throws(
      () => dv.execute("1", { signal: "stop" as unknown as AbortSignal }),
      TypeError,
    );
    assert.throws(() => client.broadcastView().push({ a: 1 }, { timeout: 0 }), RangeError);
    assert.deepEqual(await marks(client), ["", ""]);
    assert.deepEqual(await dv.apply(() => id).get(T), [0, 1]);
  });
});
