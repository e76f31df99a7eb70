/**
 * Test helpers: a private `redis-server` per test (so a test can stop, kill and restart it), the
 * `REDIS_URL` fallback when no server binary is installed, and per-test key namespaces.
 *
 * @module
 */

/** Options of {@linkcode startRedisServer}. */
export interface RedisServerOptions {
  /** Turn on the append-only file, synced on every write, so a restart loses nothing. */
  appendonly?: boolean;
  /** More `redis-server` arguments, e.g. `["--requirepass", "secret"]`. */
  args?: string[];
}

/** A `redis-server` process owned by a test. */
export interface RedisServer extends AsyncDisposable {
  /** The loopback port it listens on; it keeps it across restarts. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Its working directory (the append-only file lives there); kept across restarts. */
  readonly dir: string;
  /** Starts it again after `stop()` or `kill()`, on the same port and directory. */
  start(): Promise<void>;
  /** Shuts it down with SIGTERM (it writes its files) and waits for it to exit. */
  stop(): Promise<void>;
  /** `stop()` then `start()`. */
  restart(): Promise<void>;
  /** Kills it with SIGKILL and waits for it to exit. */
  kill(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open, nothing is answered until `resume()`. */
  pause(): void;
  /** Lets it run again after `pause()` (SIGCONT). */
  resume(): void;
}

const START_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 5000;
const OUTPUT_LIMIT = 16_384;

/** Whether a `redis-server` binary is on `PATH`. */
export function hasRedisServer(): boolean {
  const path = Deno.env.get("PATH") ?? "";
  return path.split(":").some((dir) => {
    try {
      return dir !== "" && Deno.statSync(`${dir}/redis-server`).isFile;
    } catch {
      return false;
    }
  });
}

/** The URL of an external Redis to test against, from `REDIS_URL`, when there is one. */
export function testRedisUrl(): string | undefined {
  return Deno.env.get("REDIS_URL") || undefined;
}

/** Whether tests can reach a Redis: their own `redis-server`, or `REDIS_URL`. */
export function redisAvailable(): boolean {
  return hasRedisServer() || testRedisUrl() !== undefined;
}

/** A fresh key prefix for one test, e.g. `"t1f2e3d4c5b6a"`; keys are `"<namespace>:<name>"`. */
export function uniqueNamespace(): string {
  return "t" + crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

/** Starts a private `redis-server` on a free loopback port and waits until it answers. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "deno-parallel-redis-" });
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--dir",
    dir,
    ...(options.appendonly
      ? ["--appendonly", "yes", "--appendfsync", "always"]
      : ["--appendonly", "no"]),
    ...(options.args ?? []),
  ];
  const server = new Server(port, dir, args);
  try {
    await server.start();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return server;
}

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

class Server implements RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  #args: string[];
  #process?: {
    child: Deno.ChildProcess;
    output: Promise<string>;
    status: Promise<Deno.CommandStatus>;
  };

  constructor(port: number, dir: string, args: string[]) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.dir = dir;
    this.#args = args;
  }

  async start(): Promise<void> {
    if (this.#process) throw new Error(`Cannot start redis-server on port ${this.port}: it runs`);
    const child = new Deno.Command("redis-server", {
      args: this.#args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = Promise.all([collect(child.stdout), collect(child.stderr)])
      .then(([out, err]) => `stdout:\n${out}\nstderr:\n${err}`);
    this.#process = { child, output, status: child.status };
    let exitCode: number | undefined;
    child.status.then((status) => exitCode = status.code);
    if (!await waitForPing(this.port, () => exitCode !== undefined, START_TIMEOUT_MS)) {
      const proc = this.#process;
      await this.#end("SIGKILL");
      const reason = exitCode === undefined
        ? `no answer to PING within ${START_TIMEOUT_MS} ms`
        : `it exited with code ${exitCode}`;
      throw new Error(
        `Cannot start redis-server on port ${this.port}: ${reason}\n${await proc.output}`,
      );
    }
  }

  stop(): Promise<void> {
    return this.#end("SIGTERM");
  }

  kill(): Promise<void> {
    return this.#end("SIGKILL");
  }

  pause(): void {
    if (this.#process) signalProcess(this.#process.child, "SIGSTOP");
  }

  resume(): void {
    if (this.#process) signalProcess(this.#process.child, "SIGCONT");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async #end(signal: Deno.Signal): Promise<void> {
    const proc = this.#process;
    if (!proc) return;
    this.#process = undefined;
    signalProcess(proc.child, signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      proc.status.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    if (!exited) signalProcess(proc.child, "SIGKILL");
    await proc.status;
    await proc.output;
  }
}

function signalProcess(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // It exited already.
  }
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text = (text + decoder.decode(chunk, { stream: true })).slice(-OUTPUT_LIMIT);
  }
  return text + decoder.decode();
}

/** Sends PING until the server answers (anything but `-LOADING`), exits, or time runs out. */
async function waitForPing(
  port: number,
  exited: () => boolean,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!exited() && Date.now() < deadline) {
    if (await ping(port)) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

async function ping(port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return false;
  }
  // Closing the connection ends a read that gets no answer.
  const timer = setTimeout(() => conn.close(), 1000);
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(256);
    const n = await conn.read(buffer);
    if (n === null) return false;
    return !new TextDecoder().decode(buffer.subarray(0, n)).startsWith("-LOADING");
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // The timer closed it.
    }
  }
}

/** A plain Redis connection for a test's own commands (`CONFIG SET`, `XLEN`, a raw `XADD`). */
export interface RedisAdmin extends AsyncDisposable {
  /** Sends one command; arguments may be binary. */
  send(args: (string | Uint8Array)[]): Promise<unknown>;
}

/** Connects a {@linkcode RedisAdmin} to `url`; `await using` disconnects it. */
export async function connectAdmin(url: string): Promise<RedisAdmin> {
  const { createClient } = await import("../deps_redis.ts");
  const client = createClient({ url });
  client.on("error", () => {}); // a test that stops the server sees it through its own calls
  await client.connect();
  return {
    send: (args) => client.sendCommand(args.map((a) => typeof a === "string" ? a : Buffer.from(a))),
    [Symbol.asyncDispose]: () => Promise.resolve(client.destroy()),
  };
}

/** Every Redis key of `url` that starts with `prefix`, listed with SCAN by a raw client. */
export async function redisKeys(url: string, prefix: string): Promise<string[]> {
  const { createClient } = await import("../deps_redis.ts");
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  try {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, found] = await client.sendCommand(
        ["SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000"],
      ) as [string, string[]];
      cursor = String(next);
      keys.push(...found.map(String));
    } while (cursor !== "0");
    return keys.sort();
  } finally {
    client.destroy();
  }
}
