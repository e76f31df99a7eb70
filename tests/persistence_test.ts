/**
 * Issue 6, item 2: with Redis persistence on (`appendonly yes`, `appendfsync always`), a restart
 * of Redis in the middle of a stream of calls loses no acknowledged task.
 *
 * A client submits calls at a steady pace (DirectView on one engine, BroadcastView on all of
 * them, alternately) while Redis is stopped (SIGTERM, down 2 s) or killed (SIGKILL, down 0.5 s)
 * and started again on the same port and directory. Just before the fault, one engine host is
 * kept busy by a CPU-bound task and ten calls go to its two engines: a host that is busy reads
 * nothing, so these wait in Redis, undelivered, when it goes down. Without persistence they are
 * lost with it (their calls never answer: the test fails); engines that are reading take what is
 * sent to them into memory at once, so the steady calls alone would rarely show a loss.
 *
 * The observable: each task appends a token unique to its call and engine to a file outside Redis
 * (Workers of this process share the file system; an `O_APPEND` write this small is atomic). The
 * file survives the restart and does not depend on what is being tested, so it shows which tasks
 * ran and how often. Delivery is at least once (an entry whose ack was lost runs again), so the
 * test asserts that every task ran at least once, counts the extra runs, and asserts that the
 * caller got each task's own result exactly once.
 *
 * The outages here are shorter than the transport's `commandTimeoutMs` (10 s), so every
 * submission is acknowledged (it waits for Redis to come back): every call must complete with
 * its values. A longer outage makes a submission fail with `TransportClosedError`; that case is
 * in `bench/faults.ts`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import type { AsyncResult } from "../actors/client/async_result.ts";
import { ActorSystem } from "../actors/core/system.ts";
import { generateKey } from "../transport/envelope.ts";
import { RedisTransport } from "../transport/redis.ts";
import {
  connectAdmin,
  hasRedisServer,
  type RedisServer,
  startRedisServer,
  uniqueNamespace,
} from "./_redis_server.ts";
import { delay, within } from "./_async.ts";

/** `rank` in the engines' namespaces. */
declare const rank: number;

/** Runs on an engine: marks the task as run, then answers with its token after a short while. */
function mark(path: string, token: string): Promise<string> {
  const t = `${token}@${rank}`;
  Deno.writeTextFileSync(path, `${t}\n`, { append: true });
  return new Promise((resolve) => setTimeout(() => resolve(t), 5));
}

/** Runs on an engine: keeps its host busy (no reads, no timers) for `ms`, then marks the run. */
function spin(path: string, token: string, ms: number): string {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* CPU-bound */ }
  const t = `${token}@${rank}`;
  Deno.writeTextFileSync(path, `${t}\n`, { append: true });
  return t;
}

interface Call {
  /** The tokens the engines must answer with, in target order. */
  expected: string[];
  /** When it was submitted, relative to the fault; "queued" went to the busy host. */
  phase: "before" | "queued" | "outage" | "after";
  result: AsyncResult<string>;
}

const faults: { name: string; down: (server: RedisServer) => Promise<void>; downMs: number }[] = [
  { name: "SIGTERM", down: (server) => server.stop(), downMs: 2000 },
  { name: "SIGKILL", down: (server) => server.kill(), downMs: 500 },
];

for (const fault of faults) {
  Deno.test({
    name: `Cluster with AOF on loses no acknowledged task when Redis restarts (${fault.name})`,
    ignore: !hasRedisServer(),
    async fn() {
      await using server = await startRedisServer({ appendonly: true });
      const dir = await Deno.makeTempDir({ prefix: "deno-parallel-aof-" });
      const marks = `${dir}/marks`;
      await Deno.writeTextFile(marks, "");
      try {
        // Two hosts: engines 0 and 2 on one, 1 and 3 on the other.
        await using cluster = new Cluster({
          n: 4,
          hosts: 2,
          transport: server.url,
          progress: false,
        });
        const client = await cluster.startAndConnect();
        const ids = client.ids;
        const bv = client.broadcastView();
        // Generous: the first broadcast starts the broadcast actors.
        assert.deepEqual(await bv.apply(() => rank).get({ timeout: 60_000 }), [0, 1, 2, 3]);

        const calls: Call[] = [];
        let phase: Call["phase"] = "before";
        let submitting = true;
        const submitter = (async () => {
          for (let i = 0; submitting; i++) {
            const token = `c${i}`;
            if (i % 2 === 0) {
              const engineId = ids[(i / 2) % ids.length];
              const result = client.view([engineId]).apply(mark, marks, token);
              calls.push({ expected: [`${token}@${engineId}`], phase, result });
            } else {
              const result = bv.apply(mark, marks, token);
              calls.push({ expected: ids.map((id) => `${token}@${id}`), phase, result });
            }
            await delay(10);
          }
        })();

        await delay(700);
        // Engine 0's host busy for 1.5 s; what is sent to engines 0 and 2 meanwhile stays in Redis.
        const busy = client.view([0]).apply(spin, marks, "busy", 1500);
        calls.push({ expected: ["busy@0"], phase: "before", result: busy });
        await delay(300);
        for (let i = 0; i < 10; i++) {
          const engineId = i % 2 === 0 ? 0 : 2;
          const result = client.view([engineId]).apply(mark, marks, `queued${i}`);
          calls.push({ expected: [`queued${i}@${engineId}`], phase: "queued", result });
        }
        await delay(100);
        phase = "outage";
        const faultAt = Date.now();
        await fault.down(server);
        await delay(fault.downMs);
        await server.start();
        phase = "after";
        await delay(1000);
        submitting = false;
        await submitter;

        // Nothing hangs: every call settles well within the deadline, and none failed.
        const settled = await within(
          Promise.all(calls.map((c) => c.result.get({ returnExceptions: true }))),
          60_000,
          `the ${calls.length} calls to settle`,
        );
        const failures = settled.flatMap((values, i) =>
          values.flatMap((v, j) =>
            v instanceof Error
              ? [`call ${i} (${calls[i].phase}) on engine ${calls[i].result.engineIds[j]}: ${v}`]
              : []
          )
        );
        assert.deepEqual(failures, [], "every acknowledged call completes");
        settled.forEach((values, i) => assert.deepEqual(values, calls[i].expected));
        const during = calls.filter((c) => c.phase === "outage").length;
        assert.ok(during > 0, "calls were submitted while Redis was down");
        // The busy host was still busy when Redis went down.
        const [busyDone] = busy.timings;
        assert.ok(busyDone.completed! > faultAt, "the busy task ended before the fault");

        // Every task ran at least once; nothing ran that was not submitted.
        const runs = new Map<string, number>();
        for (const line of (await Deno.readTextFile(marks)).split("\n")) {
          if (line) runs.set(line, (runs.get(line) ?? 0) + 1);
        }
        const expected = new Set(calls.flatMap((c) => c.expected));
        const missing = [...expected].filter((t) => !runs.has(t));
        assert.deepEqual(missing, [], "tasks that never ran");
        const stray = [...runs.keys()].filter((t) => !expected.has(t));
        assert.deepEqual(stray, [], "runs of tasks never submitted");
        const extra = [...runs.values()].reduce((a, n) => a + n - 1, 0);
        assert.ok(extra <= expected.size, `extra runs: ${extra} of ${expected.size}`);

        // The next calls work on both kinds of view.
        assert.deepEqual(await bv.apply(() => rank + 1).get({ timeout: 30_000 }), [1, 2, 3, 4]);
        assert.deepEqual(await client.view().apply(() => rank).get({ timeout: 30_000 }), ids);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "ActorSystem writes an answer it could not write at first once Redis takes writes again",
  ignore: !hasRedisServer(),
  async fn() {
    // The answer of a task that ends while Redis refuses writes (here: no memory left; as well: a
    // server away for longer than commandTimeoutMs, or loading its data after a restart) is
    // written once Redis takes writes again, not dropped: the caller would wait forever.
    await using server = await startRedisServer();
    await using admin = await connectAdmin(server.url);
    const common = { key: generateKey(), namespace: uniqueNamespace(), blockMs: 100 };
    await using hostTransport = await RedisTransport.connect(server.url);
    await using clientTransport = await RedisTransport.connect(server.url);
    const host = new ActorSystem({ ...common, transport: hostTransport });
    const client = new ActorSystem({ ...common, transport: clientTransport });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let started = false;
      host.spawn("worker", {
        handlers: {
          job: async () => {
            started = true;
            await released;
            return "done";
          },
        },
      });
      const answer = client.ask("worker", "job", null, { timeout: 30_000 });
      await within(
        (async () => {
          while (!started) await delay(10);
        })(),
        10_000,
        "the handler to start",
      );
      await admin.send(["CONFIG", "SET", "maxmemory", "1"]);
      release();
      await delay(1000); // the first writes of the answer are refused (OOM)
      await admin.send(["CONFIG", "SET", "maxmemory", "0"]);
      assert.equal(await within(answer, 20_000, "the answer"), "done");
    } finally {
      await host.close();
      await client.close();
    }
  },
});
