/**
 * The broadcast suite (issue 4): `BroadcastView` and the tree of broadcast actors behind it, run
 * once on the embedded transport and once on a private `redis-server` (or `REDIS_URL` when no
 * server binary is installed), as deno-redis loops one command suite over connections.
 *
 * Functions shipped to the engines are written here but run there: the names they use freely
 * (`id`, `rank`, `size`, values pushed earlier) are declared below for the type checker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Client } from "../actors/client/client.ts";
import { Cluster, type ClusterOptions } from "../actors/client/cluster.ts";
import { partitionBounds } from "../actors/protocol/partition.ts";
import { BLOB_THRESHOLD } from "../actors/client/view.ts";
import { CompositeError, EngineDiedError, RemoteError } from "../errors.ts";
import { type ClusterKey, generateKey, namespaceKey, openEnvelope } from "../transport/envelope.ts";
import type { Transport } from "../transport/types.ts";
import { redisKeys, uniqueNamespace } from "./_redis_server.ts";
import { BACKENDS, forEachBackend } from "./_backends.ts";
import { delay, waitUntil, within } from "./_async.ts";
import { prng } from "./_random.ts";
import { broadcastAddress } from "../actors/protocol/addresses.ts";
import type { BroadcastRequest } from "../actors/protocol/messages.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const rank: number;
declare const size: number;
declare const big: Float64Array;
declare const z: number;

/** Options for every call made here: no wait in the suite goes without a deadline. */
const T = { timeout: 15_000 } as const;
/** The deadline of one whole test. */
const TEST_TIMEOUT_MS = 60_000;

/** What a suite test gets: a started cluster, its client and its key. */
interface Fixture {
  readonly cluster: Cluster;
  readonly client: Client;
  readonly key: ClusterKey;
  readonly url: string;
}

/** A deterministic shuffle, so a failure can be replayed. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const random = prng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Counts the calls of `transport.putBlob` until the returned function restores it. */
function spyPutBlob(transport: Transport): { keys: string[]; restore: () => void } {
  const keys: string[] = [];
  const original = transport.putBlob;
  transport.putBlob = (key, data, ttlMs) => {
    keys.push(key);
    return original.call(transport, key, data, ttlMs);
  };
  return { keys, restore: () => void (transport.putBlob = original) };
}

/** The envelopes of the inbox of `address`, in order, opened with the cluster key. */
/**
 * The addresses of every broadcast node of every engine host and of the client's hub (whose nodes
 * run once a broadcast needed them).
 */
function nodeAddresses(client: Client): string[] {
  const hosts = new Set(client.ids.map((id) => client.hostOf(id)));
  const hub = `bcast.${client.hubId}.`;
  return [
    ...[...hosts].flatMap((host) => client.ids.map((_, node) => broadcastAddress(host, node))),
    ...client.system.addresses.filter((address) => address.startsWith(hub)),
  ];
}

async function inboxEnvelopes(fx: Fixture, address: string) {
  const { system } = fx.client;
  const entries = await system.transport.range(system.inboxOf(address));
  return entries.map((e) => ({
    bytes: e.data!.byteLength,
    envelope: openEnvelope(e.data!, namespaceKey(fx.key, system.namespace)),
  }));
}

/** The SHA-256 of `view`'s bytes, in hex (also shipped to engines, so self-contained). */
async function sha256Hex(view: ArrayBufferView): Promise<string> {
  const bytes = new Uint8Array(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength);
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

forEachBackend(BACKENDS, (backendCase) => {
  function test(
    title: string,
    n: number,
    fn: (fx: Fixture) => Promise<void>,
    extra: ClusterOptions = {},
  ): void {
    backendCase(title, async (backend) => {
      const key = generateKey();
      await using cluster = new Cluster({
        n,
        transport: backend.url,
        namespace: uniqueNamespace(),
        key,
        progress: false,
        engineTimeout: 20_000,
        ...extra,
      });
      const client = await within(cluster.startAndConnect(), 30_000, `start ${n} engines`);
      await fn({ cluster, client, key, url: backend.url });
    }, { timeoutMs: TEST_TIMEOUT_MS + 30_000 });
  }

  for (const n of [1, 2, 7, 64]) {
    test(
      `BroadcastView crosses the transport once per host each way at ${n} engine${
        n > 1 ? "s" : ""
      } on 3 hosts`,
      n,
      async ({ client }) => {
        const view = client.broadcastView();
        const ids = client.ids;
        const hosts = new Set(ids.map((id) => client.hostOf(id))).size;
        assert.equal(hosts, Math.min(n, 3));
        // The broadcast actors start on the first call: warm up, then count. The client and its
        // hub write one message to each host (its node, or its one engine) and read its answer.
        assert.deepEqual(await view.apply(() => id).get(T), ids);
        const counted = async <R>(what: string, call: () => Promise<R>): Promise<R> => {
          const before = client.system.stats;
          const value = await call();
          const after = client.system.stats;
          assert.deepEqual(
            { sent: after.sent - before.sent, received: after.received - before.received },
            { sent: hosts, received: hosts },
            `${what} at ${n} engines`,
          );
          return value;
        };
        const doubled = ids.map((i) => i * 2);
        assert.deepEqual(
          await counted("apply", () => view.apply((x: number) => x * id, 2).get(T)),
          doubled,
        );
        await counted("execute", () => view.execute("var twice = id * 2;", T).get(T));
        await counted("push", () => view.push({ offset: 100 }, T).get(T));
        // A value stored as a blob is not a message.
        await counted(
          "push of a blob",
          () => view.push({ blob: new Float64Array(16_384) }, T).get(T),
        );
        const items = Array.from({ length: 3 * n + 1 }, (_, i) => i);
        await counted("scatter", () => view.scatter("items", items, T).get(T));
        assert.deepEqual(await counted("pull", () => view.pull("twice", T).get(T)), doubled);
        assert.deepEqual(await counted("gather", () => view.gather("items", T)), items);
        assert.deepEqual(
          await counted("pull of several names", () => view.pull(["offset", "twice"], T).get(T)),
          ids.map((i) => [100, i * 2]),
        );
        await counted("clear", () => view.clear(T).get(T));
        // A view on one host's engines: its root runs there, one message each way.
        const local = client.broadcastView(
          ids.filter((id) => client.hostOf(id) === client.hostOf(0)),
        );
        await local.apply(() => id).get(T);
        const before = client.system.stats;
        await local.apply(() => id).get(T);
        const after = client.system.stats;
        assert.deepEqual({
          sent: after.sent - before.sent,
          received: after.received - before.received,
        }, {
          sent: 1,
          received: 1,
        });
      },
      { hosts: 3 },
    );
  }

  test(
    "BroadcastView.apply() returns results in target order whatever order engines finish in",
    12,
    async ({ client }) => {
      const ids = client.ids;
      const orders: [string, number[]][] = [
        ["forward", ids],
        ["reversed", [...ids].reverse()],
        ["strided", ids.filter((_, i) => i % 3 === 0)],
        ["strided reversed", ids.filter((_, i) => i % 2 === 1).reverse()],
        ["shuffled", shuffled(ids, 4)],
        ["shuffled subset", shuffled(ids, 7).slice(0, 5)],
      ];
      for (const fanout of [2, 3]) {
        for (const [what, targets] of orders) {
          const view = client.broadcastView(targets, { fanout });
          // The last engines finish first; then in a random order.
          const slowFirst = view.apply(async () => {
            await new Promise((resolve) => setTimeout(resolve, (size - rank) * 5));
            // deno-lint-ignore no-console -- it runs on the engine, whose output is captured
            console.log(`engine ${id} done`);
            return id;
          });
          assert.deepEqual(await slowFirst.get(T), targets, `${what}, fanout ${fanout}`);
          assert.deepEqual(slowFirst.stdout, targets.map((t) => `engine ${t} done\n`));
          assert.deepEqual(slowFirst.timings.map((t) => t.engineId), targets);
          for (const timing of slowFirst.timings) {
            assert.ok(
              timing.completed! >= timing.started!,
              `${what}: timing of ${timing.engineId}`,
            );
          }
          const random = view.apply(async () => {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
            return id;
          });
          assert.deepEqual(await random.get(T), targets, `${what}, fanout ${fanout}, random`);
          assert.deepEqual(await random.getDict(T), Object.fromEntries(targets.map((t) => [t, t])));
        }
      }
    },
  );

  test(
    "BroadcastView.apply() rejects with CompositeError naming the failed engines in target order",
    9,
    async ({ client }) => {
      const targets = shuffled(client.ids, 11);
      const failing = targets.filter((t) => t % 3 === 1);
      for (const fanout of [2, 3]) {
        const view = client.broadcastView(targets, { fanout });
        const call = () =>
          view.apply(() => {
            if (id % 3 === 1) throw new RangeError(`engine ${id} refuses`);
            return id * 10;
          });
        const error = await call().get(T).catch((e) => e);
        assert.ok(error instanceof CompositeError, String(error));
        assert.deepEqual(error.engineIds, failing);
        for (const [i, e] of (error.errors as RemoteError[]).entries()) {
          assert.ok(e instanceof RemoteError);
          assert.equal(e.engineId, failing[i]);
          assert.equal(e.remoteName, "RangeError");
          assert.equal(e.remoteMessage, `engine ${failing[i]} refuses`);
        }
        const values = await call().get({ ...T, returnExceptions: true });
        assert.equal(values.length, targets.length);
        targets.forEach((t, i) => {
          const value = values[i];
          if (t % 3 === 1) {
            assert.ok(value instanceof RemoteError, `engine ${t}: ${value}`);
            assert.equal(value.engineId, t);
          } else {
            assert.equal(value, t * 10);
          }
        });
      }
      // One failed engine: its RemoteError itself.
      const one = client.broadcastView(targets).apply(() => {
        if (id === 4) throw new TypeError("only engine 4 fails");
        return id;
      });
      await assert.rejects(one.get(T), (e: unknown) => {
        assert.ok(e instanceof RemoteError, String(e));
        assert.equal(e.engineId, 4);
        assert.equal(e.remoteName, "TypeError");
        return true;
      });
    },
  );

  test(
    "BroadcastView never gets more than fanout replies of one broadcast into one inbox",
    33,
    async (fx) => {
      const { client } = fx;
      const seen = new Set<string>();
      for (const fanout of [2, 3]) {
        const view = client.broadcastView(shuffled(client.ids, fanout), { fanout });
        for (let round = 0; round < 3; round++) {
          await Promise.all([
            view.apply(() => id).get(T),
            view.scatter("part", Array.from({ length: 100 }, (_, i) => i)).get(T),
          ]);
        }
        // What each node counted...
        const nodes = nodeAddresses(client);
        const stats = await Promise.all(
          nodes.map((node) =>
            client.system.ask<{ maxRepliesPerBroadcast: number }>(node, "stats", undefined, T)
          ),
        );
        const counted = Math.max(...stats.map((s) => s.maxRepliesPerBroadcast));
        assert.ok(counted > 0 && counted <= fanout, `nodes counted ${counted} at fanout ${fanout}`);
        // ...and what the inboxes held: the reply entries of each broadcast, per inbox.
        const replies = new Map<string, Map<string, number>>(); // broadcast → inbox → replies
        for (const node of nodes) {
          for (const { envelope } of await inboxEnvelopes(fx, node)) {
            if (envelope.type !== "reply") continue;
            // Sub-broadcasts are `<root>.<c>…`, engines' messages `<root>_<engine>`.
            const root = envelope.parent!.split(/[._]/)[0];
            if (seen.has(root)) continue;
            const perInbox = replies.get(root) ?? new Map<string, number>();
            perInbox.set(node, (perInbox.get(node) ?? 0) + 1);
            replies.set(root, perInbox);
          }
        }
        // Replies between a node and the engines or nodes of its own host are handed over
        // without the transport; those between hosts are in the streams.
        assert.ok(replies.size > 0 && replies.size <= 6, `${replies.size} broadcasts`);
        for (const [root, perInbox] of replies) {
          seen.add(root);
          const most = Math.max(...perInbox.values());
          assert.ok(
            most > 0 && most <= fanout,
            `an inbox held ${most} replies at fanout ${fanout}`,
          );
          const total = [...perInbox.values()].reduce((a, b) => a + b, 0);
          assert.ok(total < 33, `${total} replies crossed the transport`);
        }
      }
      // The client's own inbox got one reply per message it sent.
      assert.equal(client.system.stats.received, client.system.stats.sent);
    },
  );

  test(
    "BroadcastView fails an engine killed mid-broadcast with EngineDiedError and keeps the rest",
    6,
    async ({ cluster, client }) => {
      const view = client.broadcastView(shuffled(client.ids, 3));
      assert.deepEqual(await view.apply(() => id).get(T), view.targets);
      const slow = view.apply(async () => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        return id;
      });
      await delay(100);
      cluster.kill(2);
      const values = await slow.get({ ...T, returnExceptions: true });
      view.targets.forEach((t, i) => {
        if (t === 2) {
          assert.ok(values[i] instanceof EngineDiedError, String(values[i]));
          assert.equal((values[i] as EngineDiedError).engineId, 2);
        } else assert.equal(values[i], t);
      });
      // Later calls fail the dead engine at once.
      const again = view.apply(() => id);
      await assert.rejects(again.get(T), EngineDiedError);
      const later = await again.get({ ...T, returnExceptions: true });
      assert.deepEqual(
        later.map((v) => v instanceof EngineDiedError ? -1 : v),
        view.targets.map((t) => t === 2 ? -1 : t),
      );
    },
    { hosts: 6 },
  );

  test(
    "BroadcastView fails an engine that died before the first broadcast, without waiting for it",
    4,
    async ({ cluster, client }) => {
      cluster.kill(1);
      const values = await client.broadcastView().apply(() => id).get({
        timeout: 5000,
        returnExceptions: true,
      });
      assert.equal(values[0], 0);
      assert.ok(values[1] instanceof EngineDiedError, String(values[1]));
      assert.deepEqual(values.slice(2), [2, 3]);
    },
    { hosts: 4 },
  );

  test(
    "BroadcastView fails the engines of a host that died before the first broadcast, at once",
    6,
    async ({ cluster, client }) => {
      // Three hosts of two engines: the dead host's range has a node of its own, which the hub
      // (started by this first broadcast) must not wait for.
      cluster.kill(0);
      const view = client.broadcastView();
      const values = await view.apply(() => id).get({ timeout: 10_000, returnExceptions: true });
      for (const i of [0, 1]) {
        assert.ok(values[i] instanceof EngineDiedError, String(values[i]));
        assert.equal((values[i] as EngineDiedError).engineId, i);
      }
      assert.deepEqual(values.slice(2), [2, 3, 4, 5]);
      // The next call works too, and so does one that skips the dead host.
      const again = await view.apply(() => id * 10).get({ ...T, returnExceptions: true });
      assert.deepEqual(again.slice(2), [20, 30, 40, 50]);
      assert.deepEqual(await client.broadcastView([2, 3, 4, 5]).apply(() => id).get(T), [
        2,
        3,
        4,
        5,
      ]);
    },
    { hosts: 3 },
  );
  test(
    "BroadcastView.scatter() partitions exactly as DirectView.scatter() does",
    7,
    async (fx) => {
      const { client } = fx;
      const direct = client.view();
      const sequences: [string, unknown[] | Float64Array][] = [
        ["empty", []],
        ["shorter than the engines", [1, 2, 3]],
        ["one per engine", client.ids.map((i) => `item ${i}`)],
        ["uneven", Array.from({ length: 23 }, (_, i) => ({ i }))],
        ["long", Array.from({ length: 1001 }, (_, i) => i)],
        ["typed", Float64Array.from({ length: 50 }, (_, i) => i / 4)],
      ];
      const targetLists = [client.ids, [...client.ids].reverse(), [5, 1, 3]];
      for (const fanout of [2, 3]) {
        for (const targets of targetLists) {
          const broadcast = client.broadcastView(targets, { fanout });
          const directOn = client.view(targets);
          // Every case at once, each under its own pair of names.
          const cases = sequences.flatMap(([what, sequence], i) =>
            [false, true].map((flatten) => ({ what, sequence, flatten, tree: `t${i}${flatten}` }))
          );
          await Promise.all(cases.flatMap(({ sequence, flatten, tree }) => [
            broadcast.scatter(tree, sequence, { ...T, flatten }).get(T),
            directOn.scatter(`d${tree}`, sequence, { ...T, flatten }).get(T),
          ]));
          const names = cases.flatMap(({ tree }) => [tree, `d${tree}`]);
          const pulled = await directOn.pull(names, T).get(T);
          cases.forEach(({ what, flatten }, c) => {
            const label = `${what}, flatten ${flatten}, targets ${targets}, fanout ${fanout}`;
            assert.deepEqual(
              pulled.map((values) => values[2 * c]),
              pulled.map((values) => values[2 * c + 1]),
              label,
            );
          });
          for (const { tree, flatten, sequence } of cases) {
            if (flatten) continue;
            const gathered = await broadcast.gather(tree, T);
            assert.deepEqual(gathered, await directOn.gather(`d${tree}`, T));
            assert.deepEqual(gathered, sequence);
          }
        }
      }
      // The seed's use: one rank per engine, flattened.
      const view = client.broadcastView();
      await view.scatter("rank", client.ids, { ...T, flatten: true }).get(T);
      assert.deepEqual(await direct.pull("rank", T).get(T), client.ids);
      // The root gets the whole sequence once; the nodes below it get their subtree's items
      // (on the root's host without the transport, on other hosts through it).
      const long = Array.from({ length: 1000 }, (_, i) => i);
      await view.scatter("split", long, T).get(T);
      const ranges: number[][] = [];
      for (const node of nodeAddresses(client)) {
        for (const { envelope } of await inboxEnvelopes(fx, node)) {
          const request = envelope.content as BroadcastRequest;
          if (envelope.type !== "broadcast" || request.operation.scatter?.name !== "split") {
            continue;
          }
          const [start] = partitionBounds(long.length, request.lo, request.size);
          const [end] = partitionBounds(long.length, request.hi, request.size);
          assert.deepEqual(request.operation.scatter.sequence, long.slice(start, end));
          assert.deepEqual(request.targets, view.targets.slice(request.lo, request.hi));
          ranges.push([request.lo, request.hi]);
        }
      }
      // The root, on the client's hub, is handed its request without the transport; each host's
      // node gets one, for its host's engines.
      ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
      const hostRanges = [...new Set(view.targets.map((id) => client.hostOf(id)))].map((host) => {
        const positions = view.targets.flatMap((id, i) => client.hostOf(id) === host ? [i] : []);
        return [positions[0], positions[positions.length - 1] + 1];
      }).filter(([lo, hi]) => hi - lo > 1);
      assert.deepEqual(ranges, hostRanges);
    },
  );

  test(
    "BroadcastView.push() stores a 1 MiB Float64Array once and every engine gets it intact",
    6,
    async (fx) => {
      const { client, url } = fx;
      const view = client.broadcastView(shuffled(client.ids, 5));
      await view.apply(() => id).get(T); // start the broadcast actors first
      const value = Float64Array.from({ length: 131_072 }, (_, i) => Math.sin(i) * i);
      assert.equal(value.byteLength, 1 << 20);
      const spy = spyPutBlob(client.transport);
      try {
        await view.push({ big: value }, T).get(T);
      } finally {
        spy.restore();
      }
      // The call's record (for `client.getResult`) and the cluster's renewed hold on its
      // namespace (every 3 s) aside.
      const written = spy.keys.filter((k) =>
        !k.startsWith(`${client.namespace}:call:`) && k !== `${client.namespace}:owner`
      );
      assert.equal(written.length, 1, "one blob written");
      assert.ok(written[0].startsWith(`${client.namespace}:blob:`), written[0]);
      // Every engine has read it: the call deletes it (tests/blob_lifetime_test.ts).
      await waitUntil(
        "the blob deleted",
        async () =>
          url.startsWith("redis")
            ? (await redisKeys(url, `${client.namespace}:blob:`)).length === 0
            : await client.transport.getBlob(written[0]) === null,
      );
      const expected = await sha256Hex(value);
      const digests = await view.apply(async () => {
        if (!(big instanceof Float64Array)) throw new TypeError(`big is ${typeof big}`);
        const bytes = new Uint8Array(big.buffer as ArrayBuffer, big.byteOffset, big.byteLength);
        const digest = await crypto.subtle.digest("SHA-256", bytes);
        return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
      }).get(T);
      assert.deepEqual(digests, view.targets.map(() => expected));
      // No message of the tree carried the value itself.
      const addresses = [...nodeAddresses(client), ...client.ids.map((e) => `engine.${e}`)];
      for (const address of addresses) {
        for (const { bytes, envelope } of await inboxEnvelopes(fx, address)) {
          assert.ok(bytes < BLOB_THRESHOLD, `${address} got a ${bytes}-byte ${envelope.type}`);
        }
      }
    },
  );

  test(
    "BroadcastView keeps the results of concurrent calls on overlapping trees apart",
    9,
    async ({ client }) => {
      const views = [
        client.broadcastView(),
        client.broadcastView([...client.ids].reverse(), { fanout: 3 }),
        client.broadcastView(shuffled(client.ids, 2).slice(0, 6), { fanout: 2 }),
        client.broadcastView([8, 0], { fanout: 4 }),
      ];
      const calls = Array.from({ length: 24 }, (_, k) => {
        const view = views[k % views.length];
        return {
          view,
          k,
          result: view.apply(async (k: number) => {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
            return [k, id];
          }, k),
        };
      });
      for (const { view, k, result } of calls) {
        assert.deepEqual(await result.get(T), view.targets.map((t) => [k, t]), `call ${k}`);
      }
    },
  );

  test(
    "Broadcast nodes answer a malformed request with an error instead of never answering",
    3,
    async ({ client }) => {
      const host = client.hostOf(0);
      const root = broadcastAddress(host, 0);
      const good = {
        operation: { type: "apply", content: {} },
        targets: [0, 1, 2],
        hosts: [[host, 3]],
        hub: client.hubId,
        size: 3,
        lo: 0,
        hi: 3,
        fanout: 2,
      };
      const bad = [
        {},
        { ...good, fanout: 1 },
        { ...good, hi: 4 },
        { ...good, targets: "0,1,2" },
        { ...good, targets: [0, 1] },
        { ...good, hosts: [[host, 2]] },
        { ...good, hosts: [[7, 3]] },
        { ...good, hub: 5 },
        { ...good, operation: { ...good.operation, scatter: { name: "x", sequence: 3 } } },
      ];
      for (const request of bad) {
        await assert.rejects(
          client.system.ask(root, "broadcast", request, { timeout: 5000 }),
          (e: unknown) => {
            assert.ok(e instanceof RemoteError, String(e));
            assert.equal(e.remoteName, "TypeError");
            assert.match(e.remoteMessage, /^Cannot broadcast: malformed request/);
            return true;
          },
          JSON.stringify(request),
        );
      }
      // The tree still works.
      assert.deepEqual(await client.broadcastView().apply(() => id).get(T), [0, 1, 2]);
    },
  );

  test(
    "BroadcastView.apply() fails only the engines whose value cannot be sent back",
    4,
    async ({ client }) => {
      const view = client.broadcastView([3, 2, 1, 0]);
      const values = await view.apply(() => id % 2 ? () => id : id).get({
        ...T,
        returnExceptions: true,
      });
      assert.equal(values[1], 2);
      assert.equal(values[3], 0);
      for (const i of [0, 2]) {
        assert.ok(values[i] instanceof RemoteError, String(values[i]));
        assert.equal((values[i] as RemoteError).engineId, 3 - i);
        assert.equal((values[i] as RemoteError).remoteName, "SerializationError");
      }
    },
  );

  test(
    "BroadcastView.execute(), pull(), gather() and clear() work through the tree",
    5,
    async ({ client }) => {
      const targets = [4, 0, 3, 1, 2];
      const view = client.broadcastView(targets, { fanout: 2 });
      const run = view.execute("var z = id * 2; console.log('z is', z);", T);
      await run.get(T);
      assert.deepEqual(run.stdout, targets.map((t) => `z is ${t * 2}\n`));
      assert.deepEqual(await view.pull("z", T).get(T), targets.map((t) => t * 2));
      assert.deepEqual(await view.apply(() => z + rank).get(T), targets.map((t) => t * 3));
      await view.scatter("chunk", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], T).get(T);
      assert.deepEqual(await view.pull("chunk", T).get(T), [[1, 2, 3], [4, 5], [6, 7], [8, 9], [
        10,
        11,
      ]]);
      assert.deepEqual(await view.gather("chunk", T), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      await view.scatter("typed", Int32Array.from([5, 6, 7, 8, 9, 10]), T).get(T);
      assert.deepEqual(await view.gather("typed", T), Int32Array.from([5, 6, 7, 8, 9, 10]));
      await view.clear(T).get(T);
      const error = await view.pull("z", T).get(T).catch((e) => e);
      assert.ok(error instanceof CompositeError, String(error));
      assert.deepEqual(error.engineIds, targets);
      assert.ok(
        (error.errors as RemoteError[]).every((e) => e.remoteName === "ReferenceError"),
        error.message,
      );
      assert.deepEqual(
        await view.pull(["id", "rank", "size"], T).get(T),
        targets.map((t) => [t, t, 5]),
      );
    },
  );
});
