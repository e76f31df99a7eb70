/**
 * A test bed of many machines on one: a network namespace each for Redis, the client and every
 * engine host, joined by veth pairs to a bridge the bed makes (addresses only on that bridge's
 * subnet; the root namespace gets one address on it, for the test's own Redis commands). Links are
 * cut with `ip link set … down`; a per-link delay, without `netem`, by a delaying TCP proxy
 * (`_delay_proxy.ts`) in front of Redis in every namespace but Redis's own: each way between a
 * machine and Redis takes `delayMs` more, as with one delaying queue per machine.
 *
 * Needs root and iproute2: {@linkcode netnsUnavailable} says why a bed cannot be made. Disposing
 * the bed kills every process it started and deletes its namespaces and bridge, however the test
 * ended; a bed left by a test process that died is deleted by the next one.
 *
 * @module
 */
import { toHex } from "../transport/key.ts";
import { generateKey } from "../transport/envelope.ts";
import { hasRedisServer, uniqueNamespace } from "./_redis_server.ts";
import { delay } from "./_async.ts";

const ROOT = new URL("..", import.meta.url);
const PREFIX = "dpn";

/** Runs `ip args…`; throws with its stderr when it fails. */
async function ip(...args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

let unavailable: Promise<string | undefined> | undefined;

/**
 * Why network namespaces cannot be made here (not Linux, not root, no `ip`, no `redis-server`,
 * or `ip netns add` fails), or `undefined` when they can.
 */
export function netnsUnavailable(): Promise<string | undefined> {
  return unavailable ??= (async () => {
    if (Deno.build.os !== "linux") return "network namespaces need Linux";
    if (Deno.uid() !== 0) return "network namespaces need root (CI runs as root)";
    if (!hasRedisServer()) return "no redis-server on PATH";
    try {
      await ip("-V");
    } catch {
      return "no `ip` command (install iproute2)";
    }
    const probe = `${PREFIX}probe${Deno.pid.toString(36)}`;
    try {
      await ip("netns", "add", probe);
      await ip("netns", "del", probe);
    } catch (error) {
      return `cannot make a network namespace: ${(error as Error).message}`;
    }
    await sweepStale();
    return undefined;
  })();
}

/** Deletes the namespaces and bridges of beds whose test process is gone. */
async function sweepStale(): Promise<void> {
  const alive = (tag: string) => {
    const pid = parseInt(tag.slice(0, -2), 36);
    try {
      // A zombie (killed, not yet reaped) is gone too.
      return !/^\d+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
    } catch {
      return false;
    }
  };
  const namespaces = (await ip("netns", "list")).split("\n").map((l) => l.split(" ")[0]);
  for (const ns of namespaces) {
    const match = /^dpn([0-9a-z]+)-/.exec(ns);
    if (!match || alive(match[1])) continue;
    // Its processes (Redis, engine hosts) outlived their test: end them with the namespace.
    const pids = await ip("netns", "pids", ns).catch(() => "");
    for (const pid of pids.split("\n").filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await ip("netns", "del", ns).catch(() => {});
  }
  const links = (await ip("-o", "link", "show", "type", "bridge")).split("\n");
  for (const line of links) {
    const match = /^\d+: (dpn([0-9a-z]+)br):/.exec(line);
    if (match && !alive(match[2])) await ip("link", "del", match[1]).catch(() => {});
  }
}

/** One machine of the bed: its namespace, address and the veth end on the bridge. */
export interface Machine {
  /** The namespace's name. */
  ns: string;
  /** Its address on the bridge. */
  address: string;
  /** Its veth end on the bridge, in the root namespace: down cuts the machine off. */
  link: string;
  /** The Redis URL its processes use: through its delaying proxy when the bed has a delay. */
  redisUrl: string;
}

/** A process the bed started in a machine's namespace. */
export interface BedProcess {
  child: Deno.ChildProcess;
  /** What it wrote on stderr so far (the last 16 kB). */
  stderr(): string;
}

/** An error a driver's command ended with, as the client's process described it. */
export interface DriverError extends Error {
  /** The engine it names (`EngineDiedError`, `RemoteError`, …). */
  engineId?: number;
  /** The engines it names (`CompositeError`, `TimeoutError`). */
  engineIds?: number[];
  /** Each engine's error, of a `CompositeError`. */
  errors?: DriverError[];
}

/** A client driver (`_netns_client.ts`) running in the client's namespace. */
export interface Driver {
  /** Sends a command, resolves to its value; rejects with the driver's error ({@linkcode DriverError}). */
  send(command: Record<string, unknown>): Promise<unknown>;
  /** The events the client dispatched so far, in order. */
  events: { event: string; detail: { engineId: number; [key: string]: unknown } }[];
  process: BedProcess;
}

/** Options of {@linkcode makeBed}. */
export interface BedOptions {
  /** How many engine-host machines. */
  hosts: number;
  /** The delay each way between a machine and Redis, in ms (0: no proxy). */
  delayMs?: number;
}

/** A /24 of 10.200–249.x.0 that no interface of the root namespace has an address in. */
function freeSubnet(): string {
  const used = new TextDecoder().decode(
    new Deno.Command("ip", { args: ["-o", "-4", "addr", "show"], stdout: "piped" }).outputSync()
      .stdout,
  );
  for (;;) {
    const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}`;
    if (!used.includes(` ${subnet}.`)) return subnet;
  }
}

/** A bed of network namespaces; `await using` tears it down. */
export class Bed implements AsyncDisposable {
  /** What the names of its namespaces, links and bridge start with (after `dpn`). */
  tag = "";
  readonly subnet: string;
  /** Redis's machine, the client's, and the engine hosts'. */
  redis!: Machine;
  client!: Machine;
  hosts!: Machine[];
  /** The Redis URL from the root namespace (the test's own commands), without delay. */
  readonly adminUrl: string;
  readonly cluster = uniqueNamespace();
  readonly delayMs: number;
  keyFile = "";
  #bridge = "";
  /** Whether the bed made its bridge: until then its names may be another bed's. */
  #named = false;
  readonly #processes: BedProcess[] = [];
  readonly #hostCount: number;
  #dir = "";

  constructor(options: BedOptions) {
    this.delayMs = options.delayMs ?? 0;
    this.subnet = freeSubnet();
    this.#hostCount = options.hosts;
    this.#name();
    this.adminUrl = `redis://${this.redis.address}:6379`;
  }

  /**
   * Names the bed anew: the test files of one `deno test --parallel` share a pid, and two random
   * letters after it tell their beds apart (the sweep reads the pid back). Two beds that drew the
   * same letters find out when the second makes its bridge (see {@linkcode up}).
   */
  #name(): void {
    const random = Math.floor(Math.random() * 36 * 36).toString(36).padStart(2, "0");
    this.tag = `${Deno.pid.toString(36)}${random}`;
    this.#bridge = `${PREFIX}${this.tag}br`;
    const machine = (name: string, n: number): Machine => ({
      ns: `${PREFIX}${this.tag}-${name}`,
      address: `${this.subnet}.${n}`,
      link: `${PREFIX}${this.tag}${name}`,
      redisUrl: "",
    });
    this.redis = machine("r", 1);
    this.client = machine("c", 2);
    this.hosts = Array.from({ length: this.#hostCount }, (_, i) => machine(`e${i}`, 10 + i));
  }

  /** Every machine, Redis's first. */
  get machines(): Machine[] {
    return [this.redis, this.client, ...this.hosts];
  }

  /** Makes the namespaces, links, Redis and proxies. */
  async up(): Promise<void> {
    this.#dir = await Deno.makeTempDir({ prefix: "deno-parallel-netns-" });
    this.keyFile = `${this.#dir}/cluster.key`;
    await Deno.writeTextFile(this.keyFile, toHex(generateKey()) + "\n", { mode: 0o600 });
    // The bridge is made first, and only one bed can make it: a bed whose name another bed (of
    // another test file of this run) took draws a new one before it made anything.
    for (let attempt = 1;; attempt++) {
      try {
        await ip("link", "add", this.#bridge, "type", "bridge");
        this.#named = true;
        break;
      } catch (error) {
        if (attempt === 10 || !/File exists/.test(String(error))) throw error;
        this.#name();
      }
    }
    await ip("addr", "add", `${this.subnet}.254/24`, "dev", this.#bridge);
    await ip("link", "set", this.#bridge, "up");
    for (const m of this.machines) {
      await ip("netns", "add", m.ns);
      const peer = `${m.link}p`;
      await ip("link", "add", m.link, "type", "veth", "peer", "name", peer);
      await ip("link", "set", m.link, "master", this.#bridge, "up");
      await ip("link", "set", peer, "netns", m.ns);
      await ip("-n", m.ns, "link", "set", "lo", "up");
      await ip("-n", m.ns, "addr", "add", `${m.address}/24`, "dev", peer);
      await ip("-n", m.ns, "link", "set", peer, "up");
    }
    const redis = this.spawn(this.redis, "redis-server", [
      ...["--port", "6379", "--bind", `${this.redis.address} 127.0.0.1`, "--save", ""],
      ...["--appendonly", "no", "--protected-mode", "no", "--dir", this.#dir],
    ]);
    this.redis.redisUrl = `redis://127.0.0.1:6379`;
    await this.#untilAnswers(redis);
    for (const m of [this.client, ...this.hosts]) {
      if (this.delayMs === 0) {
        m.redisUrl = this.adminUrl;
        continue;
      }
      const proxy = this.spawn(m, Deno.execPath(), [
        ...["run", "-A", new URL("tests/_delay_proxy.ts", ROOT).pathname],
        ...["--listen", "127.0.0.1:6380", "--to", `${this.redis.address}:6379`],
        ...["--delay-ms", String(this.delayMs)],
      ], { stdout: true });
      await readLine(proxy.child.stdout!, "ready", () => proxy.stderr());
      m.redisUrl = "redis://127.0.0.1:6380";
    }
  }

  async #untilAnswers(redis: BedProcess): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const conn = await Deno.connect({ hostname: this.redis.address, port: 6379 })
        .catch(() => undefined);
      if (conn) {
        conn.close();
        return;
      }
      await delay(50);
    }
    throw new Error(`redis-server did not start in ${this.redis.ns}: ${redis.stderr()}`);
  }

  /** Starts `command args…` in `machine`'s namespace (killed when the bed is torn down). */
  spawn(
    machine: Machine,
    command: string,
    args: string[],
    options: { stdout?: boolean; stdin?: boolean } = {},
  ): BedProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", machine.ns, command, ...args],
      stdin: options.stdin ? "piped" : "null",
      stdout: options.stdout ? "piped" : "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    let err = "";
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) err = (err + decoder.decode(chunk)).slice(-16_384);
    })().catch(() => {});
    const process = { child, stderr: () => err };
    this.#processes.push(process);
    return process;
  }

  /**
   * Starts `engine.ts` on engine host `index` with engines `ids` (the README's command, with
   * `--ids`, `--size` when given and `--host-id`), and `extra` arguments.
   */
  startHost(
    index: number,
    ids: readonly number[],
    size?: number,
    extra: string[] = [],
  ): BedProcess {
    return this.startEngineTs(index, [
      ...["--ids", ids.join(","), ...(size === undefined ? [] : ["--size", String(size)])],
      ...["--host-id", `host${index}`, ...extra],
    ]);
  }

  /**
   * Starts `engine.ts --redis URL --cluster NAME --key-file FILE args…` on engine host `index`:
   * the README's command, with the rest of its options as the test gives them; `wrap` runs it
   * under another command (for instance `["unshare", "--pid", "--fork", "--kill-child"]`).
   */
  startEngineTs(index: number, args: string[], wrap: string[] = []): BedProcess {
    const m = this.hosts[index];
    const [command, ...rest] = [
      ...wrap,
      Deno.execPath(),
      ...["run", "-A", new URL("engine.ts", ROOT).pathname],
      ...["--redis", m.redisUrl, "--cluster", this.cluster, "--key-file", this.keyFile, ...args],
    ];
    return this.spawn(m, command, rest);
  }

  /** The ids of the processes running in `machine`'s namespace. */
  async pids(machine: Machine): Promise<number[]> {
    return (await ip("netns", "pids", machine.ns)).split("\n").filter(Boolean).map(Number);
  }

  /** Starts a client driver in the client's namespace. */
  driver(): Driver {
    const process = this.spawn(this.client, Deno.execPath(), [
      "run",
      "-A",
      new URL("tests/_netns_client.ts", ROOT).pathname,
    ], { stdin: true, stdout: true });
    const writer = process.child.stdin!.getWriter();
    const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
    const events: Driver["events"] = [];
    let next = 0;
    (async () => {
      for await (const line of lines(process.child.stdout!)) {
        const message = JSON.parse(line);
        if (message.event) {
          events.push(message);
          continue;
        }
        const waiter = waiting.get(message.id);
        waiting.delete(message.id);
        if (message.ok) waiter?.resolve(message.value);
        else {
          // With the error's name and the engines it names (`engineId`, `engineIds`, `errors`).
          waiter?.reject(Object.assign(new Error(message.error.message), message.error));
        }
      }
      for (const waiter of waiting.values()) {
        waiter.reject(new Error(`the client driver ended: ${process.stderr()}`));
      }
    })().catch(() => {});
    return {
      events,
      process,
      send: (command) => {
        const id = next++;
        const answer = new Promise<unknown>((resolve, reject) => {
          waiting.set(id, { resolve, reject });
        });
        writer.write(new TextEncoder().encode(JSON.stringify({ ...command, id }) + "\n"));
        return answer;
      },
    };
  }

  /** The client's `connect` command for this bed's cluster of `n` engines. */
  connect(n: number, heartbeatTimeoutMs?: number): Record<string, unknown> {
    return {
      op: "connect",
      url: this.client.redisUrl,
      cluster: this.cluster,
      keyFile: this.keyFile,
      n,
      ...(heartbeatTimeoutMs ? { heartbeatTimeoutMs } : {}),
    };
  }

  /** Cuts `machine` off the bridge (packets to and from it are dropped, no reset is sent). */
  async cut(machine: Machine): Promise<void> {
    await ip("link", "set", machine.link, "down");
  }

  /** Puts `machine` back on the bridge. */
  async restore(machine: Machine): Promise<void> {
    await ip("link", "set", machine.link, "up");
  }

  /** Kills every process, deletes the namespaces, the bridge and the key file. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.#processes) {
      try {
        p.child.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await Promise.allSettled(this.#processes.map((p) => p.child.status));
    if (this.#named) {
      for (const m of this.machines) await ip("netns", "del", m.ns).catch(() => {});
      await ip("link", "del", this.#bridge).catch(() => {});
    }
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** Makes and starts a bed; on failure, tears down what was made. */
export async function makeBed(options: BedOptions): Promise<Bed> {
  const bed = new Bed(options);
  try {
    await bed.up();
  } catch (error) {
    await bed[Symbol.asyncDispose]();
    throw error;
  }
  return bed;
}

/** The lines of `stream`. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

/** Waits for the line `want` on `stream` (then releases it). */
async function readLine(
  stream: ReadableStream<Uint8Array>,
  want: string,
  stderr: () => string,
): Promise<void> {
  const reader = stream.getReader();
  let text = "";
  const decoder = new TextDecoder();
  while (!text.includes(want + "\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`ended before printing "${want}": ${stderr()}`);
    text += decoder.decode(value);
  }
  reader.releaseLock();
}
