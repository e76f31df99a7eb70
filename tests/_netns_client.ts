/**
 * The client side of a multi-host test or bench, run as its own process in the client's network
 * namespace (the test itself runs in the root namespace). It reads one JSON command per line on
 * stdin and prints one JSON line per answer, `{ "id", "ok", "value" | "error" }`, and one per
 * client event, `{ "event": "enginedied" | "enginerestarted", "detail" }`.
 *
 * Commands (`op`): `connect` (`url`, `cluster`, `keyFile`, `n`, `heartbeatTimeoutMs`), `call`
 * (`kind`: `"broadcast"`, `"size"` (each engine's `size`), `"direct"` with `engineId`, `"allreduce"`; `timeout`), `time` (the same
 * `kind`, `iterations`: each call's ms), `close`.
 *
 * @module
 */
import { Cluster } from "../mod.ts";
import type { Client } from "../actors/client/client.ts";

type Command = {
  id: number;
  op: "connect" | "call" | "time" | "close";
  url?: string;
  cluster?: string;
  keyFile?: string;
  n?: number;
  heartbeatTimeoutMs?: number;
  kind?: "broadcast" | "size" | "direct" | "allreduce";
  engineId?: number;
  timeout?: number;
  iterations?: number;
};

/** The cluster's size in the engines' namespaces. */
declare const size: number;

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
        timeout: 30_000,
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
        (error) =>
          print({
            id: command.id,
            ok: false,
            error: { name: error?.name, message: String(error?.message ?? error) },
          }),
      ),
    );
  }
}
await Promise.allSettled(running);
await client?.close();
Deno.exit(0);
