/**
 * Codec fuzz test: 10,000 random and mutated envelopes into a real engine's inbox, on both
 * transports. Every bad entry is dead-lettered and counted by reason; validly signed envelopes of
 * a known type with content of the wrong shape get a `TypeError` answer; nothing runs; the engine
 * still answers a good `apply` afterwards.
 *
 * The generator is seeded: a failure prints the seed, and `FUZZ_SEED=<n>` replays it.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { engineActor } from "../actors/host/engine_actor.ts";
import { ActorSystem } from "../actors/core/system.ts";
import { FunctionSource, Reference } from "../actors/protocol/wire_types.ts";
import { RemoteError } from "../errors.ts";
import { encodeValue } from "../transport/codec.ts";
import {
  type ClusterKey,
  type Envelope,
  generateKey,
  namespaceKey,
  sealEnvelope,
  WIRE_VERSION,
} from "../transport/envelope.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { waitUntil } from "./_async.ts";
import { BACKENDS, forEachBackend, storeOn } from "./_backends.ts";
import { prng } from "./_random.ts";
import type { EngineResult } from "../actors/protocol/results.ts";
import type { DeadLetterReason } from "../actors/core/system_types.ts";

const MAX_MESSAGE_BYTES = 64 * 1024;
const ENGINE = "engine.0";

/** One generated entry and what the engine's system must do with it. */
interface Case {
  data: Uint8Array;
  /** Dead-lettered for this reason, or answered with a `TypeError` (`"answer"`). */
  expect: DeadLetterReason | "answer";
  /** The message id an answer is expected for (unknown types and bad content). */
  replyId?: string;
}

/** What `openEnvelope` rejects `bytes` for, given that the bytes are not a valid envelope. */
function rejection(bytes: Uint8Array): DeadLetterReason {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) return "oversized";
  if (bytes.byteLength <= 33) return "truncated";
  if (bytes[0] !== WIRE_VERSION) return "version";
  return "signature";
}

/** Signs `body` as `sealEnvelope` does, whatever it is: the signature verifies. */
function signRaw(body: Uint8Array, key: ClusterKey): Uint8Array {
  const out = new Uint8Array(33 + body.byteLength);
  out[0] = WIRE_VERSION;
  out.set(body, 33);
  out.set(createHmac("sha256", key).update(out.subarray(0, 1)).update(body).digest(), 1);
  return out;
}

function generate(
  seed: number,
  key: ClusterKey,
  replyTo: string,
  counter: string,
): Case[] {
  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  let serial = 0;
  // If any of these ran, the counter would move: the test asserts it does not.
  const task = new FunctionSource(`() => { globalThis[${JSON.stringify(counter)}]++; }`);
  const envelope = (over: Partial<Envelope> = {}): Envelope => ({
    id: `fuzz-${serial++}`,
    type: "apply",
    from: "fuzzer",
    to: ENGINE,
    replyTo,
    sent: Date.now(),
    content: { fn: task, args: [int(1000)] },
    ...over,
  });
  const sealed = () => sealEnvelope(envelope(), key);
  const cases: Case[] = [];

  // Random bytes; half of them with the right version byte.
  for (let i = 0; i < 2000; i++) {
    const data = bytes(int(300));
    if (i % 2 === 0 && data.length > 0) data[0] = WIRE_VERSION;
    cases.push({ data, expect: rejection(data) });
  }
  // Valid envelopes with 1 to 4 bytes changed.
  for (let i = 0; i < 2000; i++) {
    const data = sealed();
    const positions = new Set<number>();
    const flips = 1 + int(4);
    while (positions.size < flips) positions.add(int(data.length));
    for (const p of positions) data[p] ^= 1 + int(255);
    cases.push({ data, expect: rejection(data) });
  }
  // Truncations.
  for (let i = 0; i < 1500; i++) {
    const whole = sealed();
    const data = whole.slice(0, int(whole.length));
    cases.push({ data, expect: rejection(data) });
  }
  // Wrong version byte.
  for (let i = 0; i < 500; i++) {
    const data = sealed();
    data[0] = pick([0, 2, 3, 0x7f, 0x80, 0xff]);
    cases.push({ data, expect: "version" });
  }
  // Signed with the right key over a body that is not an envelope.
  const junk = (): unknown =>
    pick<() => unknown>([
      () => int(1e6),
      () => "x".repeat(int(50)),
      () => null,
      () => [],
      () => Array.from({ length: int(12) }, () => int(10)),
      () => ({ id: "x", type: "apply" }),
      () => bytes(int(40)),
      () => new Map([[1, 2]]),
    ])();
  for (let i = 0; i < 1500; i++) {
    let body: Uint8Array;
    switch (i % 5) {
      case 0: // random bytes
        body = bytes(1 + int(200));
        break;
      case 1: // MessagePack of something else
        body = encodeValue(junk());
        break;
      case 2: { // 9 fields, one of the wrong type
        const fields: unknown[] = [
          "id",
          "apply",
          "fuzzer",
          ENGINE,
          null,
          replyTo,
          1,
          null,
          sealed(),
        ];
        fields[pick([0, 1, 2, 3, 6, 8])] = pick([5, null, true, [], "s"].filter((v) => v !== "s"));
        body = encodeValue(fields);
        break;
      }
      case 3: // the right fields, content that is not MessagePack
        body = encodeValue([
          `fuzz-${serial++}`,
          "apply",
          "fuzzer",
          ENGINE,
          null,
          replyTo,
          Date.now(),
          null,
          pick([new Uint8Array([0xc1]), new Uint8Array([0x92, 0x01]), new Uint8Array(0)]),
        ]);
        break;
      default: // the wrong number of fields
        body = encodeValue(
          ["id", "apply", "fuzzer", ENGINE, null, replyTo, 1, null, encodeValue(1), 1].slice(
            0,
            pick([0, 1, 8, 10]),
          ),
        );
    }
    cases.push({ data: signRaw(body, key), expect: "malformed" });
  }
  // Validly signed, too large.
  for (let i = 0; i < 200; i++) {
    const data = sealEnvelope(
      envelope({ content: { fn: task, args: [bytes(MAX_MESSAGE_BYTES + int(1000))] } }),
      key,
    );
    cases.push({ data, expect: "oversized" });
  }
  // Validly signed, of a type the engine has no handler for: dead-lettered and answered.
  const types = ["toString", "constructor", "__proto__", "hasOwnProperty", "valueOf", "", "eval"];
  for (let i = 0; i < 300; i++) {
    const type = i < types.length ? types[i] : `type-${int(1e9).toString(36)}`;
    const e = envelope({ type });
    cases.push({ data: sealEnvelope(e, key), expect: "unknown-type", replyId: e.id });
  }
  // Validly signed, of a known type, with content of the wrong shape: answered, not run.
  const fs = task;
  const shapes: [string, unknown][] = [
    ["apply", null],
    ["apply", 5],
    ["apply", "() => 1"],
    ["apply", []],
    ["apply", { fn: 42, args: [] }],
    ["apply", { fn: "() => 1", args: [] }],
    ["apply", { fn: { source: "() => 1" }, args: [] }],
    ["apply", { fn: null, args: [] }],
    ["apply", { args: [] }],
    ["apply", { fn: fs }],
    ["apply", { fn: fs, args: 5 }],
    ["apply", { fn: fs, args: "abc" }],
    ["apply", { fn: fs, args: { length: 1, 0: 1 } }],
    ["apply", { fn: new Reference("f"), args: null }],
    ["execute", null],
    ["execute", {}],
    ["execute", { code: 5 }],
    ["execute", "globalThis.x = 1"],
    ["push", null],
    ["push", { values: 5 }],
    ["push", { values: null }],
    ["push", { values: "abc" }],
    ["push", { values: [1, 2] }],
    ["pull", null],
    ["pull", { names: "x" }],
    ["pull", { names: [1] }],
    ["pull", { names: { a: 1 } }],
    ["wireTree", null],
    ["wireTree", {}],
    ["wireTree", { wiring: 1, ids: [0], tree: [[0, null]] }],
    ["wireTree", { wiring: "w", ids: "0", tree: [], heartbeatMs: 1, livenessMs: 1 }],
    ["abort", null],
    ["abort", { id: 5 }],
  ];
  for (let i = 0; i < 2000; i++) {
    const [type, content] = shapes[i % shapes.length];
    const e = envelope({ type, content });
    cases.push({ data: sealEnvelope(e, key), expect: "answer", replyId: e.id });
  }
  // Shuffle, so that every kind meets every other in the reader's batches.
  for (let i = cases.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [cases[i], cases[j]] = [cases[j], cases[i]];
  }
  return cases;
}

forEachBackend(BACKENDS, (test) => {
  test(
    "Engine survives 10,000 random and mutated envelopes and dead-letters every bad one",
    async (backend) => {
      const seed = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));
      const namespace = uniqueNamespace();
      const counter = `__fuzzRuns_${namespace}`;
      const globals = globalThis as unknown as Record<string, number>;
      globals[counter] = 0;
      await using store = storeOn(backend, namespace);
      const key = generateKey();
      const transport = await store.transport();
      // An engine host as `EngineHost.start` makes one, with a small message limit.
      const host = new ActorSystem({
        transport,
        key,
        namespace,
        id: "fuzz-host",
        blockMs: 100,
        maxMessageBytes: MAX_MESSAGE_BYTES,
        deadLetters: { maxLen: 20_000 },
      });
      const client = new ActorSystem({ transport: await store.transport(), key, namespace });
      const errors: unknown[] = [];
      host.addEventListener("error", (e) => errors.push((e as ErrorEvent).error));
      try {
        host.spawn(ENGINE, engineActor({ id: 0, size: 1, transport }).definition);
        const cases = generate(seed, namespaceKey(key, namespace), client.replyAddress, counter);
        assert.equal(cases.length, 10_000);
        const expected: Record<string, number> = {};
        for (const c of cases) expected[c.expect] = (expected[c.expect] ?? 0) + 1;
        const answers = cases.filter((c) => c.replyId).map((c) =>
          client.expectReply(c.replyId!, ENGINE, 60_000).then(
            (value) => ({ value }),
            (error: unknown) => ({ error }),
          )
        );

        const inbox = host.inboxOf(ENGINE);
        for (let i = 0; i < cases.length; i += 500) {
          await client.transport.appendMany(
            cases.slice(i, i + 500).map((c) => ({ stream: inbox, data: c.data })),
          );
        }
        const bad = cases.length - expected.answer;
        await waitUntil(
          () => `${bad} dead letters (seed ${seed}, ${JSON.stringify(host.stats)})`,
          () => host.stats.deadLettered >= bad,
          30_000,
        );
        const outcomes = await Promise.all(answers);

        const where = `seed ${seed}`;
        const { answer: _, ...deadLetters } = expected;
        const stats = host.stats;
        assert.equal(stats.deadLettered, bad, where);
        for (const [reason, count] of Object.entries(stats.deadLetters)) {
          assert.equal(count, deadLetters[reason] ?? 0, `${reason} dead letters, ${where}`);
        }
        await waitUntil(
          "the dead-letter stream",
          async () => (await transport.range(host.deadLetterStream)).length >= bad,
          10_000,
        );
        assert.equal((await transport.range(host.deadLetterStream)).length, bad, where);
        assert.equal(outcomes.length, expected.answer + expected["unknown-type"]);
        for (const outcome of outcomes) {
          assert.ok("error" in outcome, `answered with a value: ${JSON.stringify(outcome)}`);
          assert.ok(outcome.error instanceof RemoteError, String(outcome.error));
          assert.equal(outcome.error.remoteName, "TypeError", outcome.error.message);
        }
        assert.equal(globals[counter], 0, "a fuzzed message ran");
        assert.deepEqual(errors, []);

        // The engine still works.
        const result = await client.ask<EngineResult>(ENGINE, "apply", {
          fn: new FunctionSource(
            `(n) => { globalThis[${JSON.stringify(counter)}]++; return n * 2; }`,
          ),
          args: [21],
        }, { timeout: 10_000 });
        assert.equal(result.value, 42);
        assert.equal(globals[counter], 1);
      } finally {
        await client.close();
        await host.close();
        delete globals[counter];
      }
    },
    { timeoutMs: 300_000 },
  );
});
