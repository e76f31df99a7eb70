/**
 * What users porting IPython Parallel code rely on (issue 17): views on one engine answer bare
 * values, a running cluster is not stopped by a second start, closures fail with a message that
 * says why, values arrive equal or fail before sending, and the pieces IPython users reach for.
 * Run on the embedded transport and on a private `redis-server` (or `REDIS_URL` when no server
 * binary is installed).
 *
 * Functions shipped to the engines are written here but run there: the names they use freely
 * (`id`, values pushed earlier) are declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Client,
  Cluster,
  type ClusterOptions,
  ClusterStateError,
  ClusterStoppedError,
  CompositeError,
  generateKey,
  ModuleFunction,
  RemoteError,
  SerializationError,
  TaskAbortedError,
  TimeoutError,
} from "../mod.ts";
import { BACKENDS, forEachBackend, redisTest } from "./_backends.ts";
import { within } from "./_async.ts";
import { startByHand } from "./_engine_process.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const a: number;
declare const fromFile: number;
declare const base: string;
declare function square(x: number): number;

/** Options for every call made here: no wait goes without a deadline. */
const T = { timeout: 15_000 } as const;
/** The deadline of one whole test. */
const TEST_TIMEOUT_MS = 60_000;

/** What a test gets: a started cluster of three engines and its client. */
interface Fixture {
  readonly cluster: Cluster;
  readonly client: Client;
  /** The cluster's options, to start another cluster like it. */
  readonly options: ClusterOptions;
}

forEachBackend(BACKENDS, (backendCase) => {
  function test(title: string, fn: (fx: Fixture) => Promise<void>): void {
    backendCase(title, async (backend) => {
      const options: ClusterOptions = {
        n: 3,
        hosts: 2,
        transport: backend.url,
        progress: false,
        engineTimeout: 20_000,
      };
      await using cluster = new Cluster(options);
      const client = await cluster.startAndConnect();
      await fn({ cluster, client, options });
    }, { timeoutMs: TEST_TIMEOUT_MS });
  }

  test("client.view(2) and client.broadcastView(2) answer bare values; a list of one id keeps lists", async ({ client }) => {
    await client.view().execute("var a = 3450 + id", T);
    for (const make of [(t: number) => client.view(t), (t: number) => client.broadcastView(t)]) {
      const one = make(2);
      assert.equal(await one.pull("a", T), 3452);
      assert.equal(one.shape, "one");
      assert.equal(await one.apply(() => 42).get(T), 42);
      assert.equal(await one.apply((x: number) => x + a, 1), 3453);
      assert.deepEqual(await one.pull(["a", "id"], T), [3452, 2]);
      assert.equal(await one.execute("var b = a + 1", T), undefined);
      assert.equal(await one.push({ c: 7 }, T), undefined);
      assert.deepEqual(await one.apply(() => id).getDict(T), { 2: 2 }, "getDict keeps its shape");
      const failed = await one.apply(() => {
        throw new RangeError("one");
      }).get({ ...T, returnExceptions: true });
      assert.ok(failed instanceof Error, String(failed));
      assert.equal(await one.gather("a", T).then((v) => JSON.stringify(v)), "[3452]");

      const listed = client.view([2]);
      assert.equal(listed.shape, "list");
      assert.deepEqual(await listed.pull("a", T), [3452]);
      assert.deepEqual(await listed.apply(() => 42).get(T), [42]);
      assert.deepEqual(await client.broadcastView([2]).pull("b", T), [3453]);
    }
    // Fetched by id, a one-engine call keeps its shape.
    const ar = client.view(1).apply(() => id * 10);
    assert.equal(await ar.get(T), 10);
    assert.equal(await client.getResult(ar.id, T), 10);
    assert.deepEqual(await client.getResult(client.view([1]).apply(() => id * 10).id, T), [10]);
  });

  test("a function using a variable of its closure fails naming it and saying how to ship it", async ({ client }) => {
    const factor = 3;
    const error = await client.view(1).apply((x: number) => x * factor, 2).get(T).catch((e) => e);
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteName, "ReferenceError");
    assert.match(error.remoteMessage, /^factor is not defined/);
    assert.match(error.remoteMessage, /functions ship as their source, without their closure/);
    assert.match(error.remoteMessage, /push the value \(view\.push\(\{ factor \}\)\)/);
    const all = await client.broadcastView().apply((x: number) => x * factor, 2).get(T)
      .catch((e) => e);
    assert.ok(all instanceof CompositeError, String(all));
    assert.match(all.message, /factor is not defined.*without their closure/);
    // Pushed, or passed as an argument, it works.
    await client.view().push({ factor }, T);
    assert.deepEqual(await client.view().apply((x: number) => x * factor, 2).get(T), [6, 6, 6]);
    assert.equal(await client.view(0).apply((x: number, f: number) => x * f, 2, factor), 6);
  });

  test("a Cluster whose key file is missing says which file, and how to make one", async ({ options }) => {
    const path = `${await Deno.makeTempDir()}/missing.key`;
    try {
      const error = await new Cluster({ ...options, keyFile: path }).startAndConnect()
        .catch((e) => e);
      assert.ok(error instanceof Deno.errors.NotFound, String(error));
      assert.equal(
        error.message,
        `Cannot read key file "${path}": no such file ` +
          `(write one with writeKeyFile("${path}"))`,
      );
    } finally {
      await Deno.remove(path.replace(/\/missing\.key$/, ""), { recursive: true });
    }
  });

  test("values arrive as themselves, on the engines and back, through apply, push and pull", async ({ client }) => {
    const sticky = /a(b)?c/gy;
    sticky.lastIndex = 1;
    const value = {
      regExp: sticky,
      date: new Date(5),
      url: new URL("https://h.example/p?q=1#f"),
      set: new Set([1, "a"]),
      map: new Map<unknown, unknown>([[1, { x: 2n }], ["k", [undefined]]]),
      errors: [
        Object.assign(new RangeError("r", { cause: new TypeError("t") }), {
          code: "E_R",
          status: 500,
        }),
        new Deno.errors.NotFound("nf"),
        new AggregateError([new SyntaxError("s")], "agg"),
      ],
      big: -(2n ** 70n),
      typed: [new Float32Array([1.5, -2]), new BigInt64Array([3n]), new Uint8Array([4])],
      buffer: new Uint8Array([1, 2, 3]).buffer,
      view: new DataView(new Uint8Array([7, 8, 9]).buffer, 1),
      nested: [[1, [2, [3, [-0]]]], { deep: { list: [undefined, null, NaN] } }],
      // deno-lint-ignore no-sparse-arrays
      sparse: [1, , 3],
    };
    const kinds = (v: typeof value) => [
      v.regExp instanceof RegExp && v.regExp.lastIndex,
      v.url instanceof URL && v.url.searchParams.get("q"),
      v.errors[0] instanceof RangeError && v.errors[0].cause instanceof TypeError,
      v.errors[1] instanceof Deno.errors.NotFound,
      v.errors[2] instanceof AggregateError && v.errors[2].errors[0] instanceof SyntaxError,
      v.view instanceof DataView && v.view.getUint8(0),
      v.sparse.length === 3 && !(1 in v.sparse),
      typeof v.big,
    ];
    const expected = [1, "1", true, true, true, 8, true, "bigint"];
    for (const view of [client.view(1), client.broadcastView(1)]) {
      assert.deepEqual(await view.apply((v: typeof value) => v, value).get(T), value);
      assert.deepEqual(await view.apply(kinds, value).get(T), expected);
      await view.push({ stored: value }, T);
      assert.deepEqual(await view.pull("stored", T), value);
    }
    assert.deepEqual(await client.loadBalancedView().apply(kinds, value).get(T), expected);
  });

  test("a class instance fails before sending, naming its path and class, on the way there and back", async ({ client }) => {
    class Point {
      constructor(readonly x: number, readonly y: number) {}
      norm(): number {
        return Math.hypot(this.x, this.y);
      }
    }
    const point = new Point(3, 4);
    const refused = async (call: () => PromiseLike<unknown>) => {
      const error = await (async () => await call())().catch((e) => e);
      assert.ok(error instanceof SerializationError, String(error));
      assert.match(error.message, /an instance of Point cannot be sent/);
      return error;
    };
    for (const view of [client.view(1), client.view(), client.broadcastView(1)]) {
      const viaApply = await refused(() => view.apply((p: Point) => p.norm(), { point }).get(T));
      assert.equal(viaApply.path, "$.args[0].point");
      const viaPush = await refused(() => view.push({ sent: 1, point }, T).get());
      assert.equal(viaPush.path, "$.values.point");
    }
    function* counter() {
      yield 1;
    }
    for (const [value, kind] of [[new Headers(), "Headers"], [counter(), "Generator|Object"]]) {
      const error = await (async () => await client.view(0).apply((v: unknown) => v, [value]))()
        .catch((e) => e);
      assert.ok(error instanceof SerializationError, String(error));
      assert.equal(error.path, "$.args[0][0]");
      assert.match(error.message, new RegExp(`an instance of (${kind}) cannot be sent`));
    }
    await refused(() => client.loadBalancedView().apply((p: Point) => p, [point]).get(T));
    await refused(() => client.loadBalancedView().map((p: Point) => p, [1, point]).get(T));
    assert.deepEqual(
      await client.view().apply(() => typeof globalThis["sent" as keyof typeof globalThis]).get(T),
      ["undefined", "undefined", "undefined"],
      "nothing of a refused push reached an engine",
    );
    // Its fields, sent as plain data, arrive.
    assert.equal(
      await client.view(0).apply((p: { x: number; y: number }) => p.x + p.y, { ...point }),
      7,
    );
    // A task returning one fails with the engine's SerializationError.
    const back = await client.view(2).apply(() =>
      new (class Celsius {
        degrees = 21;
      })()
    ).get(T).catch((e) => e);
    assert.ok(back instanceof RemoteError, String(back));
    assert.equal(back.remoteName, "SerializationError");
    assert.match(back.remoteMessage, /an instance of Celsius cannot be sent/);
  });

  test("view.run(path) runs a script file on the engines, as IPython Parallel's run", async ({ client }) => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/setup.js`;
      await Deno.writeTextFile(
        path,
        'import { basename } from "node:path";\nvar fromFile = id * 2;\n' +
          'function square(x) {\n  return x * x;\n}\nconst base = basename("/a/b.csv");\n',
      );
      assert.deepEqual(await client.view().run(path, T), [undefined, undefined, undefined]);
      assert.deepEqual(await client.view().pull("fromFile", T), [0, 2, 4]);
      assert.equal(await client.view(1).apply(() => square(fromFile) + base), "4b.csv");
      assert.equal(await client.broadcastView(2).run(new URL(`file://${path}`), T), undefined);
      const missing = `${dir}/missing.js`;
      for (const view of [client.view(), client.broadcastView(0)]) {
        const error = await view.run(missing, T).get().catch((e) => e);
        assert.ok(error instanceof Deno.errors.NotFound, String(error));
        assert.equal(error.message, `Cannot run script "${missing}": no such file`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  test("client.queueStatus() counts each engine's queued, running and completed tasks", async ({ client }) => {
    const before = await client.queueStatus(T);
    assert.deepEqual(Object.keys(before), ["0", "1", "2"]);
    for (const id of [0, 1, 2]) {
      assert.deepEqual({ ...before[id], completed: 0 }, {
        queued: 0,
        running: 0,
        completed: 0,
      });
    }
    // Engine 0 runs a task that waits for a file this test writes once it has seen the queue.
    const dir = await Deno.makeTempDir();
    const open = `${dir}/open`;
    const gate = client.view(0).apply(async (path: string) => {
      while (!(await Deno.stat(path).then(() => true, () => false))) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }, open);
    // Both through the dispatchers: a BroadcastView call would wait in the client for the
    // DirectView calls before it (tests/call_order_test.ts), not in the engine's queue.
    const behind = [client.view(0).apply(() => 1), client.view(0).apply(() => 2)];
    const expected = { queued: 2, running: 1, completed: before[0].completed };
    let busy = await client.queueStatus(T);
    for (const until = Date.now() + T.timeout; Date.now() < until;) {
      if (busy[0].queued === 2 && busy[0].running === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
      busy = await client.queueStatus(T);
    }
    await Deno.writeTextFile(open, "");
    assert.deepEqual(busy[0], expected);
    assert.deepEqual(busy[1], before[1]);
    await gate.get(T);
    await Promise.all(behind.map((ar) => ar.get(T)));
    const after = await client.queueStatus({ ...T, targets: [0] });
    assert.deepEqual(after, { 0: { queued: 0, running: 0, completed: before[0].completed + 3 } });
    await Deno.remove(dir, { recursive: true });
  });

  test("client.shutdown() of a cluster's own client stops the cluster", async ({ cluster, client }) => {
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2]);
    await client.shutdown();
    assert.equal(client.closed, true);
    const after = await client.view().apply(() => id).get(T).catch((e) => e);
    assert.ok(after instanceof ClusterStoppedError, String(after));
    const again = await cluster.connect().catch((e) => e);
    assert.ok(again instanceof ClusterStoppedError, String(again));
  });

  test("AsyncResult.waitInteractive() draws a progress line until done, or until its timeout", async ({ client }) => {
    const dir = await Deno.makeTempDir();
    const open = `${dir}/open`;
    try {
      for (const view of [client.view(), client.broadcastView()]) {
        const gated = view.apply(async (path: string) => {
          if (id === 0) return id;
          while (!(await Deno.stat(path).then(() => true, () => false))) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          return id;
        }, open);
        let text = "";
        const output = {
          writeSync(bytes: Uint8Array) {
            text += new TextDecoder().decode(bytes);
            return bytes.byteLength;
          },
        };
        assert.equal(await gated.waitInteractive({ interval: 20, timeout: 300, output }), false);
        assert.match(text, /^(\r {3}[01]\/3 tasks finished after +\d+ s)+\n$/);
        await Deno.writeTextFile(open, "");
        text = "";
        assert.equal(await gated.waitInteractive({ interval: 20, output }), true);
        assert.match(text, /\r {3}3\/3 tasks finished after +\d+ s\n$/);
        assert.deepEqual(await gated.get(T), [0, 1, 2]);
        await Deno.remove(open);
      }
      // A load-balanced map counts its items.
      const mapped = client.loadBalancedView().map(
        async (x: number, path: string) => {
          while (x > 1 && !(await Deno.stat(path).then(() => true, () => false))) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          return x;
        },
        [0, 1, 2, 3],
        [open, open, open, open],
      );
      let text = "";
      const output = {
        writeSync(bytes: Uint8Array) {
          text += new TextDecoder().decode(bytes);
          return bytes.byteLength;
        },
      };
      assert.equal(await mapped.waitInteractive({ interval: 20, timeout: 300, output }), false);
      assert.match(text, /^(\r {3}[0-2]\/4 tasks finished after +\d+ s)+\n$/);
      assert.ok(mapped.progress <= 2, String(mapped.progress));
      await Deno.writeTextFile(open, "");
      text = "";
      assert.equal(await mapped.waitInteractive({ interval: 20, output }), true);
      assert.match(text, /\r {3}4\/4 tasks finished after +\d+ s\n$/);
      assert.equal(mapped.progress, 4);
      assert.deepEqual(await mapped.get(T), [0, 1, 2, 3]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  test("RemoteError.remoteProperties keeps the code and status a thrown error carried", async ({ client }) => {
    const fail = () => {
      throw Object.assign(new Error("not there"), { code: "ENOENT", status: 404, retry: false });
    };
    for (const view of [client.view(0), client.broadcastView(0)]) {
      const error = await view.apply(fail).get(T).catch((e) => e);
      assert.ok(error instanceof RemoteError, String(error));
      assert.deepEqual(error.remoteProperties, { code: "ENOENT", status: 404, retry: false });
    }
    // A Deno error's code too.
    const missing = await client.view(1).apply(() => Deno.readTextFileSync("/nonexistent/x"))
      .get(T).catch((e) => e);
    assert.ok(missing instanceof RemoteError, String(missing));
    assert.equal(missing.remoteName, "NotFound");
    assert.equal(missing.remoteProperties.code, "ENOENT");
  });

  test("AsyncResult progress, successful(), wallTime and serialTime, as IPython Parallel's", async ({ client }) => {
    for (const view of [client.view(), client.broadcastView()]) {
      const gate = view.apply(() => new Promise((resolve) => setTimeout(resolve, 300, id)));
      assert.equal(gate.progress, 0);
      assert.throws(() => gate.successful(), RangeError);
      assert.equal(gate.wallTime, undefined);
      assert.equal(gate.serialTime, undefined);
      assert.deepEqual(await gate.get(T), [0, 1, 2]);
      assert.equal(gate.progress, 3);
      assert.equal(gate.successful(), true);
      const timings = gate.timings;
      assert.equal(
        gate.serialTime,
        timings.reduce((sum, t) => sum + (t.completed! - t.started!), 0),
      );
      assert.equal(
        gate.wallTime,
        Math.max(...timings.map((t) => t.completed!)) -
          Math.min(...timings.map((t) => t.submitted)),
      );
      const failing = view.apply(() => {
        if (id === 1) throw new Error("one fails");
        return id;
      });
      await failing.get({ ...T, returnExceptions: true });
      assert.equal(failing.progress, 3);
      assert.equal(failing.successful(), false);
    }
  });

  test("Client.wait() waits for every outstanding call; Client.abort() skips those still queued", async ({ client }) => {
    const slow = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms, id));
    const a = client.view().apply(slow, 300);
    const b = client.broadcastView().apply(slow, 200);
    assert.equal(client.outstanding, 2);
    assert.equal(await client.wait(T.timeout), true);
    assert.equal(a.ready() && b.ready(), true);
    assert.equal(client.outstanding, 0);
    // One running, two queued behind it on engine 0: abort() skips the queued ones.
    const running = client.view(0).apply(slow, 500);
    const queued = [client.view(0).apply(() => "ran"), client.view([0]).apply(() => "ran")];
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(client.abort(), 3);
    assert.equal(await running.get(T), 0, "a task already running finishes");
    for (const ar of queued) {
      const error = await ar.get(T).catch((e) => e);
      assert.ok(error instanceof TaskAbortedError, String(error));
    }
    assert.equal(await client.wait(T.timeout), true);
  });

  test("ModuleFunction runs exports of node: and npm: modules on the engines", async ({ client }) => {
    const basename = new ModuleFunction("node:path", "basename");
    assert.deepEqual(await client.view().apply(basename, "/data/a.csv").get(T), [
      "a.csv",
      "a.csv",
      "a.csv",
    ]);
    // A package this library already depends on: nothing new is downloaded.
    const encode = new ModuleFunction("npm:@msgpack/msgpack@3.1.3", "encode");
    const bytes = await client.broadcastView(1).apply(encode, [1, 2]).get(T);
    assert.deepEqual([...(bytes as Uint8Array)], [0x92, 0x01, 0x02]);
    assert.throws(() => new ModuleFunction("data:text/javascript,export default 1"), TypeError);
  });

  test("Cluster.start() and startAndConnect() on a running cluster fail and leave it running", async ({ cluster, client }) => {
    const again = await cluster.start().catch((e) => e);
    assert.ok(again instanceof ClusterStateError, String(again));
    assert.match(again.message, /^Cannot start cluster "[^"]+": it is already running/);
    const connected = await cluster.startAndConnect().catch((e) => e);
    assert.ok(connected instanceof ClusterStateError, String(connected));
    assert.equal(cluster.client, client);
    assert.equal(client.closed, false);
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1, 2]);
    assert.deepEqual(await client.broadcastView().apply(() => id).get(T), [0, 1, 2]);
    assert.equal(await cluster.connect(), client);
  });

  test("after Cluster.stop(), the client, its views and the cluster say the cluster was stopped", async ({ cluster, client }) => {
    const dv = client.view();
    const bv = client.broadcastView();
    const one = client.view(1);
    assert.deepEqual(await bv.apply(() => id).get(T), [0, 1, 2]);
    const pending = dv.apply(() => new Promise((resolve) => setTimeout(resolve, 1000)));
    await cluster.stop();
    const stopped = new RegExp(`^Cannot (\\w+ ?)+: cluster "${cluster.namespace}" was stopped$`);
    const check = (error: unknown, action: string) => {
      assert.ok(error instanceof ClusterStoppedError, `${action}: ${error}`);
      assert.match(error.message, stopped);
      assert.ok(error.message.startsWith(`Cannot ${action}:`), error.message);
      assert.equal(error.cluster, cluster.namespace);
    };
    check(await pending.get(T).catch((e) => e), "get answer");
    check(await dv.apply(() => 1).get(T).catch((e) => e), "apply");
    check(await bv.pull("a", T).get().catch((e) => e), "pull");
    check(await one.execute("1", T).get().catch((e) => e), "execute");
    check(await client.view().push({ a: 1 }, T).get().catch((e) => e), "push");
    check(await client.getResult(pending.id).catch((e) => e), "get result");
    check(await cluster.start().catch((e) => e), "start cluster");
    check(await cluster.startAndConnect().catch((e) => e), "start cluster");
    check(await cluster.connect().catch((e) => e), "connect");
  });
});

redisTest(
  "Cluster.connect() with another key says registrations signed with another key were seen",
  async (redis) => {
    // Only Redis has a cluster that a client of another process (another key) can reach.
    const transport = redis.url;
    await using cluster = new Cluster({ n: 2, transport, progress: false, engineTimeout: 20_000 });
    await cluster.start();
    const connect = (name: string, n?: number, timeout = 1000) =>
      Cluster.connect({ transport, cluster: name, key: generateKey(), n, timeout })
        .catch((e) => e);
    for (const n of [undefined, 2]) {
      const error = await connect(cluster.namespace, n);
      assert.ok(error instanceof TimeoutError, String(error));
      assert.match(
        error.message,
        /register(ed)? within 1000 ms; [1-9]\d* registrations signed with another key were seen: is this the cluster's key\?$/,
      );
    }
    // A cluster nobody started: no such hint.
    const nobody = await connect(`${cluster.namespace}-none`, undefined, 300);
    assert.ok(nobody instanceof TimeoutError, String(nobody));
    assert.doesNotMatch(nobody.message, /another key/);
  },
);

redisTest(
  "client.shutdown() stops engines an engine.ts process started, and the process ends",
  async (redis) => {
    await using byHand = await startByHand(redis.url, 2);
    const { client, process } = byHand;
    assert.deepEqual(await client.view().apply(() => id).get(T), [0, 1]);
    await client.shutdown(T);
    const status = await within(process.status, 30_000, "engine.ts to end");
    assert.equal(status.code, 0);
    const after = await client.view().apply(() => id).get(T).catch((e) => e);
    assert.ok(after instanceof ClusterStoppedError, String(after));
  },
);

Deno.test("engine.ts --help prints its usage; a missing --key-file says so in one line", async () => {
  const run = async (...args: string[]) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../engine.ts", import.meta.url).href, ...args],
      stdin: "null",
      env: { NO_COLOR: "1" },
      signal: AbortSignal.timeout(30_000),
    }).output();
    const text = new TextDecoder();
    return { code, out: text.decode(stdout), err: text.decode(stderr) };
  };
  const help = await run("--help");
  assert.equal(help.code, 0, help.err);
  assert.match(help.out, /^Starts engines that join a running cluster/);
  assert.match(help.out, /Usage: deno run -A engine\.ts --redis URL --cluster NAME/);
  assert.equal(help.err, "");
  const missing = await run(
    "--redis",
    "redis://127.0.0.1:1",
    "--cluster",
    "c",
    "--key-file",
    "/nonexistent/k",
  );
  assert.equal(missing.code, 2);
  assert.equal(
    missing.err,
    'engine.ts: Cannot read key file "/nonexistent/k": no such file ' +
      '(write one with writeKeyFile("/nonexistent/k"))\n',
  );
});
