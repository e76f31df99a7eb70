/**
 * Poison and stray messages (`actors/system.ts`): an entry whose handling keeps killing its host
 * is dead-lettered after `maxDeliveries` and its asker gets an error; a replacement host claims a
 * dead host's pending entries; unsigned, forged, truncated, oversized and unknown-type entries are
 * dead-lettered, counted and never run. On both transports.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../actors/core/system.ts";
import { RemoteError } from "../errors.ts";
import { encodeValue } from "../transport/codec.ts";
import { type Envelope, generateKey, namespaceKey, sealEnvelope } from "../transport/envelope.ts";
import { uniqueNamespace } from "./_redis_server.ts";
import { alarm, waitUntil } from "./_async.ts";
import { BACKENDS, forEachBackend, type Store, storeOn } from "./_backends.ts";

function parseDeadLetter(letter: Uint8Array): { stream: string; id: string; reason: string } {
  const length = new DataView(letter.buffer, letter.byteOffset, letter.byteLength).getUint32(0);
  return JSON.parse(new TextDecoder().decode(letter.subarray(4, 4 + length)));
}

forEachBackend(BACKENDS, (backendCase) => {
  function test(title: string, fn: (store: Store, namespace: string) => Promise<void>): void {
    backendCase(title, async (backend) => {
      const namespace = uniqueNamespace();
      await using store = storeOn(backend, namespace);
      await fn(store, namespace);
    }, { timeoutMs: 120_000 });
  }

  /**
   * Sends one `crash` ask, then runs hosts under `ids` in turn, each abandoned inside the handler
   * (the entry stays pending), until the ask fails. Returns the handler runs and the last host.
   */
  async function crashUntilPoisoned(
    store: Store,
    namespace: string,
    ids: readonly string[],
  ): Promise<{ attempts: number; error: unknown; last: ActorSystem; client: ActorSystem }> {
    const key = generateKey();
    const common = { key, namespace, blockMs: 100, claimIdleMs: 150, maxDeliveries: 3 };
    const client = new ActorSystem({ ...common, transport: await store.transport() });
    let error: unknown;
    client.ask("worker", "crash", null, { timeout: 20_000 }).catch((e) => (error = e));
    let attempts = 0;
    for (const id of ids) {
      const host = new ActorSystem({ ...common, id, transport: await store.transport() });
      const before = attempts;
      host.spawn("worker", {
        handlers: {
          crash: () => {
            attempts++;
            return new Promise(() => {}); // the host "dies" inside the handler
          },
          ok: () => "fine",
        },
      });
      try {
        await waitUntil("a run or a failed ask", () => attempts > before || error !== undefined);
      } catch (e) {
        await host.close();
        await client.close();
        throw e;
      }
      if (error !== undefined) return { attempts, error, last: host, client };
      await host.close(); // abandoned before the ack: the entry stays pending
    }
    await client.close();
    return assert.fail(`the ask did not fail after ${attempts} runs`);
  }

  test(
    "ActorSystem dead-letters a message that killed maxDeliveries hosts and fails its ask",
    async (store, namespace) => {
      // Each replacement claims the dead host's entry: one delivery per host.
      const { attempts, error, last, client } = await crashUntilPoisoned(
        store,
        namespace,
        ["host-a", "host-b", "host-c", "host-d"],
      );
      try {
        assert.equal(attempts, 3);
        assert.ok(error instanceof RemoteError, String(error));
        assert.equal(error.remoteName, "PoisonMessageError");
        assert.equal(
          error.remoteMessage,
          'Cannot handle "crash" on "worker": delivered 3 times without being handled',
        );
        assert.equal(last.id, "host-d");
        assert.equal(last.stats.deadLettered, 1);
        assert.equal(last.stats.deadLetters.poison, 1);
        await waitUntil(
          "the dead letter",
          async () => (await last.transport.range(last.deadLetterStream)).length === 1,
        );
        const [letter] = await last.transport.range(last.deadLetterStream);
        const record = parseDeadLetter(letter.data!);
        assert.equal(record.stream, last.inboxOf("worker"));
        assert.equal(record.reason, "delivered 3 times without being handled");
        // The host keeps serving.
        assert.equal(await client.ask("worker", "ok", null, { timeout: 5000 }), "fine");
      } finally {
        await last.close();
        await client.close();
      }
    },
  );

  test(
    "ActorSystem dead-letters a message that killed its host on restarts under the same id",
    async (store, namespace) => {
      const { attempts, error, last, client } = await crashUntilPoisoned(
        store,
        namespace,
        Array(5).fill("host-a"),
      );
      try {
        // Memory counts one delivery per restart. Redis counts two: the system's read of its
        // pending entries and the transport's own re-read after connecting.
        if (name === "memory") assert.equal(attempts, 3);
        else assert.ok(attempts >= 1 && attempts <= 3, `ran ${attempts} times`);
        assert.ok(error instanceof RemoteError, String(error));
        assert.equal(error.remoteName, "PoisonMessageError");
        assert.equal(last.stats.deadLetters.poison, 1);
      } finally {
        await last.close();
        await client.close();
      }
    },
  );

  test(
    "ActorSystem claims a dead host's pending entries after claimIdleMs and answers them",
    async (store, namespace) => {
      const key = generateKey();
      const client = new ActorSystem({ transport: await store.transport(), key, namespace });
      const dead = new ActorSystem({
        transport: await store.transport(),
        key,
        namespace,
        id: "dead",
        blockMs: 100,
      });
      try {
        let started = 0;
        dead.spawn("worker", {
          handlers: { job: () => (started++, new Promise(() => {})) },
        });
        const answers = [1, 2, 3].map((n) => client.ask("worker", "job", n, { timeout: 10_000 }));
        await waitUntil("the dead host to start a job", () => started === 1);
        await dead.close();
        using idle = alarm(150);
        const replacement = new ActorSystem({
          transport: await store.transport(),
          key,
          namespace,
          id: "replacement",
          blockMs: 100,
          claimIdleMs: 200,
        });
        replacement.spawn("worker", { handlers: { job: (n: number) => n * 10 } });
        // The first was delivered to the dead host and started; the other two were never read by
        // it (memory) or read and left pending (redis reads in batches): all three get answered.
        assert.deepEqual(await Promise.all(answers), [10, 20, 30]);
        assert.ok(idle.fired, "claimed before the entries were idle for claimIdleMs");
        assert.equal(replacement.stats.deadLettered, 0);
        await replacement.close();
      } finally {
        await dead.close();
        await client.close();
      }
    },
  );

  test(
    "ActorSystem dead-letters and counts stray entries and never runs them",
    async (store, namespace) => {
      const key = generateKey();
      const host = new ActorSystem({
        transport: await store.transport(),
        key,
        namespace,
        blockMs: 100,
        maxMessageBytes: 1024,
      });
      const client = new ActorSystem({ transport: await store.transport(), key, namespace });
      try {
        const calls: unknown[] = [];
        host.spawn("target", { handlers: { run: (content: unknown) => void calls.push(content) } });
        const envelope = (i: number, over: Partial<Envelope> = {}): Envelope => ({
          id: `stray-${i}`,
          type: "run",
          from: "intruder",
          to: "target",
          sent: Date.now(),
          content: i,
          ...over,
        });
        const sealed = (i: number) => sealEnvelope(envelope(i), namespaceKey(key, namespace));
        const bad: Uint8Array[] = [];
        // Unsigned: the bare body, and a header whose signature is all zeros.
        for (let i = 0; i < 10; i++) {
          bad.push(encodeValue(["x".repeat(40), "run", "i", "target", i]));
        }
        for (let i = 0; i < 10; i++) {
          const bytes = sealed(i);
          bytes.fill(0, 1, 33);
          bad.push(bytes);
        }
        // Signed with another key.
        const otherKey = generateKey();
        for (let i = 0; i < 10; i++) bad.push(sealEnvelope(envelope(i), otherKey));
        // Truncated: within the header, and inside the body.
        for (let i = 0; i < 10; i++) bad.push(sealed(i).subarray(0, 1 + i));
        for (let i = 0; i < 10; i++) bad.push(sealed(i).subarray(0, 40 + i));
        // Oversized, though validly signed.
        for (let i = 0; i < 10; i++) {
          bad.push(
            sealEnvelope(envelope(i, { content: "x".repeat(2000) }), namespaceKey(key, namespace)),
          );
        }
        // Wrong version byte.
        for (let i = 0; i < 10; i++) {
          const bytes = sealed(i);
          bytes[0] = 2 + i;
          bad.push(bytes);
        }
        const inbox = host.inboxOf("target");
        await client.transport.appendMany(bad.map((data) => ({ stream: inbox, data })));
        // Validly signed, of a type the actor has no handler for: dead-lettered, and the asker
        // gets a TypeError at once instead of waiting for its deadline.
        for (const type of ["nope", "toString", "__proto__"]) {
          await assert.rejects(
            client.ask("target", type, null, { timeout: 5000 }),
            (error: unknown) => {
              assert.ok(error instanceof RemoteError);
              assert.equal(error.remoteName, "TypeError");
              return true;
            },
          );
        }
        const total = bad.length + 3;
        await waitUntil(`${total} dead letters`, () => host.stats.deadLettered === total);
        assert.deepEqual(host.stats.deadLetters, {
          "no-payload": 0,
          oversized: 10,
          truncated: 10,
          version: 20,
          signature: 30,
          malformed: 0,
          "unknown-type": 3,
          poison: 0,
          replay: 0,
        });
        await waitUntil(
          "the dead-letter stream",
          async () => (await host.transport.range(host.deadLetterStream)).length === total,
        );
        assert.deepEqual(calls, []);
        assert.equal(await client.ask("target", "run", "good", { timeout: 5000 }), undefined);
        assert.deepEqual(calls, ["good"]);
      } finally {
        await client.close();
        await host.close();
      }
    },
  );
});
