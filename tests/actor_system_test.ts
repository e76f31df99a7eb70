/**
 * The actor core (`ActorSystem`), run on both transports: the embedded `MemoryTransport` always,
 * and `RedisTransport` against a private `redis-server` (or `REDIS_URL`).
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../actors/core/system.ts";
import { loadRedisClient } from "../deps.ts";
import { RemoteError, SerializationError, TimeoutError } from "../errors.ts";
import { type ClusterKey, generateKey, namespaceKey, sealEnvelope } from "../transport/envelope.ts";
import { MemoryTransport } from "../transport/memory.ts";
import type { Transport } from "../transport/types.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { alarm, delay, latch, waitUntil } from "./_async.ts";
import { type Backend, BACKENDS, forEachBackend, redisTest } from "./_backends.ts";
import {
  type ActorSystemOptions,
  type DeadLetterDetail,
  GROUP,
} from "../actors/core/system_types.ts";

/** What one test runs against: transports on one store, a key, and its own namespace. */
interface Fixture extends AsyncDisposable {
  readonly namespace: string;
  readonly key: ClusterKey;
  /** A new transport handle on the store (one per actor system, as one per process). */
  transport(): Promise<Transport>;
  /** A new actor system on its own transport, closed with the fixture. */
  system(
    options?: {
      id?: string;
      blockMs?: number;
      localDelivery?: boolean;
      keepLimit?: number;
      retainAckedMs?: number;
      deadLetters?: ActorSystemOptions["deadLetters"];
    },
  ): Promise<ActorSystem>;
  /** Writes an entry whose only field is not `m`, or `null` when the transport has no such thing. */
  appendForeignField?(stream: string): Promise<void>;
}

function fixtureOn(
  newTransport: () => Promise<Transport>,
  extra: {
    cleanup?: (namespace: string, transport: Transport) => Promise<void>;
    appendForeignField?: (stream: string) => Promise<void>;
  } = {},
): Fixture {
  const namespace = uniqueNamespace();
  const key = generateKey();
  const systems: ActorSystem[] = [];
  const transports: Transport[] = [];
  const fixture: Fixture = {
    namespace,
    key,
    async transport() {
      const t = await newTransport();
      transports.push(t);
      return t;
    },
    async system(options = {}) {
      const system = new ActorSystem({
        transport: await fixture.transport(),
        key,
        namespace,
        blockMs: options.blockMs ?? 200,
        localDelivery: options.localDelivery ?? false,
        keepLimit: options.keepLimit,
        ...(options.id ? { id: options.id } : {}),
        ...(options.retainAckedMs !== undefined ? { retainAckedMs: options.retainAckedMs } : {}),
        ...(options.deadLetters ? { deadLetters: options.deadLetters } : {}),
      });
      systems.push(system);
      return system;
    },
    ...(extra.appendForeignField ? { appendForeignField: extra.appendForeignField } : {}),
    async [Symbol.asyncDispose]() {
      for (const system of systems.reverse()) await system.close();
      if (extra.cleanup && transports[0]) await extra.cleanup(namespace, transports[0]);
      // Close the first handle last: on memory it owns the streams.
      for (const t of transports.reverse()) await t.close();
    },
  };
  return fixture;
}

function memoryFixture(): Promise<Fixture> {
  let owner: MemoryTransport | undefined;
  return Promise.resolve(fixtureOn(() => {
    const t = owner ? new MemoryTransport(owner) : (owner = new MemoryTransport());
    return Promise.resolve(t);
  }));
}

async function redisFixture(backend: Backend): Promise<Fixture> {
  const { url, server } = backend;
  const { RedisTransport } = await import("../transport/redis.ts");
  const inner = fixtureOn(() => RedisTransport.connect(url), {
    // A shared REDIS_URL outlives the test: remove what the test wrote.
    cleanup: (namespace, t) => server ? Promise.resolve() : t.deletePrefix(`${namespace}:`),
    appendForeignField: async (stream) => {
      const { createClient } = await loadRedisClient();
      const client = createClient({ url });
      await client.connect();
      try {
        await client.xAdd(stream, "*", { other: "not the m field" });
      } finally {
        client.destroy();
      }
    },
  });
  return inner;
}

/** One dead-letter entry, taken apart as `#deadLetter` in actors/system.ts lays it out. */
function parseDeadLetter(letter: Uint8Array): {
  record: { stream: string; id: string; reason: string; at: number; bytes: number };
  payload: Uint8Array;
} {
  const length = new DataView(letter.buffer, letter.byteOffset, letter.byteLength).getUint32(0);
  const record = JSON.parse(new TextDecoder().decode(letter.subarray(4, 4 + length)));
  return { record, payload: letter.subarray(4 + length) };
}

forEachBackend(BACKENDS, (backendCase) => {
  function test(title: string, fn: (fx: Fixture) => Promise<void>): void {
    backendCase(title, async (backend) => {
      await using fx = backend.kind === "memory"
        ? await memoryFixture()
        : await redisFixture(backend);
      await fn(fx);
    }, { timeoutMs: 120_000 });
  }

  test("ActorSystem.ask() returns the value the handler returns", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    host.spawn("calc", {
      handlers: {
        add: ({ a, b }: { a: number; b: number }) => a + b,
        echo: (content: unknown) => content,
        later: async (ms: number) => {
          await delay(ms);
          return "late";
        },
        nothing: () => {},
      },
    });
    assert.equal(await client.ask("calc", "add", { a: 2, b: 40 }), 42);
    const value = {
      bytes: new Float64Array([1.5, -2]),
      map: new Map([[1n, new Set(["x"])]]),
      nothing: undefined,
    };
    assert.deepEqual(await client.ask("calc", "echo", value), value);
    assert.equal(await client.ask("calc", "later", 20), "late");
    assert.equal(await client.ask("calc", "nothing"), undefined);
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.ask("calc", "add", { a: i, b: 1 })),
    );
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => i + 1));
  });

  test("ActorSystem with localDelivery hands messages between its actors, and their answers, without the transport", async (fx) => {
    const system = await fx.system({ localDelivery: true });
    const client = await fx.system();
    system.spawn("leaf", { handlers: { double: (n: number) => n * 2 } });
    system.spawn("relay", {
      handlers: {
        relay: async (n: number, ctx) => [await ctx.ask<number>("leaf", "double", n), ctx.self],
      },
    });
    assert.deepEqual(await client.ask("relay", "relay", 21), [42, "relay"]);
    // The relay's message came through the transport; the leaf's never did, nor its answer.
    const transport = await fx.transport();
    assert.equal((await transport.range(system.inboxOf("relay"))).length, 1);
    assert.equal((await transport.range(system.inboxOf("leaf"))).length, 0);
    assert.equal((await transport.range(system.inboxOf(system.replyAddress))).length, 0);
  });

  test("ActorSystem with localDelivery gives each actor its own copy, except between sharing actors", async (fx) => {
    const system = await fx.system({ localDelivery: true });
    const seen: unknown[] = [];
    const keep = (content: unknown) => {
      seen.push(content);
      (content as { n: number }).n++;
    };
    system.spawn("copier", { handlers: { keep } });
    system.spawn("sharer", { sharesContent: true, handlers: { keep } });
    system.spawn("sender", {
      sharesContent: true,
      handlers: {
        go: async (_: unknown, ctx) => {
          const value = { n: 1 };
          await ctx.send("copier", "keep", value);
          await ctx.send("sharer", "keep", value);
          await waitUntil("both handlers", () => seen.length === 2);
          return value;
        },
      },
    });
    // The copier changed its copy; the sharer was handed the sender's object itself.
    assert.deepEqual(await system.ask("sender", "go"), { n: 2 });
    assert.equal(seen.length, 2);
    assert.notEqual(seen[0], seen[1]);
    // What cannot go through the transport cannot go locally either.
    await assert.rejects(system.send("copier", "keep", { f: () => 1 }), SerializationError);
  });

  test("ActorSystem with localDelivery passes a handed-over content as it is, after checking it", async (fx) => {
    const system = await fx.system({ localDelivery: true });
    const seen: unknown[] = [];
    system.spawn("keeper", { handlers: { keep: (content: unknown) => void seen.push(content) } });
    const value = new Float64Array(4).fill(1);
    await system.send("keeper", "keep", value, { handOver: true });
    await system.send("keeper", "keep", value);
    await waitUntil("both messages", () => seen.length === 2);
    assert.equal(seen[0], value);
    assert.notEqual(seen[1], value);
    assert.deepEqual(seen[1], value);
    await assert.rejects(
      system.send("keeper", "keep", { f: () => 1 }, { handOver: true }),
      SerializationError,
    );
  });

  test("ActorSystem keeps at most keepLimit stored values, dropping the oldest tenth", async (fx) => {
    const system = await fx.system({ keepLimit: 10 });
    const transport = await fx.transport();
    const key = (i: number) => `${fx.namespace}:kept:${i}`;
    for (let i = 0; i < 25; i++) await system.store(key(i), `m${i}`, "note", i, 60_000);
    await waitUntil("the cull", async () => (await transport.getBlob(key(14))) === null);
    const left = [];
    for (let i = 0; i < 25; i++) if (await transport.getBlob(key(i)) !== null) left.push(i);
    assert.deepEqual(left, Array.from({ length: 10 }, (_, i) => 15 + i));
    assert.equal((await system.load(key(24)))?.content, 24);
  });

  test("ActorSystem.ask() works from the system that hosts the actor", async (fx) => {
    const system = await fx.system();
    system.spawn("self", { handlers: { hi: (who: string) => `hi ${who}` } });
    assert.equal(await system.ask("self", "hi", "me"), "hi me");
  });

  test("ActorContext.ask() lets a handler ask another actor and deferReply() answer later", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    host.spawn("leaf", { handlers: { double: (n: number) => n * 2 } });
    host.spawn("middle", {
      handlers: {
        quad: async (n: number, ctx) => 2 * await ctx.ask<number>("leaf", "double", n),
        deferred: (n: number, ctx) => {
          const reply = ctx.deferReply();
          setTimeout(() => reply(n < 0 ? { error: new RangeError("negative") } : { value: n }), 10);
          return "ignored";
        },
      },
    });
    assert.equal(await client.ask("middle", "quad", 5), 20);
    assert.equal(await client.ask("middle", "deferred", 7), 7);
    await assert.rejects(client.ask("middle", "deferred", -1), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.remoteName, "RangeError");
      return true;
    });
  });

  test("ActorSystem.ask() rejects with RemoteError when the handler throws", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    host.spawn("calc", {
      handlers: {
        fail: () => {
          throw new RangeError("value 7 is out of range");
        },
        failAsync: async () => {
          await delay(1);
          throw new TypeError("async failure");
        },
        throwString: () => {
          throw "a string";
        },
      },
    });
    host.spawn("engine.3", {
      handlers: {
        fail: () => {
          throw new Error("engine failure");
        },
      },
    });
    await assert.rejects(client.ask("calc", "fail"), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.address, "calc");
      assert.equal(e.engineId, -1);
      assert.equal(e.remoteName, "RangeError");
      assert.equal(e.remoteMessage, "value 7 is out of range");
      assert.match(e.remoteStack, /RangeError: value 7 is out of range/);
      assert.match(e.message, /actor "calc".*RangeError: value 7 is out of range/);
      return true;
    });
    await assert.rejects(client.ask("calc", "failAsync"), {
      name: "RemoteError",
      remoteName: "TypeError",
      remoteMessage: "async failure",
    });
    await assert.rejects(client.ask("calc", "throwString"), {
      name: "RemoteError",
      remoteName: "Error",
      remoteMessage: "non-Error thrown: a string",
    });
    await assert.rejects(client.ask("engine.3", "fail"), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.engineId, 3);
      assert.equal(e.address, "engine.3");
      return true;
    });
    // The actor keeps serving after a failure.
    host.spawn("after", { handlers: { ok: () => "still here" } });
    assert.equal(await client.ask("after", "ok"), "still here");
  });

  test("ActorSystem.ask() rejects with TimeoutError within the deadline when no actor answers", async (fx) => {
    const client = await fx.system();
    using deadline = alarm(290);
    await assert.rejects(client.ask("nobody", "hello", null, { timeout: 300 }), (e: unknown) => {
      assert.ok(e instanceof TimeoutError);
      assert.equal(e.timeoutMs, 300);
      assert.match(e.message, /"nobody".*"hello".*300 ms/);
      return true;
    });
    assert.ok(deadline.fired, "rejected before its deadline");
  });

  test("ActorSystem.ask() rejects with the signal's reason when aborted", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    const release = latch();
    let started = false;
    host.spawn("slow", {
      handlers: {
        wait: async () => {
          started = true;
          await release.done;
          return "done";
        },
      },
    });
    const controller = new AbortController();
    const asked = client.ask("slow", "wait", null, { signal: controller.signal, timeout: 10_000 });
    await waitUntil("the handler to start", () => started);
    const reason = new Error("caller gave up");
    controller.abort(reason);
    // The handler stays blocked until `release`: the rejection cannot have waited for it.
    await assert.rejects(asked, (e: unknown) => e === reason);
    // An already-aborted signal rejects at once, without waiting for the actor.
    await assert.rejects(
      client.ask("slow", "wait", null, { signal: AbortSignal.abort(new Error("before")) }),
      { message: "before" },
    );
    release.countDown();
    await host.idle();
  });

  test("ActorSystem runs an actor's ordinary messages one at a time, in order", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    const log: string[] = [];
    host.spawn("worker", {
      handlers: {
        step: async (i: number) => {
          log.push(`start ${i}`);
          await delay(i % 2 === 0 ? 25 : 5);
          log.push(`end ${i}`);
        },
      },
    });
    await client.sendMany(
      Array.from({ length: 6 }, (_, i) => ({ to: "worker", type: "step", content: i })),
    );
    await waitUntil("six messages handled", () => log.length === 12);
    assert.deepEqual(log, Array.from({ length: 6 }, (_, i) => [`start ${i}`, `end ${i}`]).flat());
    // Different actors are not serialized against each other.
    const release = latch();
    host.spawn("blocked", { handlers: { wait: () => release.done } });
    host.spawn("free", { handlers: { ping: () => "pong" } });
    const blocked = client.ask("blocked", "wait");
    assert.equal(await client.ask("free", "ping"), "pong");
    release.countDown();
    await blocked;
  });

  test("ActorSystem runs a control handler while an ordinary handler is still running", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    const release = latch();
    let finished = false;
    host.spawn("engine.0", {
      handlers: {
        long: async () => {
          await release.done;
          finished = true;
          return "long done";
        },
      },
      control: { heartbeat: () => ({ alive: true, busy: !finished }) },
    });
    const long = client.ask("engine.0", "long", null, { timeout: 10_000 });
    // Queue an ordinary message behind it too: the control message must overtake both.
    const queued = client.ask("engine.0", "long", null, { timeout: 10_000 });
    assert.deepEqual(await client.ask("engine.0", "heartbeat", null, { timeout: 2000 }), {
      alive: true,
      busy: true,
    });
    assert.equal(finished, false);
    release.countDown();
    assert.equal(await long, "long done");
    assert.equal(await queued, "long done");
  });

  test("ActorSystem acknowledges an entry only after its handler finishes", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    const release = latch();
    let started = false;
    host.spawn("worker", {
      handlers: {
        block: async () => {
          started = true;
          await release.done;
          return "ok";
        },
      },
    });
    const inbox = host.inboxOf("worker");
    const asked = client.ask("worker", "block", null, { timeout: 10_000 });
    await waitUntil("the handler to start", () => started);
    await delay(50); // an early ack would have landed by now
    assert.ok(await host.transport.backlog(inbox, GROUP) > 0, "acknowledged before handling");
    release.countDown();
    assert.equal(await asked, "ok");
    await waitUntil("the ack", async () => await host.transport.backlog(inbox, GROUP) === 0);
  });

  test("ActorSystem runs a message written twice (a write sent again after a lost reply) once", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    let runs = 0;
    host.spawn("worker", { handlers: { work: () => ++runs } });
    const inbox = host.inboxOf("worker");
    const answered = client.expectReply("twice-1", "worker", 10_000);
    const bytes = sealEnvelope({
      id: "twice-1",
      type: "work",
      from: client.replyAddress,
      to: "worker",
      replyTo: client.replyAddress,
      sent: Date.now(),
      content: null,
    }, namespaceKey(fx.key, fx.namespace));
    await client.transport.append(inbox, bytes);
    await client.transport.append(inbox, bytes);
    assert.equal(await answered, 1);
    await waitUntil(
      "both entries acknowledged",
      async () => await host.transport.backlog(inbox, GROUP) === 0,
    );
    // A later message with another id runs.
    assert.equal(await client.ask("worker", "work", null, { timeout: 10_000 }), 2);
    assert.equal(runs, 2);
  });

  test("ActorSystem does not run again an entry re-read while its ack was completing", async (fx) => {
    // The Redis transport re-reads a consumer's pending entries after each reconnect. When such a
    // re-read is on its way while an entry's handler finishes and its ack completes, the re-read
    // brings back an entry that is done. The transport below does that re-read on demand.
    const inner = await fx.transport();
    let reread: { issued: () => void; acked: Promise<void> } | undefined;
    let ackedNow = () => {};
    const transport = new Proxy(inner, {
      get(target, property) {
        if (property === "read") {
          return async (...args: Parameters<Transport["read"]>) => {
            const pending = reread;
            if (!pending) return await target.read(...args);
            reread = undefined;
            const [group, consumer, streams, options] = args;
            const own = await target.read(group, consumer, streams, {
              ...options,
              from: "0",
              blockMs: 0,
            });
            pending.issued();
            await pending.acked;
            await delay(20); // the reply of a real re-read comes after the ack's
            return own;
          };
        }
        if (property === "ack") {
          return async (...args: Parameters<Transport["ack"]>) => {
            await target.ack(...args);
            ackedNow();
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const host = new ActorSystem({ transport, key: fx.key, namespace: fx.namespace, blockMs: 50 });
    const client = await fx.system();
    try {
      let runs = 0;
      host.spawn("worker", {
        handlers: {
          job: async () => {
            runs++;
            if (runs > 1) return "again";
            // Hold this run until the next read has re-read the entry, still pending.
            const issued = latch();
            const acked = latch();
            ackedNow = acked.countDown;
            reread = { issued: issued.countDown, acked: acked.done };
            await issued.done;
            return "once";
          },
        },
      });
      assert.equal(await client.ask("worker", "job", null, { timeout: 10_000 }), "once");
      await delay(300); // several reads: a second run would have started
      assert.equal(runs, 1);
    } finally {
      await host.close();
    }
  });

  test("ActorSystem does not run again an entry whose ack failed, and acknowledges it later", async (fx) => {
    // Redis stopped between a handler's end and its XACK: the ack fails, the entry stays pending
    // (with AOF it survives the restart), and the re-read of pending entries after the reconnect
    // brings it back. It is done: it must be acknowledged, not handled again. The transport below
    // fails the first ack of the actor's inbox and re-reads the pending entries at the next read after that.
    const inner = await fx.transport();
    let failAcks = 1;
    let rereadNext = false;
    let inbox = "";
    const transport = new Proxy(inner, {
      get(target, property) {
        if (property === "read") {
          return async (...args: Parameters<Transport["read"]>) => {
            if (!rereadNext) return await target.read(...args);
            rereadNext = false;
            const [group, consumer, streams, options] = args;
            return await target.read(group, consumer, streams, { ...options, from: "0" });
          };
        }
        if (property === "ack") {
          return async (...args: Parameters<Transport["ack"]>) => {
            if (failAcks > 0 && args[0] === inbox) {
              failAcks--;
              rereadNext = true;
              throw new Error("Cannot acknowledge entries: the server went away");
            }
            await target.ack(...args);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const host = new ActorSystem({ transport, key: fx.key, namespace: fx.namespace, blockMs: 50 });
    host.addEventListener("error", () => {});
    inbox = host.inboxOf("worker");
    const client = await fx.system();
    try {
      let runs = 0;
      host.spawn("worker", { handlers: { job: () => ++runs } });
      assert.equal(await client.ask("worker", "job", null, { timeout: 10_000 }), 1);
      await waitUntil("the ack that failed to be tried again", () => failAcks === 0 && !rereadNext);
      await delay(300); // several reads: a second run would have started
      assert.equal(runs, 1);
      await waitUntil("the ack", async () => await inner.backlog(inbox, GROUP) === 0);
    } finally {
      await host.close();
    }
  });

  test("ActorSystem answers a reply value that cannot be serialized with a RemoteError", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    host.spawn("bad", {
      handlers: {
        fn: () => ({ result: () => 1 }),
        circular: () => {
          const a: Record<string, unknown> = {};
          a.self = a;
          return a;
        },
      },
    });
    // A RemoteError, not the asks' TimeoutError: the asker was told, it did not wait.
    await assert.rejects(client.ask("bad", "fn", null, { timeout: 5000 }), (e: unknown) => {
      assert.ok(e instanceof RemoteError, `expected RemoteError, got ${e}`);
      assert.equal(e.remoteName, "SerializationError");
      assert.match(e.remoteMessage, /\.result/);
      assert.match(e.remoteMessage, /function/);
      return true;
    });
    await assert.rejects(client.ask("bad", "circular", null, { timeout: 5000 }), {
      name: "RemoteError",
      remoteName: "SerializationError",
    });
  });

  test("ActorSystem.ask() throws SerializationError for content it cannot send", async (fx) => {
    const client = await fx.system();
    await assert.rejects(client.ask("anyone", "x", { f: () => 1 }), {
      name: "SerializationError",
      path: "$.f",
    });
    await assert.rejects(client.send("anyone", "x", [Symbol("s")]), {
      name: "SerializationError",
    });
    assert.equal((await client.transport.range(client.inboxOf("anyone"))).length, 0);
  });

  test("ActorSystem dead-letters a message of unknown type and tells the asker", async (fx) => {
    const host = await fx.system();
    const client = await fx.system();
    const letters: DeadLetterDetail[] = [];
    host.addEventListener("deadletter", (e) => letters.push((e as CustomEvent).detail));
    host.spawn("worker", { handlers: { known: () => 1 } });
    await assert.rejects(
      client.ask("worker", "nope", { x: 1 }, { timeout: 5000 }),
      (e: unknown) => {
        assert.ok(e instanceof RemoteError);
        assert.equal(e.remoteName, "TypeError");
        assert.match(e.remoteMessage, /no handler for "nope"/);
        return true;
      },
    );
    assert.equal(letters.length, 1);
    assert.equal(letters[0].error.name, "InvalidMessageError");
    assert.equal(letters[0].error.stream, host.inboxOf("worker"));
    assert.match(letters[0].error.message, /unknown message type "nope"/);
    // A message type inherited from Object.prototype is unknown too.
    await assert.rejects(client.ask("worker", "toString", null, { timeout: 5000 }), {
      name: "RemoteError",
    });
    await waitUntil(
      "two dead letters",
      async () => (await host.transport.range(host.deadLetterStream)).length === 2,
    );
    const [first] = await host.transport.range(host.deadLetterStream);
    const { record, payload } = parseDeadLetter(first.data!);
    assert.equal(record.stream, host.inboxOf("worker"));
    assert.match(record.reason, /unknown message type "nope"/);
    assert.equal(typeof record.at, "number");
    assert.ok(payload.byteLength > 33, "the dead letter keeps the original entry");
    assert.equal(await client.ask("worker", "known"), 1);
    await waitUntil(
      "the inbox to drain",
      async () => await host.transport.backlog(host.inboxOf("worker"), GROUP) === 0,
    );
  });

  test("ActorSystem dead-letters 2,000 garbage entries and keeps serving", async (fx) => {
    // The inbox's history is compared with the dead letters at the end, however long it takes,
    // and every letter is kept (the stream holds about 1,000 by default).
    const host = await fx.system({ retainAckedMs: Infinity, deadLetters: { maxLen: 10_000 } });
    const client = await fx.system();
    let events = 0;
    const reasons = new Map<string, number>();
    host.addEventListener("deadletter", (e) => {
      events++;
      const reason = (e as CustomEvent<DeadLetterDetail>).detail.error.message
        .replace(/^.*?: /, "").replace(/\d+/g, "N");
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    });
    let handled = 0;
    host.spawn("target", { handlers: { good: (n: number) => (handled++, n + 1) } });
    assert.equal(await client.ask("target", "good", 1), 2);
    const inbox = host.inboxOf("target");

    const random: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) {
      const bytes = new Uint8Array(Math.floor(Math.random() * 300));
      crypto.getRandomValues(bytes);
      if (i % 2 === 0 && bytes.length > 0) bytes[0] = 1; // the right version byte
      random.push(bytes);
    }
    const otherKey = generateKey();
    const forged: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) {
      forged.push(sealEnvelope({
        id: `forged-${i}`,
        type: "good",
        from: "intruder",
        to: "target",
        replyTo: client.replyAddress,
        sent: Date.now(),
        content: i,
      }, otherKey));
    }
    const writer = await fx.transport();
    const all = [...random, ...forged];
    await writer.append(inbox, all[0]);
    for (let i = 1; i < all.length; i += 250) {
      await writer.appendMany(all.slice(i, i + 250).map((data) => ({ stream: inbox, data })));
    }
    let total = all.length;
    if (fx.appendForeignField) {
      for (let i = 0; i < 3; i++) await fx.appendForeignField(inbox);
      total += 3;
    }

    await waitUntil(`${total} "deadletter" events`, () => events >= total, 20_000);
    await waitUntil(
      `${total} dead-letter entries`,
      async () => (await host.transport.range(host.deadLetterStream)).length >= total,
      10_000,
    );
    const letters = await host.transport.range(host.deadLetterStream);
    assert.equal(letters.length, total);
    assert.equal(events, total);
    assert.ok(
      (reasons.get("signature does not verify") ?? 0) >= 1000,
      `reasons: ${JSON.stringify([...reasons])}`,
    );
    if (fx.appendForeignField) assert.equal(reasons.get("entry has no payload field"), 3);

    // Each dead letter records its source entry and its size, and keeps its first 1 KiB.
    const sources = await host.transport.range(inbox);
    const byId = new Map(sources.map((e) => [e.id, e.data]));
    for (const letter of letters) {
      const { record, payload } = parseDeadLetter(letter.data!);
      assert.equal(record.stream, inbox);
      const source = byId.get(record.id) ?? new Uint8Array(0);
      assert.equal(record.bytes, source.byteLength);
      assert.deepEqual(payload, source.subarray(0, 1024));
    }

    // No forged message ran, the actor still serves, and everything was acknowledged.
    assert.equal(handled, 1);
    assert.equal(await client.ask("target", "good", 41), 42);
    assert.equal(handled, 2);
    await waitUntil(
      "the inbox to drain",
      async () => await host.transport.backlog(inbox, GROUP) === 0,
    );
  });

  test("ActorSystem deletes acknowledged entries of its streams once retainAckedMs passed", async (fx) => {
    const host = await fx.system({ retainAckedMs: 300 });
    const client = await fx.system({ retainAckedMs: 300 });
    const keeper = await fx.system({ retainAckedMs: 60_000 });
    host.spawn("echo", { handlers: { echo: (n: number) => n } });
    keeper.spawn("kept", { handlers: { echo: (n: number) => n } });
    const n = 50;
    const asks = Array.from({ length: n }, (_, i) => client.ask("echo", "echo", i));
    assert.deepEqual(await Promise.all(asks), Array.from({ length: n }, (_, i) => i));
    assert.deepEqual(
      await Promise.all(Array.from({ length: n }, (_, i) => client.ask("kept", "echo", i))),
      Array.from({ length: n }, (_, i) => i),
    );
    const entries = async (system: ActorSystem, address: string) =>
      (await system.transport.range(system.inboxOf(address))).length;
    // The inbox and the client's reply inbox empty out; nothing is left pending.
    await waitUntil(
      "the inbox and the reply inbox to be trimmed",
      async () =>
        await entries(host, "echo") === 0 && await entries(client, client.replyAddress) === 0,
    );
    // The counts include the wake-ups of the systems' readers.
    assert.ok(host.stats.trimmed >= n, `host trimmed ${host.stats.trimmed}`);
    assert.ok(client.stats.trimmed >= 2 * n, `client trimmed ${client.stats.trimmed}`);
    assert.equal(await host.transport.backlog(host.inboxOf("echo"), GROUP), 0);
    // Entries younger than retainAckedMs stay, though acknowledged and past a trim.
    await delay(1500);
    assert.equal(await entries(keeper, "kept"), n);
    assert.equal(keeper.stats.trimmed, 0);
    // Trimmed streams go on as before.
    assert.equal(await client.ask("echo", "echo", 7), 7);
    for (const system of [host, client, keeper]) {
      assert.equal(system.stats.waiting, 0);
      await waitUntil("no entry in flight", () => system.stats.inFlight === 0);
    }
  });

  test("ActorSystem.idle() resolves every caller waiting at once", async (fx) => {
    const host = await fx.system();
    const release = latch();
    let started = false;
    host.spawn("worker", {
      handlers: {
        block: async () => {
          started = true;
          await release.done;
        },
      },
    });
    await host.send("worker", "block");
    await waitUntil("the handler to start", () => started);
    const waits = [host.idle().then(() => "first"), host.idle().then(() => "second")];
    release.countDown();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      Promise.all(waits),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve("timed out"), 2000))),
    ]);
    clearTimeout(timer);
    assert.deepEqual(outcome, ["first", "second"]);
  });

  test("ActorSystem.close() fails open asks with TransportClosedError", async (fx) => {
    const client = await fx.system();
    const asked = client.ask("nobody", "x", null, { timeout: 10_000 });
    const rejected = assert.rejects(asked, { name: "TransportClosedError" });
    await delay(20);
    await client.close();
    await rejected;
  });
});

/**
 * A system that closed while a handler was still running leaves that entry pending; a new system
 * under the same id must handle it once, not once per read. Returns how many times it ran.
 */
async function restartUnderSameId(transports: () => Promise<Transport>): Promise<number[]> {
  const key = generateKey();
  const namespace = uniqueNamespace();
  const first = await transports();
  const a = new ActorSystem({ transport: first, key, namespace, id: "fixed", blockMs: 100 });
  let started = false;
  a.spawn("worker", {
    handlers: {
      job: () => {
        started = true;
        return new Promise(() => {}); // never finishes: the entry stays pending
      },
    },
  });
  await a.send("worker", "job");
  while (!started) await delay(5);
  await a.close();
  const second = await transports();
  const b = new ActorSystem({ transport: second, key, namespace, id: "fixed", blockMs: 100 });
  let runs = 0;
  b.spawn("worker", {
    handlers: {
      job: async () => {
        runs++;
        await delay(100);
      },
    },
  });
  await delay(600);
  const afterRestart = runs;
  await b.send("worker", "job");
  await delay(300);
  const afterNew = runs;
  await b.idle();
  await b.close();
  await second.deletePrefix(`${namespace}:`);
  await second.close();
  await first.close();
  return [afterRestart, afterNew];
}

Deno.test("ActorSystem handles a pending entry once after a restart under the same id (memory)", async () => {
  // Run in a child process: if the reader spins on the pending entry without yielding to timers,
  // it starves this process's event loop, and only a kill from outside ends it.
  const code = `
    import { MemoryTransport } from ${
    JSON.stringify(import.meta.resolve("../transport/memory.ts"))
  };
    import { restartUnderSameId } from ${JSON.stringify(import.meta.url)};
    let owner;
    const runs = await restartUnderSameId(async () =>
      owner ? new MemoryTransport(owner) : (owner = new MemoryTransport())
    );
    console.log(JSON.stringify(runs));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  });
  const { success, stdout, stderr } = await child.output();
  const out = new TextDecoder().decode(stdout).trim();
  assert.ok(
    success,
    `the child did not finish (killed after 15 s: event loop starved?)\n${
      new TextDecoder().decode(stderr)
    }`,
  );
  assert.deepEqual(JSON.parse(out.split("\n").at(-1)!), [1, 2]);
});

redisTest(
  "ActorSystem handles a pending entry once after a restart under the same id (redis)",
  async (redis) => {
    const { RedisTransport } = await import("../transport/redis.ts");
    assert.deepEqual(await restartUnderSameId(() => RedisTransport.connect(redis.url)), [1, 2]);
  },
);

// The memory variant's child process imports the scenario from this file (outside `deno test`,
// the file's Deno.test calls register nothing).
export { restartUnderSameId };
