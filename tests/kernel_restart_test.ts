/**
 * Restarting or shutting down Deno's Jupyter kernel while a cell's cluster runs leaves no engine
 * process, Worker or Redis key behind. `fixtures/kernel_session.py` drives the kernel with
 * `jupyter_client`'s `KernelManager`, as Jupyter does: it runs a cell that starts a cluster, then
 * restarts the kernel (or shuts it down): SIGINT, a shutdown request, then SIGTERM and SIGKILL if
 * the kernel is still there.
 *
 * Ignored, with the reason on stderr, when `jupyter` or its `jupyter_client` is missing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { installKernel, jupyterPython } from "./_jupyter.ts";
import { connectAdmin } from "./_redis_server.ts";
import { type Backend, forEachBackend, LAUNCHERS } from "./_backends.ts";
import { waitUntil } from "./_async.ts";

const SESSION = fileURLToPath(new URL("./fixtures/kernel_session.py", import.meta.url));
const MOD = new URL("../mod.ts", import.meta.url).href;
/** How long the engines and keys of a killed kernel may take to go (a hang guard). */
const GONE_WITHIN_MS = 20_000;

const python = await jupyterPython();

/** Why these tests cannot run here, or `undefined`. */
async function missingTools(): Promise<string | undefined> {
  if (python === undefined) return "no `jupyter` on PATH";
  const { code } = await new Deno.Command(python, {
    args: ["-c", "import jupyter_client"],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ code: 1 }));
  return code === 0 ? undefined : `${python} cannot import jupyter_client`;
}

const missing = await missingTools();
// deno-lint-ignore no-console
if (missing) console.warn(`kernel_restart_test: ignored: ${missing}`);

/** Whether process `pid` runs (a zombie, exited but not reaped, does not). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * What is done to the kernel: `restart_kernel()`, `shutdown_kernel()`, or
 * `shutdown_kernel(now=True)` (SIGKILL to its process group).
 */
type Action = "restart" | "shutdown" | "kill";

/**
 * How long the keys of a killed kernel's cluster may stay: nothing runs to delete them, and they
 * go only by their lease's expiry (40 s, `transport/_redis_lease.ts` of branch faults2).
 */
const LEASE_GONE_WITHIN_MS = 60_000;

interface Session {
  /** The cell's report: the cluster's namespace and the pid of each engine. */
  cluster: { namespace: string; pids: number[]; kernel: number };
  /** The first kernel's pid, and the new one's after a restart. */
  oldPid: number;
  newPid: number | null;
}

/**
 * Runs a kernel whose one cell starts a cluster with `options`, calls `running` with what the
 * cell printed while the kernel still runs, then does `action` to the kernel.
 */
async function session(
  action: Action,
  options: object,
  running: (cluster: Session["cluster"]) => Promise<void>,
): Promise<Session> {
  const work = await Deno.makeTempDir({ prefix: "deno-parallel-kernel-" });
  try {
    const jupyterPath = await installKernel(`${work}/home`);
    const cell = `import { Cluster } from ${JSON.stringify(MOD)};
var cluster = new Cluster({ n: 2, hosts: 2, progress: false, ...${JSON.stringify(options)} });
var rc = await cluster.startAndConnect();
const pids = await rc.view().apply(() => Deno.pid);
console.log(JSON.stringify({ namespace: cluster.namespace, pids, kernel: Deno.pid }));`;
    const child = new Deno.Command(python!, {
      args: [SESSION, action, cell],
      cwd: work,
      env: { JUPYTER_PATH: jupyterPath, NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(150_000),
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const lines = linesOf(child.stdout);
    const first = JSON.parse((await lines.next()).value ?? "null");
    const writer = child.stdin.getWriter();
    let cluster: Session["cluster"] | undefined;
    try {
      assert.equal(first?.error, null, JSON.stringify(first));
      cluster = JSON.parse(first.text.trim().split("\n").pop());
      await running(cluster!);
    } finally {
      await writer.write(new TextEncoder().encode("go\n"));
      await writer.close();
    }
    const rest: string[] = [];
    for await (const line of lines) rest.push(line);
    const { code } = await child.status;
    assert.equal(code, 0, `${rest.join("\n")}\n${await stderr}`);
    const end = JSON.parse(rest[rest.length - 1]);
    return { cluster: cluster!, oldPid: end.old_pid, newPid: end.new_pid };
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** The lines of `stream`. */
async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    const lines = text.split("\n");
    text = lines.pop()!;
    yield* lines;
  }
  if (text) yield text;
}

/** The children of process `parent` that run this library's key guardian (`_key_guardian.ts`). */
function guardiansOf(parent: number): number[] {
  const script = new URL("../actors/client/_key_guardian.ts", import.meta.url).href;
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (ppid === parent && cmdline.includes(script)) pids.push(Number(entry.name));
    } catch { /* gone */ }
  }
  return pids;
}

forEachBackend(LAUNCHERS, (test, variant) => {
  for (const action of ["restart", "shutdown", "kill"] as const) {
    test(
      `kernel ${action} with a running cluster: no engine process, Worker or Redis key is left`,
      async (backend: Backend) => {
        await using admin = backend.kind === "redis" ? await connectAdmin(backend.url) : undefined;
        const keysOf = async (namespace: string) =>
          await admin!.send(["KEYS", `${namespace}:*`]) as string[];
        let guardians: number[] = [];
        const { cluster, oldPid, newPid } = await session(action, backend.cluster, async (c) => {
          // While the kernel runs: its engines, its keys and (Worker hosts on Redis) the guardian
          // of its keys are there.
          assert.ok(c.pids.every(running));
          if (admin) assert.ok((await keysOf(c.namespace)).length > 0);
          guardians = guardiansOf(c.kernel);
          const guarded = backend.kind === "redis" && variant.launcher === "worker";
          assert.equal(guardians.length, guarded ? 1 : 0);
        });
        assert.equal(cluster.pids.length, 2);
        if (variant.launcher === "process") {
          for (const pid of cluster.pids) assert.notEqual(pid, oldPid);
        } else {
          assert.deepEqual(cluster.pids, [oldPid, oldPid]); // Workers of the kernel's process
        }
        if (action === "restart") {
          assert.ok(newPid !== null && newPid !== oldPid, "the new kernel answers");
        }
        // The old kernel's process, so its Workers, every engine process and any key guardian end.
        const processes = [oldPid, ...cluster.pids, ...guardians];
        await waitUntil(
          () => `the end of processes ${processes.filter(running)}`,
          () => !processes.some(running),
          GONE_WITHIN_MS,
        );
        if (admin && action === "kill") {
          // SIGKILL to the kernel's process group ends the engine processes and the key guardian
          // too: only an expiry of the keys (a lease) takes them away.
          const ttl = await admin.send(["PTTL", `${cluster.namespace}:inbox:_registry`]) as number;
          if (ttl === -1) {
            // deno-lint-ignore no-console
            console.warn(
              "kernel_restart_test: keys of a killed kernel not checked: they never expire",
            );
            return;
          }
        }
        if (admin) {
          let left: string[] = [];
          await waitUntil(
            () => `the deletion of the cluster's keys (left: ${left.join(", ")})`,
            async () => (left = await keysOf(cluster.namespace)).length === 0,
            action === "kill" ? LEASE_GONE_WITHIN_MS : GONE_WITHIN_MS,
          );
        }
      },
      { ignore: missing !== undefined, sanitize: false, timeoutMs: 180_000 },
    );
  }
});
