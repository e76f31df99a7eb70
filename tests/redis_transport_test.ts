/**
 * `RedisTransport` against its own `redis-server`: restarts with and without persistence, lost
 * servers, passwords, entries from foreign writers.
 */
import assert from "node:assert/strict";
import { createClient } from "../deps_redis.ts";
import { TransportClosedError } from "../errors.ts";
import { RedisTransport } from "../transport/redis.ts";
import type { Transport } from "../transport/types.ts";
import { hasRedisServer, startRedisServer, uniqueNamespace } from "./_redis_server.ts";
import { delay, waitUntil, within } from "./_async.ts";

const ignore = !hasRedisServer();
if (ignore) {
  // deno-lint-ignore no-console
  console.warn("RedisTransport server tests ignored: they need redis-server on PATH");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("Expected a rejection");
}

/** Every message of an error and its causes, with stacks, to search for leaked secrets. */
function describeDeep(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 10; depth++) {
    parts.push(String(e), e instanceof Error ? e.stack ?? "" : "");
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join("\n");
}

/**
 * An actor's inbox loop: read, handle (count the payload), ack. It survives what a host loop
 * must survive (`TransportClosedError` from a lost server) and dies on anything else.
 */
class ReaderLoop {
  readonly handled = new Map<string, number>();
  readonly closedErrors: TransportClosedError[] = [];
  readonly done: Promise<void>;
  #stopping = false;

  constructor(
    readonly transport: Transport,
    readonly stream: string,
    readonly handleMs = 0,
  ) {
    this.done = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      try {
        const entries = await this.transport.read("g", "c1", [this.stream], {
          count: 10,
          blockMs: 300,
        });
        for (const e of entries) {
          const m = decoder.decode(e.data ?? new Uint8Array());
          this.handled.set(m, (this.handled.get(m) ?? 0) + 1);
        }
        if (this.handleMs > 0) await delay(this.handleMs);
        if (entries.length > 0) {
          await this.transport.ack(
            this.stream,
            "g",
            entries.map((e) => e.id),
          );
        }
      } catch (error) {
        if (!(error instanceof TransportClosedError)) throw error;
        this.closedErrors.push(error);
        await delay(100);
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.done;
  }
}

function payloads(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

async function appendAll(t: Transport, stream: string, messages: string[]): Promise<void> {
  for (let i = 0; i < messages.length; i += 50) {
    const batch = messages.slice(i, i + 50).map((m) => ({ stream, data: encoder.encode(m) }));
    await t.appendMany(batch);
  }
}

/** Waits until `t` has both connections back: a blocking read sees an entry appended now. */
async function waitReconnected(t: Transport, stream: string): Promise<void> {
  await waitUntil(
    "an append to succeed",
    () => t.append(stream, encoder.encode("ping")).then(() => true, () => false),
    15_000,
  );
  const seen: string[] = [];
  await waitUntil("the transport to reconnect", async () => {
    const entries = await t.read("probe", "p", [stream], { blockMs: 100 });
    seen.push(...entries.map((e) => decoder.decode(e.data ?? new Uint8Array())));
    return seen.includes("ping");
  }, 15_000);
}

const options = { ignore, sanitizeOps: true, sanitizeResources: true };

Deno.test({
  ...options,
  name:
    "RedisTransport.read() loop survives a server kill and a restart with AOF on, losing no entry",
  async fn() {
    await using server = await startRedisServer({ appendonly: true });
    await using writer = await RedisTransport.connect(server.url);
    await using reader = await RedisTransport.connect(server.url);
    const s = `${uniqueNamespace()}:inbox`;
    const first = payloads("a", 200);
    await appendAll(writer, s, first);
    const loop = new ReaderLoop(reader, s, 10);
    try {
      await waitUntil("50 entries handled", () => loop.handled.size >= 50, 10_000);
      await server.kill();
      await delay(300);
      await server.start();
      await waitUntil("all 200 entries handled", () => loop.handled.size >= 200, 20_000);

      // The loop is now idle, blocked in read(): stop the server under it.
      await delay(400);
      await server.restart();
      const second = payloads("b", 50);
      await appendAll(writer, s, second);
      await waitUntil("the 50 new entries handled", () => loop.handled.size >= 250, 20_000);
    } finally {
      await loop.stop();
    }
    const sent = [...first, ...payloads("b", 50)];
    assert.deepEqual([...loop.handled.keys()].sort(), [...sent].sort());
    assert.ok([...loop.handled.values()].every((n) => n >= 1));
    assert.equal(await writer.backlog(s, "g"), 0);
    assert.equal((await writer.range(s)).length, 250);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.read() loop recreates its group after a restart that wiped the data",
  async fn() {
    await using server = await startRedisServer({ appendonly: false });
    await using writer = await RedisTransport.connect(server.url);
    await using reader = await RedisTransport.connect(server.url);
    const s = `${uniqueNamespace()}:inbox`;
    const loop = new ReaderLoop(reader, s);
    try {
      await appendAll(writer, s, payloads("old", 20));
      await waitUntil("20 entries handled", () => loop.handled.size >= 20, 10_000);
      await delay(400);
      await server.restart();
      await appendAll(writer, s, payloads("new", 20));
      await waitUntil("the 20 new entries handled", () => loop.handled.size >= 40, 20_000);
    } finally {
      await loop.stop();
    }
    assert.deepEqual(
      [...loop.handled.keys()].sort(),
      [...payloads("old", 20), ...payloads("new", 20)].sort(),
    );
    const kept = await writer.range(s);
    assert.deepEqual(kept.map((e) => decoder.decode(e.data ?? undefined)), payloads("new", 20));
    assert.equal(await writer.backlog(s, "g"), 0);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.read() after a reconnect returns the consumer's pending entries first",
  async fn() {
    await using server = await startRedisServer({ appendonly: true });
    await using t = await RedisTransport.connect(server.url);
    const s = `${uniqueNamespace()}:inbox`;
    await appendAll(t, s, ["p0", "p1", "p2"]);
    const taken = await t.read("g", "c1", [s], { blockMs: 0 });
    assert.equal(taken.length, 3);
    await server.restart();
    await t.append(s, encoder.encode("new"));
    const again = await t.read("g", "c1", [s], { blockMs: 1000 });
    assert.deepEqual(again.map((e) => e.id), taken.map((e) => e.id));
    assert.ok(again.every((e) => e.deliveries >= 2), "re-read entries count as redelivered");
    const next = await t.read("g", "c1", [s], { blockMs: 1000 });
    assert.deepEqual(next.map((e) => decoder.decode(e.data ?? undefined)), ["new"]);
    assert.equal(next[0].deliveries, 1);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport calls reject with TransportClosedError when the server stays away",
  async fn() {
    await using server = await startRedisServer();
    await using t = await RedisTransport.connect(server.url, { commandTimeoutMs: 1000 });
    const s = `${uniqueNamespace()}:inbox`;
    await t.read("g", "c1", [s], { blockMs: 0 });
    await server.stop();

    // The hang guards say that the calls end; how fast is for bench/.
    await assert.rejects(
      within(t.append(s, encoder.encode("x")), 20_000, "append() to give up"),
      TransportClosedError,
    );

    const outcome = await within(t.read("g", "c1", [s], { blockMs: 200 }), 20_000, "read()")
      .catch((e) => e);
    assert.ok(
      Array.isArray(outcome) && outcome.length === 0 || outcome instanceof TransportClosedError,
      `read() returned [] or rejected with TransportClosedError, got ${outcome}`,
    );

    await server.start();
    await waitReconnected(t, s);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.connect() authenticates from the URL and never shows the password",
  async fn() {
    const password = "s3cret-Pa55";
    await using server = await startRedisServer({ args: ["--requirepass", password] });
    const s = `${uniqueNamespace()}:inbox`;

    await using t = await RedisTransport.connect(`redis://:${password}@127.0.0.1:${server.port}`);
    assert.equal(t.url, `redis://:***@127.0.0.1:${server.port}`);
    await t.append(s, encoder.encode("hello"));
    const [entry] = await t.read("g", "c1", [s], { blockMs: 0 });
    assert.equal(decoder.decode(entry.data ?? undefined), "hello");

    await using named = await RedisTransport.connect(
      `redis://default:${password}@127.0.0.1:${server.port}/0`,
    );
    assert.equal(named.url, `redis://default:***@127.0.0.1:${server.port}/0`);
    assert.equal((await named.range(s)).length, 1);

    const wrong = "wr0ng-Pa55";
    const error = await rejection(
      RedisTransport.connect(`redis://:${wrong}@127.0.0.1:${server.port}`, {
        connectTimeoutMs: 5000,
      }),
    );
    assert.ok(error instanceof TransportClosedError, `got ${error}`);
    assert.ok(!describeDeep(error).includes(wrong), describeDeep(error));
    assert.match(error.message, /redis:\/\/:\*\*\*@127\.0\.0\.1/);

    const tls = await rejection(
      RedisTransport.connect(`rediss://:${password}@127.0.0.1:${server.port}`, {
        connectTimeoutMs: 1000,
      }),
    );
    assert.ok(tls instanceof TransportClosedError, `got ${tls}`);
    assert.ok(!describeDeep(tls).includes(password), describeDeep(tls));
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.read() gives data null to an entry without the payload field",
  async fn() {
    await using server = await startRedisServer();
    await using t = await RedisTransport.connect(server.url);
    const s = `${uniqueNamespace()}:inbox`;
    const stray = createClient({ url: server.url });
    stray.on("error", () => {});
    await stray.connect();
    try {
      await stray.sendCommand(["XADD", s, "*", "other", "field"]);
    } finally {
      stray.destroy();
    }
    await t.append(s, encoder.encode("good"));
    const entries = await t.read("g", "c1", [s], { blockMs: 0 });
    assert.deepEqual(entries.map((e) => e.data && decoder.decode(e.data)), [null, "good"]);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.close() rejects a blocked read() with TransportClosedError at once",
  async fn() {
    await using server = await startRedisServer();
    const t = await RedisTransport.connect(server.url);
    const reading = t.read("g", "c1", [`${uniqueNamespace()}:inbox`], { blockMs: 10_000 });
    await delay(100);
    await t.close();
    // A read that waited out its blockMs would resolve with [] instead.
    await assert.rejects(reading, TransportClosedError);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.read() calls made together take turns on the blocking connection",
  async fn() {
    await using server = await startRedisServer();
    await using t = await RedisTransport.connect(server.url);
    const ns = uniqueNamespace();
    const a = t.read("g", "c1", [`${ns}:a`], { blockMs: 2000 });
    const b = t.read("g", "c2", [`${ns}:b`], { blockMs: 2000 });
    await delay(100);
    await t.append(`${ns}:a`, encoder.encode("for a"));
    await t.append(`${ns}:b`, encoder.encode("for b"));
    const [gotA, gotB] = await Promise.all([a, b]);
    assert.deepEqual(gotA.map((e) => decoder.decode(e.data ?? undefined)), ["for a"]);
    assert.deepEqual(gotB.map((e) => decoder.decode(e.data ?? undefined)), ["for b"]);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.connect() rejects with TransportClosedError when no server answers",
  async fn() {
    const server = await startRedisServer();
    await server[Symbol.asyncDispose]();
    await assert.rejects(
      within(RedisTransport.connect(server.url, { connectTimeoutMs: 500 }), 20_000, "connect()"),
      TransportClosedError,
    );
    await assert.rejects(RedisTransport.connect("http://127.0.0.1:1"), TypeError);
  },
});

Deno.test({
  ...options,
  name:
    "RedisTransport.onDataLost() reports a restart without persistence once, before the next call",
  async fn() {
    const password = "s3cret-Pa55";
    await using server = await startRedisServer({ args: ["--requirepass", password] });
    const url = `redis://:${password}@127.0.0.1:${server.port}`;
    await using a = await RedisTransport.connect(url);
    await using b = await RedisTransport.connect(url);
    const s = `${uniqueNamespace()}:inbox`;
    const heard: Record<"a" | "b", string[]> = { a: [], b: [] };
    a.onDataLost((reason) => heard.a.push(reason));
    const off = b.onDataLost((reason) => heard.b.push(reason));
    await a.append(s, encoder.encode("before"));
    await server.restart();
    // Each transport checks on its own reconnect; the first to check sets the key again, and the
    // other still sees that it changed.
    await a.append(s, encoder.encode("after"));
    assert.equal(heard.a.length, 1, "a heard of the loss before its next call went on");
    await b.append(s, encoder.encode("after"));
    assert.equal(heard.b.length, 1, "b heard of the loss before its next call went on");
    const expected = new RegExp(
      `^Redis at 127\\.0\\.0\\.1:${server.port} restarted without its data \\(key ` +
        `"deno-parallel:epoch" was gone after a reconnect\\)$`,
    );
    assert.match(heard.a[0], expected);
    assert.match(heard.b[0], expected);
    assert.ok(!heard.a[0].includes(password));
    // Nothing more to report while the server keeps its data, even across a reconnect.
    await a.append(s, encoder.encode("more"));
    off();
    await server.restart();
    await a.append(s, encoder.encode("again"));
    await b.append(s, encoder.encode("again"));
    assert.equal(heard.a.length, 2);
    assert.equal(heard.b.length, 1, "a removed listener hears nothing");
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.onDataLost() reports nothing when Redis restarts with AOF on",
  async fn() {
    await using server = await startRedisServer({ appendonly: true });
    await using t = await RedisTransport.connect(server.url);
    const heard: string[] = [];
    t.onDataLost((reason) => heard.push(reason));
    const s = `${uniqueNamespace()}:inbox`;
    await t.append(s, encoder.encode("kept"));
    await server.restart();
    await t.append(s, encoder.encode("after"));
    await server.kill();
    await server.start();
    assert.equal((await t.range(s)).length, 2);
    assert.deepEqual(heard, []);
  },
});

Deno.test({
  ...options,
  name: "RedisTransport.onDataLost() reports a flush found by a read whose group vanished",
  async fn() {
    await using server = await startRedisServer();
    await using t = await RedisTransport.connect(server.url);
    const heard: string[] = [];
    t.onDataLost((reason) => heard.push(reason));
    const s = `${uniqueNamespace()}:inbox`;
    await t.append(s, encoder.encode("x"));
    assert.equal((await t.read("g", "c1", [s], { blockMs: 0 })).length, 1);
    // A group deleted alone is not a loss of the server's data.
    const admin = createClient({ url: server.url });
    admin.on("error", () => {});
    await admin.connect();
    try {
      await admin.sendCommand(["XGROUP", "DESTROY", s, "g"]);
      await t.append(s, encoder.encode("y"));
      assert.equal((await t.read("g", "c1", [s], { blockMs: 0 })).length, 2);
      await delay(200);
      assert.deepEqual(heard, []);
      await admin.sendCommand(["FLUSHALL"]);
      await t.append(s, encoder.encode("z"));
      assert.equal((await t.read("g", "c1", [s], { blockMs: 0 })).length, 1);
      await waitUntil("the loss to be reported", () => heard.length === 1, 5000);
      assert.match(
        heard[0],
        /^Redis at 127\.0\.0\.1:\d+ lost its data \(key "deno-parallel:epoch"/,
      );
    } finally {
      admin.destroy();
    }
  },
});
