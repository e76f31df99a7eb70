/**
 * The behaviour every {@linkcode Transport} must have, as a suite of `Deno.test`s that
 * `transport_test.ts` runs unchanged against each implementation.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TransportClosedError } from "../errors.ts";
import type { StreamEntry, Transport } from "../transport/types.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { delay } from "./_async.ts";

/** A transport opened for one test, and whatever it needs disposed with it. */
export interface TransportHandle extends AsyncDisposable {
  /** The transport under test. */
  transport: Transport;
}

/** Options of {@linkcode transportContract}. */
export interface ContractOptions {
  /** Register the tests as ignored (e.g. no server to run them against). */
  ignore?: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

function texts(entries: StreamEntry[]): string[] {
  return entries.map((e) => e.data === null ? "<null>" : decoder.decode(e.data));
}

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

function assertBytes(actual: Uint8Array | null, expected: Uint8Array): void {
  assert.ok(actual !== null, "expected bytes, got null");
  assert.equal(actual.length, expected.length, "length differs");
  const at = actual.findIndex((b, i) => b !== expected[i]);
  assert.equal(at, -1, `bytes differ from index ${at}`);
}

/** Registers the transport contract tests for `name`, each on a transport `open` gives it. */
export function transportContract(
  name: string,
  open: () => Promise<TransportHandle>,
  options: ContractOptions = {},
): void {
  function test(title: string, fn: (t: Transport, ns: string) => Promise<void>): void {
    Deno.test({
      name: `${name}: ${title}`,
      ignore: options.ignore ?? false,
      sanitizeOps: true,
      sanitizeResources: true,
      async fn() {
        await using handle = await open();
        const ns = uniqueNamespace();
        try {
          await fn(handle.transport, ns);
        } finally {
          await handle.transport.deletePrefix(`${ns}:`);
        }
      },
    });
  }

  test("append() and read() deliver entries in append order", async (t, ns) => {
    const s = `${ns}:s`;
    const ids: string[] = [];
    for (const word of ["a", "b", "c", "d", "e"]) ids.push(await t.append(s, utf8(word)));
    const entries = await t.read("g", "c1", [s], { blockMs: 0 });
    assert.deepEqual(texts(entries), ["a", "b", "c", "d", "e"]);
    assert.deepEqual(entries.map((e) => e.id), ids);
    assert.ok(entries.every((e) => e.stream === s && e.deliveries === 1));
    assert.deepEqual(await t.read("g", "c1", [s], { blockMs: 0 }), []);
  });

  test("read() returns entries of every stream it reads", async (t, ns) => {
    await t.append(`${ns}:a`, utf8("a1"));
    await t.append(`${ns}:b`, utf8("b1"));
    await t.append(`${ns}:a`, utf8("a2"));
    const entries = await t.read("g", "c1", [`${ns}:a`, `${ns}:b`, `${ns}:empty`], { blockMs: 0 });
    const byStream = (s: string) => texts(entries.filter((e) => e.stream === s));
    assert.deepEqual(byStream(`${ns}:a`), ["a1", "a2"]);
    assert.deepEqual(byStream(`${ns}:b`), ["b1"]);
    assert.equal(entries.length, 3);
  });

  test(
    "read() gives each entry of a group to one consumer, and every entry to each group",
    async (t, ns) => {
      const s = `${ns}:s`;
      const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
      for (const m of sent) await t.append(s, utf8(m));
      const first = await t.read("g", "c1", [s], { count: 3, blockMs: 0 });
      const second = await t.read("g", "c2", [s], { blockMs: 0 });
      assert.equal(first.length, 3);
      assert.equal(second.length, 7);
      assert.deepEqual([...texts(first), ...texts(second)], sent);
      assert.deepEqual(await t.read("g", "c1", [s], { blockMs: 0 }), []);
      assert.deepEqual(texts(await t.read("other", "c1", [s], { blockMs: 0 })), sent);
    },
  );

  test("read() waits up to blockMs and returns [] when nothing comes", async (t, ns) => {
    assert.deepEqual(await t.read("g", "c1", [`${ns}:s`], { blockMs: 200 }), []);
    assert.deepEqual(await t.read("g", "c1", [`${ns}:s`], { blockMs: 0 }), []);
  });

  test("read() blocked on a stream wakes when an entry is appended", async (t, ns) => {
    const s = `${ns}:s`;
    await t.read("g", "c1", [s], { blockMs: 0 }); // Creates the group before anything is sent.
    const reading = t.read("g", "c1", [s], { blockMs: 5000 });
    await delay(50);
    await t.append(s, utf8("wake"));
    assert.deepEqual(texts(await reading), ["wake"]);
  });

  test(
    "read() from '0' returns the consumer's entries until they are acknowledged",
    async (t, ns) => {
      const s = `${ns}:s`;
      for (const m of ["a", "b", "c"]) await t.append(s, utf8(m));
      const read = await t.read("g", "c1", [s], { blockMs: 0 });
      assert.equal(read.length, 3);
      const again = await t.read("g", "c1", [s], { from: "0", blockMs: 0 });
      assert.deepEqual(again.map((e) => e.id), read.map((e) => e.id));
      assert.deepEqual(texts(again), ["a", "b", "c"]);
      assert.ok(again.every((e) => e.deliveries >= 1));
      assert.deepEqual(await t.read("g", "c2", [s], { from: "0", blockMs: 0 }), []);
      await t.ack(s, "g", [read[0].id, read[1].id]);
      assert.deepEqual(texts(await t.read("g", "c1", [s], { from: "0", blockMs: 0 })), ["c"]);
      await t.ack(s, "g", [read[2].id]);
      assert.deepEqual(await t.read("g", "c1", [s], { from: "0", blockMs: 0 }), []);
      assert.deepEqual(await t.read("g", "c1", [s], { blockMs: 0 }), []);
    },
  );

  test(
    "claim() hands a dead consumer's unacknowledged entries to another, deliveries 2",
    async (t, ns) => {
      const s = `${ns}:s`;
      await t.append(s, utf8("x"));
      await t.append(s, utf8("y"));
      const taken = await t.read("g", "dead", [s], { blockMs: 0 });
      assert.equal(taken.length, 2);
      assert.deepEqual(await t.claim(s, "g", "alive", 60_000), []);
      await delay(100);
      const claimed = await t.claim(s, "g", "alive", 50);
      assert.deepEqual(claimed.map((e) => e.id), taken.map((e) => e.id));
      assert.deepEqual(texts(claimed), ["x", "y"]);
      assert.deepEqual(claimed.map((e) => e.deliveries), [2, 2]);
      assert.ok(claimed.every((e) => e.stream === s));
      assert.equal((await t.read("g", "alive", [s], { from: "0", blockMs: 0 })).length, 2);
      assert.deepEqual(await t.read("g", "dead", [s], { from: "0", blockMs: 0 }), []);
      await t.ack(s, "g", claimed.map((e) => e.id));
      await delay(100);
      assert.deepEqual(await t.claim(s, "g", "third", 0), []);
    },
  );

  test(
    "claimFrom() hands one consumer's pending entries to another, however fresh, deliveries 2",
    async (t, ns) => {
      const s = `${ns}:s`;
      for (const x of ["x", "y", "z"]) await t.append(s, utf8(x));
      const dead = await t.read("g", "dead", [s], { count: 2, blockMs: 0 });
      const alive = await t.read("g", "alive", [s], { blockMs: 0 });
      assert.deepEqual(texts(alive), ["z"]);
      const claimed = await t.claimFrom(s, "g", "dead", "heir");
      assert.deepEqual(claimed.map((e) => e.id), dead.map((e) => e.id));
      assert.deepEqual(texts(claimed), ["x", "y"]);
      assert.deepEqual(claimed.map((e) => e.deliveries), [2, 2]);
      assert.ok(claimed.every((e) => e.stream === s));
      assert.deepEqual(await t.claimFrom(s, "g", "dead", "heir"), []);
      assert.deepEqual(texts(await t.read("g", "alive", [s], { from: "0", blockMs: 0 })), ["z"]);
      assert.equal((await t.read("g", "heir", [s], { from: "0", blockMs: 0 })).length, 2);
      assert.deepEqual(await t.claimFrom(`${ns}:none`, "g", "dead", "heir"), []);
      assert.deepEqual(await t.claimFrom(s, "nogroup", "dead", "heir"), []);
    },
  );

  test(
    "claim() of several streams at once takes each one's stale entries, skipping streams without the group",
    async (t, ns) => {
      const [a, b, none, other] = [`${ns}:a`, `${ns}:b`, `${ns}:none`, `${ns}:other`];
      await t.append(a, utf8("a1"));
      await t.append(b, utf8("b1"));
      await t.append(b, utf8("b2"));
      await t.append(other, utf8("o1")); // no group "g" on it
      assert.equal((await t.read("g", "dead", [a, b], { blockMs: 0 })).length, 3);
      await delay(100);
      const claimed = await t.claim([a, none, other, b], "g", "alive", 50);
      assert.deepEqual(claimed.map((e) => [e.stream, e.deliveries]), [[a, 2], [b, 2], [b, 2]]);
      assert.deepEqual(texts(claimed), ["a1", "b1", "b2"]);
      assert.equal((await t.read("g", "alive", [a, b], { from: "0", blockMs: 0 })).length, 3);
      assert.deepEqual(await t.claim([a, b], "g", "third", 60_000), []);
      assert.deepEqual(await t.claim([], "g", "third", 0), []);
    },
  );

  test("claim() returns [] for a stream or group that does not exist", async (t, ns) => {
    assert.deepEqual(await t.claim(`${ns}:none`, "g", "c", 0), []);
    await t.append(`${ns}:s`, utf8("x"));
    assert.deepEqual(await t.claim(`${ns}:s`, "nogroup", "c", 0), []);
  });

  test("trim() keeps the newest maxLen entries", async (t, ns) => {
    const s = `${ns}:s`;
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await t.append(s, utf8(`m${i}`)));
    await t.trim(s, 3);
    assert.deepEqual((await t.range(s)).map((e) => e.id), ids.slice(7));
    await t.trim(s, 0);
    assert.deepEqual(await t.range(s), []);
  });

  test(
    "trimAcknowledged() deletes only entries every group has had delivered and acknowledged",
    async (t, ns) => {
      const s = `${ns}:s`;
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push(await t.append(s, utf8(`m${i}`)));
      const left = async () => (await t.range(s)).map((e) => e.id);
      // No group reads the stream yet: every entry may still be wanted.
      assert.equal(await t.trimAcknowledged(s, 0), 0);
      assert.deepEqual(await left(), ids);
      // Group g: m0–m5 delivered, m0–m2 and m4 acknowledged, m3 and m5 pending.
      const read = await t.read("g", "c1", [s], { blockMs: 0, count: 6 });
      await t.ack(s, "g", [ids[0], ids[1], ids[2], ids[4]]);
      assert.deepEqual(read.map((e) => e.id), ids.slice(0, 6));
      assert.equal(await t.trimAcknowledged(s, 0), 3);
      assert.deepEqual(await left(), ids.slice(3));
      // A pending entry holds back everything after it; undelivered entries always stay.
      await t.ack(s, "g", [ids[3], ids[5]]);
      assert.equal(await t.trimAcknowledged(s, 0), 3);
      assert.deepEqual(await left(), ids.slice(6));
      // A second group that has read nothing holds back everything.
      await t.read("h", "c1", [s], { blockMs: 0, count: 1 });
      assert.equal(await t.trimAcknowledged(s, 0), 0);
      const rest = await t.read("h", "c1", [s], { blockMs: 0, from: "0" });
      await t.ack(s, "h", rest.map((e) => e.id));
      await t.read("g", "c1", [s], { blockMs: 0, count: 2 }).then((e) =>
        t.ack(s, "g", e.map((x) => x.id))
      );
      // m6 is done for both; m7 is done for g but not yet delivered to h.
      assert.equal(await t.trimAcknowledged(s, 0), 1);
      assert.deepEqual(await left(), ids.slice(7));
      const hs = await t.read("h", "c1", [s], { blockMs: 0 });
      await t.ack(s, "h", hs.map((e) => e.id));
      // m8 and m9 are not yet delivered to g.
      assert.equal(await t.trimAcknowledged(s, 0), 1);
      assert.deepEqual(await left(), ids.slice(8));
      assert.equal(await t.trimAcknowledged(`${ns}:none`, 0), 0);
    },
  );

  test("trimAcknowledged() keeps acknowledged entries younger than retainMs", async (t, ns) => {
    const s = `${ns}:s`;
    for (let i = 0; i < 5; i++) await t.append(s, utf8(`old${i}`));
    await delay(300);
    for (let i = 0; i < 5; i++) await t.append(s, utf8(`new${i}`));
    const entries = await t.read("g", "c1", [s], { blockMs: 0 });
    await t.ack(s, "g", entries.map((e) => e.id));
    assert.equal(await t.trimAcknowledged(s, 60_000), 0);
    assert.equal(await t.trimAcknowledged(s, 150), 5);
    assert.deepEqual(texts(await t.range(s)), ["new0", "new1", "new2", "new3", "new4"]);
    assert.equal(await t.trimAcknowledged(s, 0), 5);
    assert.deepEqual(await t.range(s), []);
    // The group goes on where it was: new entries are delivered, old ones are not again.
    await t.append(s, utf8("after"));
    assert.deepEqual(texts(await t.read("g", "c1", [s], { blockMs: 0 })), ["after"]);
    assert.equal(await t.backlog(s, "g"), 1);
  });

  test(
    "append() and appendMany() with maxLen keep about that many newest entries",
    async (t, ns) => {
      const s = `${ns}:s`;
      let last = "";
      for (let i = 0; i < 300; i++) last = await t.append(s, utf8(`m${i}`), { maxLen: 10 });
      let kept = await t.range(s);
      assert.ok(kept.length >= 10 && kept.length < 300, `kept ${kept.length} entries`);
      assert.equal(kept[kept.length - 1].id, last);
      const many = Array.from({ length: 300 }, (_, i) => ({ stream: s, data: utf8(`n${i}`) }));
      const ids = await t.appendMany(many, { maxLen: 10 });
      kept = await t.range(s);
      assert.ok(kept.length >= 10 && kept.length < 300, `kept ${kept.length} entries`);
      assert.deepEqual(kept.slice(-10).map((e) => e.id), ids.slice(-10));
    },
  );

  test(
    "append() and appendMany() with maxAgeMs drop the entries older than that",
    async (t, ns) => {
      const s = `${ns}:s`;
      for (let i = 0; i < 5; i++) await t.append(s, utf8(`old${i}`));
      await delay(60);
      const kept = await t.append(s, utf8("new"), { maxAgeMs: 30 });
      assert.deepEqual((await t.range(s)).map((e) => e.id), [kept]);
      await delay(60);
      const ids = await t.appendMany([{ stream: s, data: utf8("a") }, {
        stream: s,
        data: utf8("b"),
      }], {
        maxAgeMs: 30,
      });
      assert.deepEqual((await t.range(s)).map((e) => e.id), ids);
    },
  );

  test("range() reads in order from an inclusive start, at most count entries", async (t, ns) => {
    const s = `${ns}:s`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await t.append(s, utf8(`m${i}`)));
    const all = await t.range(s);
    assert.deepEqual(all.map((e) => e.id), ids);
    assert.deepEqual(texts(all), ["m0", "m1", "m2", "m3", "m4"]);
    assert.ok(all.every((e) => e.stream === s));
    assert.deepEqual((await t.range(s, ids[2])).map((e) => e.id), ids.slice(2));
    assert.deepEqual((await t.range(s, "-", 2)).map((e) => e.id), ids.slice(0, 2));
    assert.deepEqual(await t.range(`${ns}:none`), []);
    // range() reads outside any group: nothing is delivered.
    assert.equal((await t.read("g", "c1", [s], { blockMs: 0 })).length, 5);
  });

  test(
    "backlog() counts entries not yet delivered to the group plus those pending",
    async (t, ns) => {
      const s = `${ns}:s`;
      assert.equal(await t.backlog(s, "g"), 0);
      for (let i = 0; i < 5; i++) await t.append(s, utf8(`m${i}`));
      assert.equal(await t.backlog(s, "g"), 5);
      const read = await t.read("g", "c1", [s], { count: 2, blockMs: 0 });
      assert.equal(await t.backlog(s, "g"), 5);
      await t.ack(s, "g", read.map((e) => e.id));
      assert.equal(await t.backlog(s, "g"), 3);
      const rest = await t.read("g", "c1", [s], { blockMs: 0 });
      assert.equal(await t.backlog(s, "g"), 3);
      await t.ack(s, "g", rest.map((e) => e.id));
      assert.equal(await t.backlog(s, "g"), 0);
      assert.equal(await t.backlog(s, "other"), 5);
    },
  );

  test(
    "large entries and values are stored as written, whatever callers do to their bytes",
    async (t, ns) => {
      const s = `${ns}:s`;
      const written = randomBytes(1024 * 1024);
      const original = written.slice();
      await t.append(s, written);
      await t.appendMany([{ stream: s, data: written }]);
      await t.putBlob(`${ns}:blob`, written, 60_000);
      written.fill(0); // the writer reuses its buffer
      const read = await t.read("g", "c1", [s], { blockMs: 0 });
      assert.equal(read.length, 2);
      for (const entry of read) assertBytes(entry.data, original);
      const blob = await t.getBlob(`${ns}:blob`);
      assertBytes(blob, original);
      for (const entry of read) entry.data!.fill(1); // readers own what they read
      blob!.fill(1);
      for (const entry of await t.range(s)) assertBytes(entry.data, original);
      for (const entry of await t.read("g", "c1", [s], { from: "0" })) {
        assertBytes(entry.data, original);
      }
      assertBytes(await t.getBlob(`${ns}:blob`), original);
    },
  );

  test("putBlobIfAbsent() stores only where no value is, one of racing callers", async (t, ns) => {
    const key = `${ns}:owner`;
    const tries = await Promise.all(
      Array.from({ length: 8 }, (_, i) => t.putBlobIfAbsent(key, utf8(`caller ${i}`), 60_000)),
    );
    assert.equal(tries.filter(Boolean).length, 1);
    const winner = tries.indexOf(true);
    assert.equal(decoder.decode((await t.getBlob(key)) ?? undefined), `caller ${winner}`);
    assert.equal(await t.putBlobIfAbsent(key, utf8("late"), 60_000), false);
    assert.equal(await t.putBlobIfAbsent(`${ns}:short`, utf8("soon gone"), 50), true);
    await delay(150);
    assert.equal(await t.putBlobIfAbsent(`${ns}:short`, utf8("again"), 60_000), true);
    assert.equal(decoder.decode((await t.getBlob(`${ns}:short`)) ?? undefined), "again");
    await assert.rejects(t.putBlobIfAbsent(`${ns}:bad`, utf8("x"), 0), RangeError);
  });

  test("putBlob() stores a value getBlob() returns until its ttl passes", async (t, ns) => {
    const value = randomBytes(1024);
    await t.putBlob(`${ns}:blob`, value, 60_000);
    assertBytes(await t.getBlob(`${ns}:blob`), value);
    await t.putBlob(`${ns}:short`, utf8("soon gone"), 50);
    assert.equal(decoder.decode((await t.getBlob(`${ns}:short`)) ?? undefined), "soon gone");
    await delay(150);
    assert.equal(await t.getBlob(`${ns}:short`), null);
    assert.equal(await t.getBlob(`${ns}:never`), null);
    // A ttl that is not a positive number is refused, and nothing is stored.
    for (const ttl of [0, -1, Number.NaN]) {
      await assert.rejects(t.putBlob(`${ns}:bad`, utf8("x"), ttl), RangeError);
    }
    assert.equal(await t.getBlob(`${ns}:bad`), null);
  });

  test(
    "deleteBlobs() deletes those values and nothing else, missing ones skipped",
    async (t, ns) => {
      await t.putBlob(`${ns}:v1`, utf8("gone"), 60_000);
      await t.putBlob(`${ns}:v10`, utf8("kept"), 60_000);
      await t.putBlob(`${ns}:v2`, utf8("gone"), 60_000);
      await t.deleteBlobs([`${ns}:v1`, `${ns}:v2`, `${ns}:never`]);
      await t.deleteBlobs([]);
      assert.equal(await t.getBlob(`${ns}:v1`), null);
      assert.equal(await t.getBlob(`${ns}:v2`), null);
      assert.equal(decoder.decode((await t.getBlob(`${ns}:v10`)) ?? undefined), "kept");
    },
  );

  test(
    "deletePrefix() deletes the streams and values under the prefix and nothing else",
    async (t, ns) => {
      await t.append(`${ns}:a:s`, utf8("gone"));
      await t.read("g", "c1", [`${ns}:a:s`], { blockMs: 0 });
      await t.putBlob(`${ns}:a:blob`, utf8("gone"), 60_000);
      await t.append(`${ns}:ab`, utf8("kept"));
      await t.putBlob(`${ns}:b:blob`, utf8("kept"), 60_000);
      await t.append(`${ns}:g[1]:s`, utf8("gone"));
      await t.append(`${ns}:g1:s`, utf8("kept"));
      await t.append(`${ns}:g*:s`, utf8("kept"));
      await t.deletePrefix(`${ns}:a:`);
      await t.deletePrefix(`${ns}:g[1]`);
      assert.deepEqual(await t.range(`${ns}:a:s`), []);
      assert.equal(await t.getBlob(`${ns}:a:blob`), null);
      assert.deepEqual(await t.range(`${ns}:g[1]:s`), []);
      assert.deepEqual(texts(await t.range(`${ns}:ab`)), ["kept"]);
      assert.deepEqual(texts(await t.range(`${ns}:g1:s`)), ["kept"]);
      assert.deepEqual(texts(await t.range(`${ns}:g*:s`)), ["kept"]);
      assert.equal(decoder.decode((await t.getBlob(`${ns}:b:blob`)) ?? undefined), "kept");
      // A deleted stream starts afresh, group included.
      await t.append(`${ns}:a:s`, utf8("new"));
      assert.deepEqual(texts(await t.read("g", "c1", [`${ns}:a:s`], { blockMs: 0 })), ["new"]);
    },
  );

  test(
    "append() and putBlob() round-trip every byte value, empty and 1 MiB payloads exactly",
    async (t, ns) => {
      const s = `${ns}:s`;
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const big = randomBytes(1 << 20);
      const empty = new Uint8Array(0);
      for (const data of [all, big, empty]) await t.append(s, data);
      const read = await t.read("g", "c1", [s], { blockMs: 0 });
      assert.equal(read.length, 3);
      assertBytes(read[0].data, all);
      assertBytes(read[1].data, big);
      assertBytes(read[2].data, empty);
      assertBytes((await t.range(s))[1].data, big);
      await t.putBlob(`${ns}:blob`, big, 60_000);
      assertBytes(await t.getBlob(`${ns}:blob`), big);
      await t.putBlob(`${ns}:bytes`, all, 60_000);
      assertBytes(await t.getBlob(`${ns}:bytes`), all);
    },
  );

  test("appendMany() appends in order across streams and returns the ids", async (t, ns) => {
    const a = `${ns}:a`;
    const b = `${ns}:b`;
    const entries = ["a0", "b0", "a1", "a2", "b1"].map((m) => ({
      stream: m.startsWith("a") ? a : b,
      data: utf8(m),
    }));
    const ids = await t.appendMany(entries);
    assert.equal(ids.length, 5);
    assert.deepEqual((await t.range(a)).map((e) => e.id), [ids[0], ids[2], ids[3]]);
    assert.deepEqual(texts(await t.range(b)), ["b0", "b1"]);
    assert.deepEqual(texts(await t.read("g", "c1", [a], { blockMs: 0 })), ["a0", "a1", "a2"]);
    assert.deepEqual(await t.appendMany([]), []);
  });

  Deno.test({
    name: `${name}: close() is idempotent and makes every later call reject`,
    ignore: options.ignore ?? false,
    sanitizeOps: true,
    sanitizeResources: true,
    async fn() {
      await using handle = await open();
      const t = handle.transport;
      const s = `${uniqueNamespace()}:s`;
      await t.close();
      await t.close();
      const calls: [string, () => Promise<unknown>][] = [
        ["append", () => t.append(s, utf8("x"))],
        ["appendMany", () => t.appendMany([{ stream: s, data: utf8("x") }])],
        ["read", () => t.read("g", "c", [s], { blockMs: 0 })],
        ["blocking read", () => t.read("g", "c", [s], { blockMs: 100 })],
        ["ack", () => t.ack(s, "g", ["1-1"])],
        ["claim", () => t.claim(s, "g", "c", 0)],
        ["range", () => t.range(s)],
        ["backlog", () => t.backlog(s, "g")],
        ["trim", () => t.trim(s, 1)],
        ["putBlob", () => t.putBlob(s, utf8("x"), 1000)],
        ["getBlob", () => t.getBlob(s)],
        ["deletePrefix", () => t.deletePrefix(s)],
      ];
      for (const [method, call] of calls) {
        await assert.rejects(call, TransportClosedError, `${method} after close()`);
      }
    },
  });
}
