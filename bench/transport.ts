// deno-lint-ignore-file no-console
/**
 * Transport throughput, both transports side by side, with `redis-benchmark` on the same server as
 * the floor: one-way append + blocking read + ack round trips (sequential), and pipelined appends
 * (`appendMany` in batches of 100). Starts its own `redis-server` on a free loopback port.
 * Prints a table and writes it to `bench/RESULTS.md` under "## Transport".
 *
 *     deno run -A bench/transport.ts
 *
 * @module
 */
import { MemoryTransport } from "../transport/memory.ts";
import { RedisTransport } from "../transport/redis.ts";
import type { Transport } from "../transport/types.ts";
import { startRedisServer } from "../tests/_redis_server.ts";

const PAYLOAD_BYTES = 64;
const BATCH = 100;
const ROUND_TRIPS = { memory: 50_000, redis: 5_000 };
const APPENDS = { memory: 200_000, redis: 100_000 };
const IN_FLIGHT = 8;
/** Rounds of every measurement, interleaved; the best of each is kept (the machine is shared). */
const ROUNDS = 3;

const payload = new Uint8Array(PAYLOAD_BYTES).fill(0x78); // "xxx…", the same as redis-benchmark's

interface Row {
  transport: string;
  roundTrips: number;
  roundTripP50Us: number;
  pipelined: number;
  pipelinedInFlight: number;
}

/** Sequential one-way trips: the reader blocks in `read`, the writer appends, the reader acks. */
async function roundTrips(writer: Transport, reader: Transport, n: number, ns: string) {
  const stream = `${ns}:rt`;
  const read = () => reader.read("bench", "reader", [stream], { count: 1, blockMs: 1000 });
  await read(); // creates the group
  const samples: number[] = [];
  const warmup = Math.min(500, n / 10);
  let started = 0;
  for (let i = -warmup; i < n; i++) {
    if (i === 0) started = performance.now();
    const t0 = performance.now();
    const pending = read();
    await writer.append(stream, payload);
    const entries = await pending;
    if (entries.length !== 1) throw new Error(`Cannot measure round trips: read ${entries.length}`);
    await reader.ack(stream, "bench", [entries[0].id]);
    if (i >= 0) samples.push(performance.now() - t0);
  }
  const elapsed = performance.now() - started;
  samples.sort((a, b) => a - b);
  await writer.deletePrefix(stream);
  return { perSecond: n / (elapsed / 1000), p50Us: samples[samples.length >> 1] * 1000 };
}

/** `appendMany` in batches of `BATCH`, `inFlight` batches outstanding at a time. */
async function pipelined(writer: Transport, n: number, inFlight: number, ns: string) {
  const stream = `${ns}:pipe`;
  const batch = Array.from({ length: BATCH }, () => ({ stream, data: payload }));
  const batches = Math.ceil(n / BATCH);
  for (let i = 0; i < 20; i++) await writer.appendMany(batch); // warm up
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next++ < batches) await writer.appendMany(batch);
  }));
  const elapsed = performance.now() - started;
  await writer.deletePrefix(stream);
  return (batches * BATCH) / (elapsed / 1000);
}

async function measure(name: string, open: () => Promise<Transport>): Promise<Row> {
  const ns = `bench-${crypto.randomUUID().slice(0, 8)}`;
  const writer = await open();
  const reader = await open();
  try {
    const key = name as keyof typeof ROUND_TRIPS;
    const rt = await roundTrips(writer, reader, ROUND_TRIPS[key], ns);
    const sequential = await pipelined(writer, APPENDS[key], 1, ns);
    const concurrent = await pipelined(writer, APPENDS[key], IN_FLIGHT, ns);
    return {
      transport: name,
      roundTrips: rt.perSecond,
      roundTripP50Us: rt.p50Us,
      pipelined: sequential,
      pipelinedInFlight: concurrent,
    };
  } finally {
    await reader.close();
    await writer.close();
  }
}

/** `redis-benchmark … -q` for one XADD of the same payload; returns requests per second. */
async function redisBenchmark(port: number, n: number, extra: string[]): Promise<number> {
  const args = ["-p", String(port), "-q", "-n", String(n), ...extra];
  args.push("xadd", "bench:rb", "*", "m", new TextDecoder().decode(payload));
  const { success, stdout, stderr } = await new Deno.Command("redis-benchmark", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  const m = /([\d.]+) requests per second/.exec(text.split("\r").at(-1) ?? text) ??
    /([\d.]+) requests per second/.exec(text);
  if (!success || !m) throw new Error(`Cannot run redis-benchmark ${args.join(" ")}:\n${text}`);
  return Number(m[1]);
}

async function redisVersion(): Promise<string> {
  const { stdout } = await new Deno.Command("redis-server", {
    args: ["--version"],
    stdout: "piped",
  })
    .output();
  return /v=(\S+)/.exec(new TextDecoder().decode(stdout))?.[1] ?? "?";
}

/** Deletes the stream redis-benchmark filled, so rounds start alike. */
async function redisBenchmarkCleanup(url: string): Promise<void> {
  const t = await RedisTransport.connect(url);
  await t.deletePrefix("bench:rb");
  await t.close();
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function best(rows: Row[]): Row {
  return {
    transport: rows[0].transport,
    roundTrips: Math.max(...rows.map((r) => r.roundTrips)),
    roundTripP50Us: Math.min(...rows.map((r) => r.roundTripP50Us)),
    pipelined: Math.max(...rows.map((r) => r.pipelined)),
    pipelinedInFlight: Math.max(...rows.map((r) => r.pipelinedInFlight)),
  };
}

async function main(): Promise<void> {
  await using server = await startRedisServer();
  let owner: MemoryTransport | undefined;
  const openMemory = () => {
    const t = owner ? new MemoryTransport(owner) : (owner = new MemoryTransport());
    return Promise.resolve(t);
  };
  const memoryRows: Row[] = [];
  const redisRows: Row[] = [];
  const benchmarks = { pipelined: 0, plain: 0, oneClientPipelined: 0, oneClient: 0 };
  const p = ["-P", String(BATCH)];
  for (let round = 1; round <= ROUNDS; round++) {
    console.error(`round ${round} of ${ROUNDS}`);
    memoryRows.push(await measure("memory", openMemory));
    redisRows.push(await measure("redis", () => RedisTransport.connect(server.url)));
    const runs: [keyof typeof benchmarks, number, string[]][] = [
      ["pipelined", 1_000_000, p],
      ["plain", 200_000, []],
      ["oneClientPipelined", 1_000_000, ["-c", "1", ...p]],
      ["oneClient", 100_000, ["-c", "1"]],
    ];
    for (const [name, n, extra] of runs) {
      benchmarks[name] = Math.max(benchmarks[name], await redisBenchmark(server.port, n, extra));
      await redisBenchmarkCleanup(server.url);
    }
  }
  await owner?.close();
  const rows = [best(memoryRows), best(redisRows)];
  const rb = benchmarks;

  const redis = rows.find((r) => r.transport === "redis")!;
  const lines = [
    "## Transport",
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    "`deno run -A bench/transport.ts`: Deno " +
    `${Deno.version.deno}, Redis ${await redisVersion()} ` +
    `on loopback (its own server), ${navigator.hardwareConcurrency} CPUs, ${PAYLOAD_BYTES}-byte ` +
    `payloads. One writer and one reader, each on its own transport. Best of ${ROUNDS} ` +
    "interleaved rounds (the machine is shared; see MEASUREMENTS.md for the spread).",
    "",
    "| transport | round trips/s (append → blocking read → ack, sequential) | p50 round trip | " +
    "appends/s (`appendMany` ×100, one batch at a time) | appends/s (×100, " +
    `${IN_FLIGHT} batches in flight) |`,
    "|---|---:|---:|---:|---:|",
    ...rows.map((r) =>
      `| ${r.transport} | ${fmt(r.roundTrips)} | ${fmt(r.roundTripP50Us)} µs | ` +
      `${fmt(r.pipelined)} | ${fmt(r.pipelinedInFlight)} |`
    ),
    "",
    "`redis-benchmark -q xadd bench:rb '*' m <64 bytes>` against the same server (`-n` 1,000,000 " +
    "pipelined, 100,000–200,000 not):",
    "",
    "| redis-benchmark XADD | requests/s |",
    "|---|---:|",
    `| \`-P ${BATCH}\` (50 clients) | ${fmt(rb.pipelined)} |`,
    `| no \`-P\` (50 clients) | ${fmt(rb.plain)} |`,
    `| \`-c 1 -P ${BATCH}\` (one connection, like the transport) | ${fmt(rb.oneClientPipelined)} |`,
    `| \`-c 1\` (one connection, no pipelining) | ${fmt(rb.oneClient)} |`,
    "",
    `Redis transport, pipelined appends (one batch at a time) as a share of redis-benchmark's ` +
    `pipelined XADD: ${pct(redis.pipelined, rb.pipelined)} of \`-P ${BATCH}\`, ` +
    `${pct(redis.pipelined, rb.oneClientPipelined)} of \`-c 1 -P ${BATCH}\`; with ${IN_FLIGHT} ` +
    `batches in flight: ${pct(redis.pipelinedInFlight, rb.pipelined)} and ` +
    `${pct(redis.pipelinedInFlight, rb.oneClientPipelined)}.`,
    "",
  ];
  const section = lines.join("\n");
  console.log(section);
  await writeSection(new URL("./RESULTS.md", import.meta.url), section);
}

function pct(a: number, b: number): string {
  return `${Math.round((100 * a) / b)}%`;
}

/** Replaces the "## Transport" section of `file` (up to the next "## "), or appends it. */
async function writeSection(file: URL, section: string): Promise<void> {
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (text === "") text = "# Benchmark results\n\n";
  const start = text.search(/^## Transport[ \t]*$/m);
  if (start === -1) {
    text = text.replace(/\n*$/, "\n\n") + section;
  } else {
    const rest = text.slice(start + 1);
    const next = rest.search(/^## /m);
    const end = next === -1 ? text.length : start + 1 + next;
    text = text.slice(0, start) + section + (next === -1 ? "" : "\n" + text.slice(end));
  }
  await Deno.writeTextFile(file, text.replace(/\n*$/, "\n"));
}

if (import.meta.main) await main();
