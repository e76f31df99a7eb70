/**
 * Soak: many broadcasts in a row on one cluster over Redis, to see whether anything grows with
 * their number (issue 6, item 7). For each launcher, in a fresh `deno run` of this file:
 *
 * 1. start a `redis-server` of its own (no persistence) and a `Cluster` of `--engines` engines on
 *    it;
 * 2. warm up: broadcast for `--warmup` seconds (longer than the 10 s that acknowledged entries are
 *    kept, so the streams are at their steady size);
 * 3. run `--broadcasts` sequential `BroadcastView.apply` calls of a small function, sampling at the
 *    start, `--samples` times on the way (every tenth by default) and at the end;
 * 4. wait 12 s idle and sample once more.
 *
 * Each sample holds Redis's `used_memory`, the namespace's keys, stream entries and pending
 * entries (`XLEN`, `XINFO GROUPS`), this process's RSS (the engine hosts are Workers in it with the
 * `"worker"` launcher), the sum of the engine processes' RSS from
 * `/proc` (`"process"` launcher), the JS heap after a forced GC of this isolate and of the engine
 * hosts' (the children run with `--v8-flags=--expose-gc`; process engines cannot be forced), and
 * the client's and the broadcast nodes' bookkeeping. On Linux with glibc it also reads the C
 * allocator's totals of this process (`mallinfo2`: bytes in use and free bytes it holds), which
 * tell native memory still in use from memory freed but not given back; with `--trim` each sample
 * then forces a GC in every engine host, calls `malloc_trim(0)` and reads the RSS once more (this
 * changes what later samples see, so the default run does not). Writes `bench/results/soak.md`.
 *
 * ```sh
 * deno run -A bench/soak.ts [--broadcasts 10000] [--engines 16] [--launchers worker,process]
 *   [--warmup 15] [--samples 10] [--trim] [--out bench/results/soak.md]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster } from "../actors/client/cluster.ts";
import { startRedisServer } from "../tests/_redis_server.ts";
import { inspectRedis } from "../tests/_stream_stats.ts";
import { formatLoad, loadAverage } from "./_util.ts";
import { broadcastAddress } from "../actors/protocol/addresses.ts";
import type { BroadcastNodeStats } from "../actors/protocol/messages.ts";

/** `rank` in the engines' namespaces. */
declare const rank: number;

type Launcher = "worker" | "process";

/** One look at the cluster and the machine. */
interface Sample {
  label: string;
  /** Broadcasts done since the start sample. */
  broadcasts: number;
  /** Seconds since the start sample. */
  seconds: number;
  /** Mean ms per broadcast since the previous sample (NaN when none were made). */
  msPerBroadcast: number;
  redisUsed: number;
  redisRss: number;
  keys: number;
  entries: number;
  /** Broadcasts answered in the 10 s before the sample: what the streams may still hold. */
  recent: number;
  pending: number;
  /** This process's RSS, read before any forced GC. */
  rss: number;
  /** This isolate's heap after a forced GC. */
  heap: number;
  /** This isolate's committed heap and external (ArrayBuffer) memory after the forced GC. */
  heapTotal: number;
  external: number;
  /** The smallest and largest engine host heap (after a forced GC where possible). */
  engineHeap: [number, number];
  /** The engine hosts' committed heaps and external memory, summed (after the same GC). */
  engineHeapTotal: number;
  engineExternal: number;
  /** glibc's `mallinfo2` of this process before any forced GC (null where it cannot be read). */
  malloc: MallocInfo | null;
  /** With `--trim`: RSS after the forced GCs and `malloc_trim(0)`, and glibc's totals then. */
  trimmed?: { rss: number; malloc: MallocInfo | null };
  /** Sum of the engine processes' RSS (0 with the worker launcher). */
  engineRss: number;
  clientInFlight: number;
  clientWaiting: number;
  nodes: BroadcastNodeStats;
}

/** What one `--one` run reports. */
interface Run {
  launcher: Launcher;
  engines: number;
  broadcasts: number;
  warmupBroadcasts: number;
  redisVersion: string;
  samples: Sample[];
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    one: { type: "string" },
    broadcasts: { type: "string", default: "10000" },
    engines: { type: "string", default: "16" },
    launchers: { type: "string", default: "worker,process" },
    warmup: { type: "string", default: "15" },
    samples: { type: "string", default: "10" },
    trim: { type: "boolean", default: false },
    out: { type: "string", default: new URL("./results/soak.md", import.meta.url).pathname },
  },
});
const BROADCASTS = Number(flags.broadcasts);
const ENGINES = Number(flags.engines);
const WARMUP_S = Number(flags.warmup);
const SAMPLES = Number(flags.samples);
const IDLE_MS = 12_000;
/** How long hosts keep acknowledged entries (`ActorSystemOptions.retainAckedMs`' default). */
const RETAIN_MS = 10_000;

async function main(): Promise<void> {
  const started = new Date();
  const loadBefore = loadAverage();
  const runs: Run[] = [];
  for (const launcher of flags.launchers!.split(",") as Launcher[]) {
    console.error(`soak: ${launcher} launcher, ${ENGINES} engines, ${BROADCASTS} broadcasts`);
    runs.push(await runOne(launcher));
  }
  const text = render(runs, started, [loadBefore, loadAverage()]);
  console.log(text);
  await Deno.mkdir(new URL(".", `file://${flags.out}`), { recursive: true });
  await Deno.writeTextFile(flags.out!, text);
  // The repository's `deno fmt --check` covers the results too: write them formatted.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", flags.out!] }).output();
  console.error(`Wrote ${flags.out}`);
}

/** Runs one launcher's soak in a fresh process, so that no RSS is inherited. */
async function runOne(launcher: Launcher): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--one",
      launcher,
      "--broadcasts",
      String(BROADCASTS),
      "--engines",
      String(ENGINES),
      "--warmup",
      String(WARMUP_S),
      "--samples",
      String(SAMPLES),
      ...(flags.trim ? ["--trim"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const [output, status] = await Promise.all([new Response(child.stdout).text(), child.status]);
  if (!status.success) throw new Error(`Cannot soak the ${launcher} launcher: exit ${status.code}`);
  return JSON.parse(output.trim().split("\n").at(-1)!) as Run;
}

/** The soak itself, in this process. */
async function soak(launcher: Launcher): Promise<Run> {
  await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
  await using redis = await inspectRedis(server.url);
  await using cluster = new Cluster({
    n: ENGINES,
    transport: server.url,
    launcher,
    progress: false,
    engineTimeout: 120_000,
  });
  const client = await cluster.startAndConnect();
  const bv = client.broadcastView();
  const ranks = client.ids;
  const prefix = `${cluster.namespace}:`;
  const pids = [...new Set(await client.view().apply(() => Deno.pid).get({ timeout: 60_000 }))]
    .filter((pid) => pid !== Deno.pid);
  const root = broadcastAddress(await client.broadcastHost([0]), 0);
  const gc = (globalThis as { gc?: () => void }).gc;

  // When each broadcast was answered, for the broadcasts of the last 10 s at each sample; older
  // times are dropped, so that the bench's own memory does not grow with the broadcasts.
  let answered: number[] = [];
  const broadcast = async (i: number) => {
    const values = await bv.apply((i: number) => rank + i, i).get({ timeout: 60_000 });
    if (values.some((v, j) => v !== ranks[j] + i)) {
      throw new Error(`Wrong answer to broadcast ${i}`);
    }
    const now = performance.now();
    answered.push(now);
    if (answered.length >= 4096 && answered[2047] < now - RETAIN_MS) {
      answered = answered.slice(2048);
    }
  };

  const warmupEnd = Date.now() + WARMUP_S * 1000;
  let warmup = 0;
  while (Date.now() < warmupEnd) await broadcast(warmup++);
  console.error(`soak: ${launcher}: warmed up with ${warmup} broadcasts`);

  const samples: Sample[] = [];
  const t0 = performance.now();
  let last = { t: t0, broadcasts: 0 };
  const sample = async (label: string, broadcasts: number) => {
    const now = performance.now();
    const msPerBroadcast = broadcasts > last.broadcasts
      ? (now - last.t) / (broadcasts - last.broadcasts)
      : NaN;
    const rss = Deno.memoryUsage().rss;
    const malloc = mallinfo();
    let recent = 0;
    for (let k = answered.length - 1; k >= 0 && answered[k] > now - RETAIN_MS; k--) recent++;
    const engineRss = pids.reduce((sum, pid) => sum + vmRss(pid), 0);
    const r = await redis.stats(prefix);
    gc?.();
    const mine = Deno.memoryUsage();
    // Untimed and uncounted: a broadcast that reads each engine host's heap.
    const usage = await bv.apply(() => {
      (globalThis as { gc?: () => void }).gc?.();
      const { heapUsed, heapTotal, external } = Deno.memoryUsage();
      return { heapUsed, heapTotal, external };
    }).get({ timeout: 60_000 });
    // The engines of one host share its isolate: count each host's once (by its first engine).
    const hosts = new Map<string, (typeof usage)[number]>();
    for (const [j, u] of usage.entries()) {
      const host = client.hostOf(ranks[j]);
      if (!hosts.has(host)) hosts.set(host, u);
    }
    const heaps = usage.map((u) => u.heapUsed);
    let trimmed: Sample["trimmed"];
    if (flags.trim) {
      trimmed = { rss: trimRss(), malloc: mallinfo() };
    }
    const nodes = await client.system.ask<BroadcastNodeStats>(root, "stats", undefined, {
      timeout: 10_000,
    });
    const s: Sample = {
      label,
      broadcasts,
      seconds: (now - t0) / 1000,
      msPerBroadcast,
      redisUsed: r.usedMemory,
      redisRss: r.usedMemoryRss,
      keys: r.keys,
      entries: r.entries,
      recent,
      pending: r.pending,
      rss,
      heap: mine.heapUsed,
      heapTotal: mine.heapTotal,
      external: mine.external,
      engineHeap: [Math.min(...heaps), Math.max(...heaps)],
      engineHeapTotal: [...hosts.values()].reduce((n, u) => n + u.heapTotal, 0),
      engineExternal: [...hosts.values()].reduce((n, u) => n + u.external, 0),
      malloc,
      ...(trimmed ? { trimmed } : {}),
      engineRss,
      clientInFlight: client.system.stats.inFlight,
      clientWaiting: client.system.stats.waiting,
      nodes,
    };
    samples.push(s);
    console.error(
      `soak: ${launcher}: ${label} ${broadcasts} broadcasts, ${s.seconds.toFixed(0)} s, ` +
        `redis ${mib(s.redisUsed)}, ${s.entries} entries, ${s.pending} pending, ` +
        `rss ${mib(s.rss)}, heap ${mib(s.heap)}/${mib(s.heapTotal)}, engine heaps ` +
        `${mib(s.engineHeapTotal)} committed, external ${mib(s.external + s.engineExternal)}` +
        (malloc ? `, malloc ${mib(malloc.inUse)} in use ${mib(malloc.free)} free` : "") +
        (trimmed
          ? `, trimmed rss ${mib(trimmed.rss)}` +
            (trimmed.malloc ? ` malloc free ${mib(trimmed.malloc.free)}` : "")
          : "") +
        `, engine processes ${mib(s.engineRss)}`,
    );
    last = { t: performance.now(), broadcasts };
  };

  await sample("start", 0);
  const every = Math.max(1, Math.round(BROADCASTS / SAMPLES));
  for (let i = 1; i <= BROADCASTS; i++) {
    await broadcast(warmup + i);
    if (i === BROADCASTS) await sample("end", i);
    else if (i % every === 0) await sample(`${+((i / BROADCASTS) * 100).toFixed(1)}%`, i);
  }
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  await sample(`idle ${IDLE_MS / 1000} s`, BROADCASTS);
  const info = String(await redisInfo(server.url));
  return {
    launcher,
    engines: ENGINES,
    broadcasts: BROADCASTS,
    warmupBroadcasts: warmup,
    redisVersion: /^redis_version:(\S+)/m.exec(info)?.[1] ?? "?",
    samples,
  };
}

async function redisInfo(url: string): Promise<string> {
  const { createClient } = await import("../deps_redis.ts");
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  try {
    return String(await client.sendCommand(["INFO", "server"]));
  } finally {
    client.destroy();
  }
}

/** glibc's allocator totals over all its arenas (`mallinfo2`), in bytes. */
interface MallocInfo {
  /** Bytes handed out and not freed (`uordblks + hblkhd`). */
  inUse: number;
  /** Bytes freed and kept by the allocator (`fordblks`). */
  free: number;
  /** Bytes the allocator got from the system with `brk`/`mmap` for its arenas (`arena + hblkhd`). */
  system: number;
}

/** glibc, where it can be opened (Linux); null elsewhere. Opened at the first use. */
let libcOpened: ReturnType<typeof openLibc> | undefined;
function libc(): ReturnType<typeof openLibc> {
  return libcOpened === undefined ? (libcOpened = openLibc()) : libcOpened;
}
function openLibc() {
  if (Deno.build.os !== "linux") return null;
  try {
    return Deno.dlopen(
      "libc.so.6",
      {
        mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
        malloc_trim: { parameters: ["usize"], result: "i32" },
      } as const,
    );
  } catch {
    return null;
  }
}

/** This process's `mallinfo2`, or null without glibc. */
function mallinfo(): MallocInfo | null {
  const lib = libc();
  if (!lib) return null;
  const raw = lib.symbols.mallinfo2() as Uint8Array;
  const f = new BigUint64Array(raw.buffer, raw.byteOffset, 10);
  // struct mallinfo2: arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks,
  // fordblks, keepcost.
  const [arena, , , , hblkhd, , , uordblks, fordblks] = [...f].map(Number);
  return { inUse: uordblks + hblkhd, free: fordblks, system: arena + hblkhd };
}

/** Gives the allocator's free pages back (`malloc_trim(0)`) and reads this process's RSS. */
function trimRss(): number {
  libc()?.symbols.malloc_trim(0n);
  return Deno.memoryUsage().rss;
}

/** The resident set of process `pid`, in bytes (0 once it is gone). */
function vmRss(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function signedMib(bytes: number): string {
  return `${bytes >= 0 ? "+" : "−"}${mib(Math.abs(bytes))}`;
}

function render(runs: Run[], started: Date, load: number[][]): string {
  const command = "deno run -A bench/soak.ts" +
    (BROADCASTS !== 10000 ? ` --broadcasts ${BROADCASTS}` : "") +
    (ENGINES !== 16 ? ` --engines ${ENGINES}` : "") +
    (flags.launchers !== "worker,process" ? ` --launchers ${flags.launchers}` : "") +
    (WARMUP_S !== 15 ? ` --warmup ${WARMUP_S}` : "") +
    (SAMPLES !== 10 ? ` --samples ${SAMPLES}` : "") +
    (flags.trim ? " --trim" : "");
  const lines = [
    "# Soak: broadcasts in a row over Redis",
    "",
    `Measured ${started.toISOString().slice(0, 16).replace("T", " ")} UTC by \`${command}\`: ` +
    `Deno ${Deno.version.deno}, Redis ${runs[0]?.redisVersion} (its own server, no ` +
    `persistence) on loopback, ${navigator.hardwareConcurrency} CPUs shared with other jobs ` +
    `(load average ${formatLoad(load[0])} before, ${formatLoad(load[1])} after).`,
    "",
    `Each run: a fresh process, a cluster of ${ENGINES} engines (one host per core), a warm-up ` +
    `of ${WARMUP_S} s of broadcasts, then ${BROADCASTS} sequential \`BroadcastView.apply\` calls ` +
    "of `(i) => rank + i` (answers checked), then 12 s idle. *Redis* is `used_memory`; " +
    "*entries* and *pending* are summed over the namespace's streams (`XLEN`, `XINFO GROUPS`); " +
    "*RSS* is this process's (with the worker launcher the engine " +
    "hosts live in it), read before any forced GC; *heap* is after a forced GC (this isolate; " +
    "the engine hosts', min–max, forced only for Workers); *committed* is the V8 heap space " +
    "held after that GC (`heapTotal`) by this isolate + the engine hosts together (the broadcast " +
    "Worker's is not read); *malloc* is glibc's bytes in use / freed but held (`mallinfo2`, this " +
    "process, before the GC)" +
    (flags.trim ? "; *RSS trimmed* is the RSS after the GCs and `malloc_trim(0)`" : "") +
    "; *in flight* is the client's entries " +
    "in flight / answers waited for / the broadcast nodes' open ranges and children. Hosts keep " +
    "acknowledged entries 10 s (trimmed every second), so the streams hold the last 10 to 12 s of " +
    `broadcasts, ${2 + 2 * ENGINES} entries each: *entries per broadcast of the last 10 s* stays ` +
    "near that whatever the rate, where Redis's memory and the entries follow the rate.",
  ];
  for (const run of runs) {
    const start = run.samples[0];
    const end = run.samples.find((s) => s.label === "end")!;
    const idle = run.samples.at(-1)!;
    const per1000 = (a: number, b: number) => (b - a) / (run.broadcasts / 1000);
    lines.push(
      "",
      `## ${run.launcher} launcher (${run.warmupBroadcasts} warm-up broadcasts)`,
      "",
      "| sample | broadcasts | s | ms/broadcast | Redis | keys | entries | entries per " +
        "broadcast of the last 10 s | pending | RSS | " + (flags.trim ? "RSS trimmed | " : "") +
        "heap | engine heaps | committed | malloc | engine processes RSS | in flight |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " +
        (flags.trim ? "---: | " : "") + "---: | ---: | ---: | ---: | ---: | --- |",
    );
    for (const s of run.samples) {
      lines.push(
        `| ${s.label} | ${s.broadcasts} | ${s.seconds.toFixed(0)} | ${
          Number.isFinite(s.msPerBroadcast) ? s.msPerBroadcast.toFixed(2) : "–"
        } | ${mib(s.redisUsed)} | ${s.keys} | ${s.entries} | ${
          s.recent ? (s.entries / s.recent).toFixed(1) : "–"
        } | ${s.pending} | ${mib(s.rss)} | ${
          flags.trim ? `${s.trimmed ? mib(s.trimmed.rss) : "–"} | ` : ""
        }${mib(s.heap)} | ${mib(s.engineHeap[0])}–${mib(s.engineHeap[1])} | ${mib(s.heapTotal)} + ${
          mib(s.engineHeapTotal)
        } | ${s.malloc ? `${mib(s.malloc.inUse)} / ${mib(s.malloc.free)}` : "–"} | ${
          run.launcher === "process" ? mib(s.engineRss) : "–"
        } | ${s.clientInFlight}/${s.clientWaiting}/${s.nodes.inFlight}/${s.nodes.children} |`,
      );
    }
    lines.push(
      "",
      `Start → end of the ${run.broadcasts} broadcasts: Redis ${mib(start.redisUsed)} → ` +
        `${mib(end.redisUsed)} (${signedMib(per1000(start.redisUsed, end.redisUsed))} per 1,000 ` +
        `broadcasts), entries ${start.entries} → ${end.entries}, pending ${start.pending} → ` +
        `${end.pending}, entries per broadcast of the last 10 s ${
          (start.entries / start.recent).toFixed(1)
        } → ${(end.entries / end.recent).toFixed(1)}, RSS ${mib(start.rss)} → ${mib(end.rss)} ` +
        `(${signedMib(per1000(start.rss, end.rss))} per 1,000), heap ${mib(start.heap)} → ` +
        `${mib(end.heap)}, committed ${mib(start.heapTotal + start.engineHeapTotal)} → ` +
        `${mib(end.heapTotal + end.engineHeapTotal)}` +
        (start.malloc && end.malloc
          ? `, malloc in use ${mib(start.malloc.inUse)} → ${mib(end.malloc.inUse)}`
          : "") +
        (run.launcher === "process"
          ? `, engine processes ${mib(start.engineRss)} → ${mib(end.engineRss)} ` +
            `(${signedMib(per1000(start.engineRss, end.engineRss))} per 1,000)`
          : "") +
        `. After 12 s idle: Redis ${mib(idle.redisUsed)}, ${idle.entries} entries, ` +
        `${idle.pending} pending, RSS ${mib(idle.rss)}, committed ` +
        `${mib(idle.heapTotal + idle.engineHeapTotal)}.`,
    );
  }
  return lines.join("\n") + "\n";
}

// Last, so that every declaration above is initialised when the soak runs.
if (flags.one) {
  console.log(JSON.stringify(await soak(flags.one as Launcher)));
} else if (import.meta.main) {
  await main();
}
