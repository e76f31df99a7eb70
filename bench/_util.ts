/**
 * Helpers shared by the benchmarks: statistics, the machine's load, memory of a process, and a
 * line-oriented child process (the `--serve` protocol of `broadcast.ts` and `ipp_broadcast.py`).
 *
 * @module
 */

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

/** The `q` quantile of `xs`, linearly interpolated (NaN when empty). */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Summary of a list of samples. */
export interface Summary {
  median: number;
  p25: number;
  p75: number;
  min: number;
  max: number;
  n: number;
}

/** The median, quartiles, extremes and count of `xs`. */
export function summarize(xs: readonly number[]): Summary {
  return {
    median: median(xs),
    p25: quantile(xs, 0.25),
    p75: quantile(xs, 0.75),
    min: Math.min(...xs),
    max: Math.max(...xs),
    n: xs.length,
  };
}

/** The 1, 5 and 15 minute load averages, from `/proc/loadavg`. */
export function loadAverage(): [number, number, number] {
  try {
    const [a, b, c] = Deno.readTextFileSync("/proc/loadavg").split(" ").map(Number);
    return [a, b, c];
  } catch {
    const [a, b, c] = Deno.loadavg();
    return [a, b, c];
  }
}

/** `"1.23 / 0.98 / 0.50"`. */
export function formatLoad(load: readonly number[]): string {
  return load.map((x) => x.toFixed(2)).join(" / ");
}

/** Proportional set size and peak RSS of process `pid`, in bytes (undefined once it is gone). */
export function processMemory(pid: number): { pss: number; hwm: number } | undefined {
  try {
    const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const pss = Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN) * 1024;
    const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
    return { pss, hwm };
  } catch {
    return undefined;
  }
}

/**
 * Samples the memory of `pid` every `everyMs` until `stop()`; returns the largest PSS seen and
 * the last peak RSS (VmHWM) read.
 */
export function sampleMemory(
  pid: number,
  everyMs = 50,
): { stop: () => { maxPss: number; peakRss: number } } {
  let maxPss = 0;
  let peakRss = 0;
  const take = () => {
    const m = processMemory(pid);
    if (!m) return;
    if (m.pss > maxPss) maxPss = m.pss;
    if (m.hwm > peakRss) peakRss = m.hwm;
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return { maxPss, peakRss };
    },
  };
}

/** A child process spoken to in lines: commands on stdin, `PREFIX {json}` answers on stdout. */
export class LineProcess {
  readonly child: Deno.ChildProcess;
  readonly name: string;
  readonly #lines: AsyncIterator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly stderr: Promise<string>;

  constructor(name: string, command: string, args: string[], env?: Record<string, string>) {
    this.name = name;
    this.child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      ...(env ? { env, clearEnv: true } : {}),
    }).spawn();
    this.#lines = this.child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(splitLines())[Symbol.asyncIterator]();
    this.#writer = this.child.stdin.getWriter();
    this.stderr = tail(this.child.stderr);
  }

  /** Sends one command line. */
  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Waits for the next line starting with `prefix ` and returns its JSON payload. */
  async expect<T>(prefix: string): Promise<T> {
    while (true) {
      const next = await this.#lines.next();
      if (next.done) {
        const status = await this.child.status;
        throw new Error(
          `${this.name} exited (code ${status.code}) before printing ${prefix}:\n` +
            (await this.stderr),
        );
      }
      const line = next.value;
      if (line.startsWith(prefix + " ")) return JSON.parse(line.slice(prefix.length + 1)) as T;
      if (line.startsWith("ERROR ")) throw new Error(`${this.name}: ${line}`);
    }
  }

  /** Closes stdin and waits for the process to exit. */
  async close(): Promise<Deno.CommandStatus> {
    try {
      await this.#writer.close();
    } catch { /* already closed */ }
    return await this.child.status;
  }

  /** Kills the process (if it still runs). */
  kill(): void {
    try {
      this.child.kill("SIGTERM");
    } catch { /* exited */ }
  }
}

/** Runs a command to its end, timing it from spawn to exit; samples its memory if asked. */
export async function timedRun(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; sample?: boolean } = {},
): Promise<
  {
    code: number;
    stdout: string;
    stderr: string;
    wallSeconds: number;
    memory?: { maxPss: number; peakRss: number };
  }
> {
  const t0 = performance.now();
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env, clearEnv: true } : {}),
  }).spawn();
  const sampler = options.sample ? sampleMemory(child.pid) : undefined;
  const [stdout, stderr] = await Promise.all([
    new Response(child.stdout).text(),
    tail(child.stderr),
  ]);
  const status = await child.status;
  const wallSeconds = (performance.now() - t0) / 1000;
  const memory = sampler?.stop();
  return { code: status.code, stdout, stderr, wallSeconds, memory };
}

/** The environment of this process without `names`. */
export function envWithout(...names: string[]): Record<string, string> {
  const env = Deno.env.toObject();
  for (const name of names) delete env[name];
  return env;
}

function splitLines(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) controller.enqueue(line);
    },
    flush(controller) {
      if (buffer) controller.enqueue(buffer);
    },
  });
}

async function tail(stream: ReadableStream<Uint8Array>, limit = 20_000): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text = (text + decoder.decode(chunk, { stream: true })).slice(-limit);
  }
  return text + decoder.decode();
}

/** Bytes as `"123 MiB"` / `"1.2 GiB"`. */
export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes) || bytes <= 0) return "–";
  const mib = bytes / 2 ** 20;
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(0)} MiB`;
}

/** CPU seconds (user + system) used so far by process `root` and every process below it. */
export function treeCpuSeconds(root: number): number {
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue;
    }
    // the command name is in parentheses and may hold spaces: split after the last ")"
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pid = Number(entry.name);
    const ppid = Number(fields[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    cpu.set(pid, (Number(fields[11]) + Number(fields[12])) / 100); // utime + stime, in ticks
  }
  let total = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    total += cpu.get(pid) ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** `MemAvailable` of `/proc/meminfo`, in bytes. */
export function memAvailable(): number {
  const text = Deno.readTextFileSync("/proc/meminfo");
  return Number(/MemAvailable:\s+(\d+) kB/.exec(text)?.[1] ?? 0) * 1024;
}

/**
 * Waits (up to `timeoutMs`) until the machine has `bytes` of memory available, checking every
 * 5 s. Resolves to whether it has; `onWait` is told once when it has to wait.
 */
export async function waitForMemory(
  bytes: number,
  timeoutMs: number,
  onWait: (available: number) => void,
): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  let told = false;
  while (memAvailable() < bytes) {
    if (Date.now() >= until) return false;
    if (!told) onWait(memAvailable());
    told = true;
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  return true;
}

/**
 * Starts a broadcast server of `engines` engines, answering `measure` commands on stdin:
 * IPython Parallel (`ipp_broadcast.py --serve`, when `transport` is `"ipp"`) or deno-parallel on
 * `transport` (`broadcast.ts --serve`). `name` labels its errors.
 */
export function startBroadcastServer(
  name: string,
  engines: number,
  transport: "ipp" | string,
): LineProcess {
  const here = new URL(".", import.meta.url);
  return transport === "ipp"
    ? new LineProcess(name, "/usr/bin/python3", [
      new URL("ipp_broadcast.py", here).pathname,
      "--engines",
      String(engines),
      "--serve",
    ])
    : new LineProcess(name, Deno.execPath(), [
      "run",
      "-A",
      new URL("broadcast.ts", here).pathname,
      "--engines",
      String(engines),
      "--transport",
      transport,
      "--serve",
    ], { ...envWithout("REDIS_URL"), NO_COLOR: "1" });
}
