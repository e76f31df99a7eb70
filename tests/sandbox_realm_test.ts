/**
 * Sandboxed engines run their tasks in a task realm (a Worker with exactly the granted
 * permissions): on a password-protected `redis-server`, with both launchers, a hostile task tries
 * what the issue reproduced on the host realm — (a) patch `node:net` `Socket.prototype.write` and
 * drop the host's connection to read its `AUTH` password, (b) patch `node:crypto` hash
 * prototypes and `WeakMap.prototype.get` to capture the HMAC states or the key, (c) talk to Redis
 * through the engines' net grant, (d) append a signed `execute` to an unsandboxed cluster sharing
 * the key — and gets nothing, while its neighbours go on answering. Normal sandboxed work (execute,
 * apply, push/pull, scatter/gather, a tree allreduce, a timeout, output capture) still runs.
 *
 * Each scenario runs in a child process (`deno run -A --unstable-worker-options
 * tests/sandbox_realm_test.ts <scenario> <launcher> <url> <dir>`, printing JSON): the `"worker"`
 * launcher's Worker permissions need that flag.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster, type TreeCommunicator, writeKeyFile } from "../mod.ts";
import { generateKey } from "../transport/envelope.ts";
import { TimeoutError } from "../errors.ts";
import { hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { within } from "./_async.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const com: TreeCommunicator;
declare const part: number[];
declare const offset: number;
declare const pwned: string;

const PASSWORD = "realm-Pa55word-x9";
const T = { timeout: 30_000 } as const;
const noRedis = hasRedisServer() ? undefined : "no redis-server on PATH";
const LIBRARY_ROOT = new URL("../", import.meta.url).href;

/** What the hostile task got from each attack. */
interface Loot {
  /** (a) The password parsed from an `AUTH` the host wrote, if it saw one. */
  password: string | null;
  /** (a) Every write of the host's sockets it saw, as text (the first 64 KiB). */
  written: string;
  /** (b) How many keyed hash states and 32-byte keys it captured. */
  hashStates: number;
  keys: number;
  /** (b) An HMAC computed with a captured state: a signature it could forge. */
  signature: string | null;
  /** (c) What Redis answered on its own connection, or the error's name. */
  redis: string;
  /** (d) What its `XADD`s to the other cluster's engine answered, or why none was sent. */
  dispatched: string;
}

/**
 * The hostile task, shipped as source: it tries (a)–(d) for `waitMs` while the test keeps the
 * host busy with a neighbour's calls, and says what it got.
 */
async function hostile(
  port: number,
  libraryRoot: string,
  target: string,
  waitMs: number,
): Promise<Loot> {
  const net = await import("node:net");
  const crypto = await import("node:crypto");
  const loot: Loot = {
    password: null,
    written: "",
    hashStates: 0,
    keys: 0,
    signature: null,
    redis: "",
    dispatched: "nothing to sign with",
  };
  const text = (chunk: unknown) =>
    typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk as Uint8Array);
  // (a) Read what the host writes; drop its socket once, so that it reconnects and authenticates.
  const socketProto = net.Socket.prototype as unknown as Record<string, unknown>;
  const write = socketProto.write as (...args: unknown[]) => boolean;
  let dropped = false;
  socketProto.write = function (this: { destroy(): void }, chunk: unknown, ...rest: unknown[]) {
    const written = text(chunk);
    if (loot.written.length < 65_536) loot.written += written;
    const auth = /AUTH\r\n\$\d+\r\n([^\r]*)\r\n(?:\$\d+\r\n([^\r]*)\r\n)?/.exec(written);
    if (auth) loot.password = auth[2] ?? auth[1];
    if (!dropped) {
      dropped = true;
      setTimeout(() => this.destroy(), 0);
    }
    return write.call(this, chunk, ...rest);
  };
  // (b) Keep the keyed hash states the host copies per signature, and the keys it looks up.
  const hashProto = Object.getPrototypeOf(crypto.createHash("sha256"));
  const copy = hashProto.copy;
  type Keyed = { copy(): { update(s: string): { digest(e: string): string } } };
  const states: Keyed[] = [];
  hashProto.copy = function (this: Keyed, ...args: unknown[]) {
    if (states.length < 8) states.push(this);
    return copy.apply(this, args);
  };
  const get = WeakMap.prototype.get;
  const keys: Uint8Array[] = [];
  WeakMap.prototype.get = function (this: WeakMap<WeakKey, unknown>, key: WeakKey) {
    if (key instanceof Uint8Array && key.byteLength >= 32 && keys.length < 8) keys.push(key);
    return get.call(this, key);
  };
  const until = Date.now() + waitMs;
  while (Date.now() < until && !(loot.password && states.length > 0)) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  socketProto.write = write;
  hashProto.copy = copy;
  WeakMap.prototype.get = get;
  loot.hashStates = states.length;
  loot.keys = keys.length;
  if (states.length > 0) loot.signature = states[0].copy().update("forged").digest("hex");
  // (c) and (d): Redis through the engines' net grant, with the password if (a) found it.
  const bulk = (part: string | Uint8Array) => {
    const bytes = typeof part === "string" ? new TextEncoder().encode(part) : part;
    return [new TextEncoder().encode(`$${bytes.byteLength}\r\n`), bytes, new Uint8Array([13, 10])];
  };
  const command = (...parts: (string | Uint8Array)[]) => {
    const chunks = [new TextEncoder().encode(`*${parts.length}\r\n`), ...parts.flatMap(bulk)];
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const chunk of chunks) out.set(chunk, at), at += chunk.byteLength;
    return out;
  };
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const ask = async (request: Uint8Array) => {
      await conn.write(request);
      const buffer = new Uint8Array(65_536);
      const n = await Promise.race([
        conn.read(buffer),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 1000)),
      ]);
      return n ? new TextDecoder().decode(buffer.subarray(0, n)) : "";
    };
    if (loot.password) loot.redis += await ask(command("AUTH", loot.password));
    loot.redis += await ask(command("KEYS", "*"));
    if (loot.password && keys.length > 0) {
      const { sealEnvelope } = await import(`${libraryRoot}transport/envelope.ts`);
      loot.dispatched = "";
      for (const key of keys) {
        const sealed = sealEnvelope({
          id: crypto.randomUUID(),
          type: "execute",
          from: "client.attacker",
          to: "engine.0",
          sent: Date.now(),
          content: { code: 'var pwned = "yes";' },
        }, key);
        loot.dispatched += await ask(command("XADD", `${target}:inbox:engine.0`, "*", "m", sealed));
      }
    }
    conn.close();
  } catch (error) {
    loot.redis += (error as Error).name;
  }
  return loot;
}

/** The attack scenario: prints the loot, what the neighbour answered meanwhile, and the target's. */
async function attackScenario(launcher: "worker" | "process", url: string, dir: string) {
  const keyFile = `${dir}/cluster.key`;
  await writeKeyFile(keyFile, generateKey());
  const port = Number(new URL(url).port);
  const netGrant = Deno.args[4] === "net";
  await using sandboxed = new Cluster({
    n: 2,
    hosts: 1,
    transport: url,
    launcher,
    keyFile,
    permissions: { read: [dir], ...(netGrant ? { net: [`127.0.0.1:${port}`] } : {}) },
    engineTimeout: 30_000,
    progress: false,
  });
  await using target = new Cluster({ n: 1, transport: url, keyFile, progress: false });
  const client = await sandboxed.startAndConnect();
  const targetClient = await target.startAndConnect();
  const attack = client.view(0).apply(hostile, port, LIBRARY_ROOT, target.namespace, 4000);
  const answered: number[] = [];
  let done = false;
  const finished = attack.get(T).finally(() => (done = true));
  while (!done) answered.push(await client.view(1).apply((n: number) => n * 2, 21).get(T));
  const loot = await finished;
  // A dispatch that verified would run before this pull: the engine handles its inbox in order.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const ran = await targetClient.view(0).apply(() => typeof pwned).get(T);
  const after = await client.view().apply(() => id).get(T);
  return { loot, answered: [...new Set(answered)], ran, after };
}

/** Normal sandboxed work: prints what each call gave. */
async function workScenario(launcher: "worker" | "process", url: string, dir: string) {
  await Deno.writeTextFile(`${dir}/input.txt`, "from a granted file");
  await using cluster = new Cluster({
    n: 4,
    hosts: 2,
    transport: url,
    launcher,
    permissions: { read: [dir] },
    engineTimeout: 30_000,
    progress: false,
  });
  const client = await cluster.startAndConnect();
  const view = client.view();
  await view.execute("const square = (x) => x * x; const mine = square(id);").get(T);
  const executed = await view.pull("mine").get(T);
  await view.push({ offset: 10 }).get(T);
  const applied = await view.apply((x: number) => x + offset + id, 1).get(T);
  const pushed = await view.pull("offset").get(T);
  await view.scatter("part", [1, 2, 3, 4, 5, 6, 7, 8]).get(T);
  await view.execute("part = part.map((x) => x * 10);").get(T);
  const gathered = await view.gather("part", T);
  const read = await view.apply((path: string) => Deno.readTextFile(path), `${dir}/input.txt`)
    .get(T);
  await view.wireTree(T);
  const sums = await view.apply(async () =>
    await com.allreduce((a: number, b: number) => a + b, id + 1)
  ).get(T);
  const ranks = await view.apply(() => [com.rank, com.size, com.isRoot]).get(T);
  const printing = view.apply(() => {
    // deno-lint-ignore no-console
    console.log(`out ${id}`);
    // deno-lint-ignore no-console
    console.error(`err ${id}`);
  });
  await printing.get(T);
  const timeout = await client.view(0).applyWith({ timeout: 1000 }, () => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
    return "late";
  }).get().then((value) => ({ value }), (error) => ({
    name: (error as Error).name,
    isTimeout: error instanceof TimeoutError,
    engineIds: (error as TimeoutError).engineIds,
  }));
  const afterTimeout = await client.view().apply(() => id).get(T);
  return {
    executed,
    applied,
    pushed,
    gathered,
    read,
    sums,
    ranks,
    stdout: printing.stdout,
    stderr: printing.stderr,
    timeout,
    afterTimeout,
  };
}

/**
 * What a task does to its realm: `Deno.exit()` and `self.close()` fail it, background errors are
 * reported, a queued call can be aborted, and under `restart` a task that blocks the realm past its
 * deadline gets its host replaced.
 */
async function guardScenario(launcher: "worker" | "process", url: string, dir: string) {
  await using cluster = new Cluster({
    n: 4,
    hosts: 2,
    transport: url,
    launcher,
    permissions: { read: [dir] },
    restart: true,
    engineTimeout: 30_000,
    progress: false,
  });
  const client = await cluster.startAndConnect();
  const reported: string[] = [];
  cluster.addEventListener("error", (event) => reported.push((event as ErrorEvent).message));
  const restarted: number[] = [];
  cluster.addEventListener("enginerestarted", (event) => {
    restarted.push((event as CustomEvent<{ engineId: number }>).detail.engineId);
  });
  const failure = (error: unknown) => ({
    name: (error as Error).name,
    remoteName: (error as { remoteName?: string }).remoteName,
    message: (error as Error).message,
  });
  const exit = await client.view(0).apply(() => Deno.exit(3)).get(T).catch(failure);
  const close = await client.view(0).apply(() =>
    (globalThis as unknown as { close(): void }).close()
  )
    .get(T).catch(failure);
  const background = await client.view(0).apply(() => {
    Promise.reject(new Error("rejected in the background"));
    setTimeout(() => {
      throw new Error("thrown from a timer");
    }, 10);
    return "returned";
  }).get(T);
  while (reported.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
  const running = client.view(0).apply(async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return "ran";
  });
  const queued = client.view(0).apply(() => "should not run");
  queued.abort();
  const abort = [await running.get(T), await queued.get(T).catch(failure)];
  await client.view().push({ kept: "yes" }, T);
  const stuck = client.view(0).applyWith({ timeout: 1000 }, () => {
    for (;;) { /* never yields */ }
  });
  const neighbour = client.view(1).apply(() => id);
  const overrun = [await stuck.get().catch(failure), await neighbour.get(T).catch(failure)];
  while (restarted.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
  return {
    exit,
    close,
    background,
    reported: reported.sort(),
    abort,
    overrun,
    restarted: restarted.sort(),
    after: await client.view().apply(() => id).get(T),
    kept: await client.view([2, 3]).pull("kept", T),
  };
}

if (import.meta.main) {
  const [scenario, launcher, url, dir] = Deno.args;
  const run = { attack: attackScenario, work: workScenario, guard: guardScenario }[scenario]!;
  const got = await run(launcher as "worker" | "process", url, dir);
  // deno-lint-ignore no-console
  console.log(JSON.stringify(got));
}

/** Runs `scenario` in a child process against a password-protected `redis-server`. */
async function inChild(
  scenario: string,
  launcher: string,
  extra: string[] = [],
): Promise<{ got: Record<string, unknown>; output: string }> {
  await using server = await startRedisServer({
    args: ["--loglevel", "warning", "--requirepass", PASSWORD],
  });
  const url = `redis://:${PASSWORD}@127.0.0.1:${server.port}`;
  const dir = await Deno.makeTempDir({ prefix: "deno-parallel-realm-" });
  try {
    const child = await within(
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--unstable-worker-options",
          new URL(import.meta.url).pathname,
          scenario,
          launcher,
          url,
          dir,
          ...extra,
        ],
        stdin: "null",
        env: { NO_COLOR: "1" },
      }).output(),
      120_000,
      `the ${scenario} scenario`,
    );
    const stdout = new TextDecoder().decode(child.stdout);
    const output = stdout + new TextDecoder().decode(child.stderr);
    assert.equal(child.code, 0, output);
    return { got: JSON.parse(stdout.trim().split("\n").at(-1)!), output };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The assertions of an attack scenario: the hostile task got nothing, the engines answered. */
function assertNothingLeaked(got: Record<string, unknown>, output: string, redis: RegExp): void {
  const loot = got.loot as Loot;
  assert.ok(!output.includes(PASSWORD), "the password showed in the scenario's output");
  assert.equal(loot.password, null, "(a) the task read the AUTH password");
  assert.equal(loot.written, "", "(a) the task saw the host's socket writes");
  assert.equal(loot.hashStates, 0, "(b) the task captured keyed hash states");
  assert.equal(loot.keys, 0, "(b) the task captured keys");
  assert.equal(loot.signature, null, "(b) the task computed a signature");
  assert.match(loot.redis, redis, "(c) Redis answered the task beyond NOAUTH");
  assert.equal(loot.dispatched, "nothing to sign with", "(d) the task sent a signed entry");
  assert.equal(got.ran, "undefined", "(d) the dispatch ran on the unsandboxed cluster");
  assert.deepEqual(got.answered, [42]);
  assert.deepEqual(got.after, [0, 1]);
}

for (const launcher of ["worker", "process"]) {
  Deno.test({
    name: `Sandboxed ${launcher} engine: a hostile task gets no password, HMAC state, Redis ` +
      "reply or signed dispatch, and its neighbour answers meanwhile",
    ignore: import.meta.main || noRedis !== undefined,
    async fn() {
      const { got, output } = await inChild("attack", launcher);
      assertNothingLeaked(got, output, /^NotCapable$/);
    },
  });
}

Deno.test({
  name: "Sandboxed process engine with a net grant to Redis: a hostile task gets only NOAUTH",
  ignore: import.meta.main || noRedis !== undefined,
  async fn() {
    const { got, output } = await inChild("attack", "process", ["net"]);
    assertNothingLeaked(got, output, /^-NOAUTH[^\n]*\r\n$/);
  },
});

for (const launcher of ["worker", "process"]) {
  Deno.test({
    name: `Sandboxed ${launcher} engine: execute, apply, push/pull, scatter/gather, allreduce, ` +
      "a timeout and output capture work in the task realm",
    ignore: import.meta.main || noRedis !== undefined,
    async fn() {
      const { got } = await inChild("work", launcher);
      assert.deepEqual(got, {
        executed: [0, 1, 4, 9],
        applied: [11, 12, 13, 14],
        pushed: [10, 10, 10, 10],
        gathered: [10, 20, 30, 40, 50, 60, 70, 80],
        read: Array(4).fill("from a granted file"),
        sums: [10, 10, 10, 10],
        ranks: [[0, 4, true], [1, 4, false], [2, 4, false], [3, 4, false]],
        stdout: ["out 0\n", "out 1\n", "out 2\n", "out 3\n"],
        stderr: ["err 0\n", "err 1\n", "err 2\n", "err 3\n"],
        timeout: { name: "TimeoutError", isTimeout: true, engineIds: [0] },
        afterTimeout: [0, 1, 2, 3],
      });
    },
  });
}

for (const launcher of ["worker", "process"]) {
  Deno.test({
    name: `Sandboxed ${launcher} engine: Deno.exit() and self.close() fail the task, background ` +
      "errors are reported, abort works, and restart replaces a host whose realm overran",
    ignore: import.meta.main || noRedis !== undefined,
    async fn() {
      const { got } = await inChild("guard", launcher);
      const refused = (what: string) => ({
        name: "RemoteError",
        remoteName: "NotCapable",
        message: `Task failed on engine 0: NotCapable: Cannot call ${what} in a task: it would ` +
          "end the engine host and every engine on it (return or throw from the task instead)",
      });
      assert.deepEqual(got.exit, refused("Deno.exit()"));
      assert.deepEqual(got.close, refused("self.close()"));
      assert.equal(got.background, "returned");
      const reported = got.reported as string[];
      assert.match(reported[0], /\(engines 0, 1\).*Uncaught \(in promise\) Error: rejected in the/);
      assert.match(reported[1], /\(engines 0, 1\).*Uncaught Error: thrown from a timer/);
      const [ran, aborted] = got.abort as [string, { name: string }];
      assert.deepEqual([ran, aborted.name], ["ran", "TaskAbortedError"]);
      const [stuck, neighbour] = got.overrun as { name: string; message: string }[];
      assert.equal(stuck.name, "TimeoutError");
      assert.equal(neighbour.name, "EngineDiedError");
      assert.match(neighbour.message, /a task of engine 0 blocked it \d+\.\d s past its call's/);
      assert.deepEqual(got.restarted, [0, 1]);
      assert.deepEqual(got.after, [0, 1, 2, 3]);
      assert.deepEqual(got.kept, ["yes", "yes"]);
    },
  });
}
