/**
 * The client side of a multi-host test or bench, run as its own process in the client's network
 * namespace (the test itself runs in the root namespace). It reads one JSON command per line on
 * stdin and prints one JSON line per answer, `{ "id", "ok", "value" | "error" }`, and one per
 * client event, `{ "event": "enginedied" | "enginerestarted", "detail" }`.
 *
 * Commands (`op`): `connect` (`url`, `cluster`, `keyFile`, `n`, `heartbeatTimeoutMs`, `timeout`),
 * `call` (`kind`: `"broadcast"`, `"size"` (each engine's `size`), `"direct"` with `engineId`,
 * `"allreduce"`, `"id"` (a DirectView on `engineId`, or on all engines, answering each engine's
 * `id` after `sleepMs`), `"broadcastId"` (the same through a BroadcastView); `timeout`), `time`
 * (the same `kind`, `iterations`: each call's ms), `hosts` (each engine's host id, in `ids`
 * order), `shutdown` (`client.shutdown()`, with `timeout`), `close`. An error answer holds the
 * error's `name`, `message`, and `engineId`, `engineIds` and each of `errors` when it has them.
 *
 * @module
 */
import { Cluster } from "../mod.ts";
import type { Client } from "../actors/client/client.ts";

type Command = {
  id: number;
  op: "connect" | "call" | "time" | "hosts" | "shutdown" | "close";
  url?: string;
  cluster?: string;
  keyFile?: string;
  n?: number;
  heartbeatTimeoutMs?: number;
  kind?: "broadcast" | "size" | "direct" | "allreduce" | "id" | "broadcastId";
  engineId?: number;
  sleepMs?: number;
  timeout?: number;
  iterations?: number;
};

/** The cluster's size and the engine's id, in the engines' namespaces. */
declare const size: number;
declare const id: number;

/** Each engine's `id`, after `ms`: a call that stays in flight that long. */
async function idAfter(ms: number): Promise<number> {
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  return id;
}

/** What an error answer says of `error`: its type, message and the engines it names. */
function describe(error: unknown): Record<string, unknown> {
  const e = error as Partial<AggregateError & { engineId: number; engineIds: number[] }>;
  return {
    name: e?.name,
    message: String(e?.message ?? error),
    ...(typeof e?.engineId === "number" ? { engineId: e.engineId } : {}),
    ...(Array.isArray(e?.engineIds) ? { engineIds: e.engineIds } : {}),
    ...(Array.isArray(e?.errors) ? { errors: e.errors.map(describe) } : {}),
  };
}

const encoder = new TextEncoder();
function print(line: unknown): void {
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(line) + "\n"));
}

let client: Client | undefined;
let wired = false;

async function call(command: Command): Promise<unknown> {
  const c = client!;
  const timeout = command.timeout ?? 20_000;
  switch (command.kind) {
    case "broadcast":
      return await c.broadcastView().apply(() => 1).get({ timeout });
    case "size":
      return await c.broadcastView().apply(() => size).get({ timeout });
    case "direct":
      return await c.view(command.engineId ?? 0).apply(() => 1).get({ timeout });
    case "id":
      return await c.view(command.engineId).apply(idAfter, command.sleepMs ?? 0).get({ timeout });
    case "broadcastId":
      return await c.broadcastView().apply(idAfter, command.sleepMs ?? 0).get({ timeout });
    case "allreduce": {
      const bv = c.broadcastView();
      if (!wired) {
        await bv.wireTree();
        wired = true;
      }
      return await bv.execute("sum = await com.allreduce((a, b) => a + b, 1)")
        .get({ timeout }).then(() => bv.pull("sum").get({ timeout }));
    }
  }
  throw new TypeError(`unknown kind ${command.kind}`);
}

async function run(command: Command): Promise<unknown> {
  switch (command.op) {
    case "connect": {
      client = await Cluster.connect({
        transport: command.url!,
        cluster: command.cluster!,
        keyFile: command.keyFile!,
        n: command.n,
        timeout: command.timeout ?? 30_000,
        ...(command.heartbeatTimeoutMs ? { heartbeatTimeoutMs: command.heartbeatTimeoutMs } : {}),
      });
      for (const type of ["enginedied", "enginerestarted"]) {
        client.addEventListener(type, (e) => {
          print({ event: type, detail: (e as CustomEvent).detail });
        });
      }
      return client.ids;
    }
    case "call":
      return await call(command);
    case "time": {
      const times: number[] = [];
      for (let i = 0; i < (command.iterations ?? 10); i++) {
        const begun = performance.now();
        await call(command);
        times.push(performance.now() - begun);
      }
      return times;
    }
    case "hosts":
      return client!.ids.map((engineId) => client!.hostOf(engineId));
    case "shutdown":
      await client!.shutdown({ timeout: command.timeout });
      client = undefined;
      return null;
    case "close":
      await client?.close();
      client = undefined;
      return null;
  }
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buffered = "";
const running: Promise<void>[] = [];
for await (const chunk of lines) {
  buffered += chunk;
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const command = JSON.parse(buffered.slice(0, newline)) as Command;
    buffered = buffered.slice(newline + 1);
    running.push(
      run(command).then(
        (value) => print({ id: command.id, ok: true, value }),
        (error) => print({ id: command.id, ok: false, error: describe(error) }),
      ),
    );
  }
}
await Promise.allSettled(running);
await client?.close();
Deno.exit(0);
