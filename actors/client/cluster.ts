/**
 * A cluster: engine hosts started on this machine (Workers or processes), the transport they
 * share, and the client that talks to them (IPython Parallel's `Cluster`).
 *
 * Why this file is over 500 lines: launching hosts (Workers and processes, with their
 * permissions), supervising them (death, restart) and the cluster's lifecycle all change the
 * same `Host` records and cluster state. The next cut is a launcher (`#launch`, `#newWorker`,
 * `#launchProcess`, the permission helpers) and a supervisor (`#hostDied`, `#restart`), made
 * once the launch code, which is still changing, has settled.
 *
 * @module
 */
import { checkTimerRange } from "./_timer_range.ts";
import {
  ClusterStateError,
  ClusterStoppedError,
  EngineDiedError,
  NamespaceInUseError,
  TimeoutError,
} from "../../errors.ts";
import { checkKey, type ClusterKey, generateKey } from "../../transport/envelope.ts";
import { readKeyFile, toHex } from "../../transport/key.ts";
import { engineEnvironment } from "./_engine_env.ts";
import { joinHosts, waitForEngines } from "./_registry.ts";
import { MemoryTransport } from "../../transport/memory.ts";
import { createTransport, redactUrl } from "../../transport/mod.ts";
import type { Transport } from "../../transport/types.ts";
import {
  Client,
  closeForStop,
  type EngineDiedDetail,
  type EngineRestartedDetail,
} from "./client.ts";
import { ActorSystem, checkMaxMessageBytes } from "../core/system.ts";
import { partitionBounds } from "../protocol/partition.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS, HostClock } from "../_liveness.ts";
import type { FromWorker, ToWorker } from "../protocol/worker_messages.ts";
import { dispatcherAddress, REGISTRY } from "../protocol/addresses.ts";
import type { EngineHostConfig, Registration } from "../protocol/host_messages.ts";
import { displayCluster } from "./_jupyter_display.ts";
import { guardKeys, type KeyGuard } from "./_kernel_guard.ts";
import { inJupyterKernel } from "./_jupyter_kernel.ts";

/**
 * Options of {@linkcode Cluster}.
 *
 * @example Four engines in Workers, in this process's memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster, type ClusterOptions } from "../../mod.ts";
 *
 * const options: ClusterOptions = { n: 4, progress: false };
 * await using cluster = new Cluster(options);
 * const client = await cluster.startAndConnect();
 * assert.equal(client.ids.length, 4);
 * ```
 */
export interface ClusterOptions {
  /** How many engines to start. Default: the number of CPU cores. */
  n?: number;
  /** `"memory:"` (default, or `REDIS_URL` when set) or a `redis://…` / `rediss://…` URL. */
  transport?: string;
  /** How engine hosts run: `"worker"` (default) or `"process"` (needs Redis). */
  launcher?: "worker" | "process";
  /**
   * How many engine hosts, each running a block of neighbouring engine ids. Default: one per CPU
   * core.
   */
  hosts?: number;
  /** Prefix of every stream key; names the cluster. Default: a random one. */
  namespace?: string;
  /** The cluster key (32 random bytes by default). */
  key?: ClusterKey;
  /**
   * A file holding the cluster key in hex (see {@linkcode writeKeyFile}), read by
   * {@linkcode Cluster.start}; used when `key` is not given.
   */
  keyFile?: string;
  /**
   * Restricts what the engines' tasks may do, in the shape of a Worker's `deno.permissions`:
   * omitted kinds are denied. Default: the engines get every permission (`-A`) and run their
   * tasks in their own thread. With it, each engine host runs its tasks in a Worker of their own
   * (the task realm) with exactly these permissions, holding no key, no transport URL and no
   * connection (see "Sandboxed engines" in `docs/protocol.md`).
   *
   * The engine hosts also get what they need whatever this says: net access to the Redis host and
   * port, read access to the CA file of a `rediss://…?ca=` URL and to this library's module
   * folders and files (`actors/`, `transport/`, `errors.ts`, `deps.ts`, `deps_redis.ts`, never its
   * root: engines start a Worker from its modules) when it was imported from `file:`, and import
   * access to its host when it was imported by `http(s):` URL. The `"worker"` launcher needs
   * Deno's `--unstable-worker-options` flag for it (without it, Deno exits with "Unstable API
   * 'Worker.deno.permissions'"); the `"process"` launcher maps it to `--allow-*` flags
   * (`"inherit"` becomes `--allow-<kind>` when this process has that permission) and passes that
   * flag to the engine process.
   */
  permissions?: Deno.PermissionOptionsObject;
  /**
   * An entry appended more than this long after its message was signed, in ms (by the Redis
   * server's clock against the sender's), is taken for a replay and dead-lettered. Allow for the
   * clocks' difference between the machines. Default 60,000.
   */
  replayWindowMs?: number;
  /**
   * Entries larger than this many bytes are dead-lettered unread, by the client and every engine
   * host: a bound on what a writer to Redis can make a reader hold. Values of 64 KiB or more
   * travel as blobs, outside this bound; an answer travels whole. Default 512 MiB (Redis's
   * largest string).
   */
  maxMessageBytes?: number;
  /** How long to wait for every engine to register, in ms. Default 60,000. */
  engineTimeout?: number;
  /**
   * Show a progress bar while engines start: on stderr, or in Deno's Jupyter kernel in the
   * running cell (a display updated in place). Default: when stderr is a terminal, or in that
   * kernel.
   */
  progress?: boolean;
  /**
   * Write what tasks print to this process's stdout/stderr, prefixed `[engine N]`; in Deno's
   * Jupyter kernel, into the cell that made the call (a display updated as answers come).
   */
  streamOutput?: boolean;
  /**
   * How long (ms) each call's results stay in the transport after the engines finished, so that
   * a client (this one, or a new one after a restart) can fetch them by call id with
   * `client.getResult(id)`. 0 keeps none. Default 3,600,000 (one hour).
   */
  resultRetention?: number;
  /**
   * How long an engine host's heartbeats may stay away before its engines are taken for dead, in
   * ms. A busy host is alive: a task may compute for hours without yielding. A host in a Worker is
   * dead when its Worker fails or is ended (noticed at once, without heartbeats); a host in a
   * process is dead when its process exits (noticed at once) or when its heartbeat thread, a
   * thread of its own that beats whatever the host's event loop does, stops: the process was
   * stopped (SIGSTOP), its machine is gone, its link is cut.
   *
   * Hosts send heartbeats a twelfth of this apart and are checked as often, so a silent host is
   * found at most this plus two twelfths after it fell silent: with the default, within 3 s.
   * Default 2500.
   */
  heartbeatTimeoutMs?: number;
  /**
   * Start a replacement when an engine host dies (crash, kill, silence), and when a task blocks
   * its host past its call's deadline (`timeout`): the cluster ends what is left of the old host
   * (SIGKILL for a process, `terminate()` for a Worker), drops the messages its engines had not
   * handled, and starts a host for the same engine ids, with fresh namespaces. Calls pending on
   * the old host's engines (the overrunning one and its neighbours) fail with `EngineDiedError`
   * naming the cause, and so do calls made before the replacement runs; the cluster dispatches
   * `"enginerestarted"` once it does, or `"enginerestartfailed"` when three replacements in a
   * row died or did not register within `engineTimeout`. A task without a deadline is never
   * replaced, however long it runs. IPython Parallel has no automatic restart. Default `false`:
   * a replacement loses its engines' namespaces, which a user should choose to accept.
   *
   * Deno 2.9.6 limit: a Worker stuck in a loop keeps its thread (and a core) after
   * `terminate()` until the process ends; the `"process"` launcher frees it (SIGKILL).
   */
  restart?: boolean;
}

/**
 * The `detail` of a cluster's `"enginerestartfailed"` event.
 *
 * @example Hear when a dead engine cannot be replaced
 * ```ts
 * import { Cluster, type EngineRestartFailedDetail } from "../../mod.ts";
 *
 * const cluster = new Cluster({ n: 2, restart: true, progress: false });
 * const failed: Error[] = [];
 * cluster.addEventListener("enginerestartfailed", (e) => {
 *   failed.push((e as CustomEvent<EngineRestartFailedDetail>).detail.error);
 * });
 * ```
 */
export interface EngineRestartFailedDetail {
  /** The engine that stays dead. */
  engineId: number;
  /** Why its replacement did not start. */
  error: Error;
}

interface Host {
  id: string;
  engineIds: number[];
  worker?: Worker;
  process?: Deno.ChildProcess;
  stopped?: Promise<void>;
  dead?: string;
  /** Its engines registered and the cluster took them on. */
  running?: boolean;
  /** It replaces a host that died. */
  replacement?: boolean;
  /** A Worker host's clock: what its event loop does (see `EngineHostConfig.clock`). */
  clock?: HostClock;
}

/** How long a dead host's blocked read of its inboxes may still take entries (its `blockMs`). */
const READ_BLOCK_MS = 1000;
/** How many times the cluster tries to start a replacement for a dead host. */
const RESTART_ATTEMPTS = 3;
/** How long a cluster's hold on its namespace lasts unless renewed (every fifth of it), in ms. */
const OWNER_TTL_MS = 15_000;

/**
 * Engines started on this machine plus the client that drives them. Dispatches `CustomEvent`s:
 * `"enginedied"` (detail {@linkcode EngineDiedDetail}) when an engine dies, and with
 * `restart: true` `"enginerestarted"` (detail {@linkcode EngineRestartedDetail}) when its
 * replacement runs or `"enginerestartfailed"` (detail {@linkcode EngineRestartFailedDetail}).
 *
 * @example Replace engines whose host dies
 * ```ts ignore
 * await using cluster = new Cluster({ n: 2, restart: true });
 * const client = await cluster.startAndConnect();
 * cluster.addEventListener("enginedied", (e) => {
 *   const { engineId, reason } = (e as CustomEvent<EngineDiedDetail>).detail;
 *   console.log(`engine ${engineId} died: ${reason}`);
 * });
 * const stuck = client.view(0).apply(() => { while (true) { /* never yields *\/ } });
 * await stuck.get().catch((e) => e); // EngineDiedError within 3 s
 * // Once "enginerestarted" came for engine 0, it answers again (with a fresh namespace).
 * ```
 */
export class Cluster extends EventTarget {
  /** The number of engines. */
  readonly n: number;
  /** The cluster's namespace: its name, and the prefix of its stream keys. */
  readonly namespace: string;
  readonly #options: ClusterOptions;
  #key: ClusterKey;
  readonly #hosts: Host[] = [];
  #transport: Transport | undefined;
  #client: Client | undefined;
  #failure: ((error: Error) => void) | undefined;
  #stopping = false;
  /** Set when `start()` begins: a second start fails, and leaves the cluster as it is. */
  #started = false;
  #stopped: Promise<void> | undefined;
  /** Set when `stop()` begins: no host is restarted after that. */
  readonly #closing = new AbortController();
  readonly #restarts = new Set<Promise<void>>();
  /** Reads the event loop ticks of Worker hosts; started by `connect()`. */
  #watch: ReturnType<typeof setInterval> | undefined;
  /** Renews this cluster's hold on its namespace. */
  #holding: ReturnType<typeof setInterval> | undefined;
  #renewing: Promise<void> | undefined;
  /** In Deno's Jupyter kernel, what deletes the cluster's keys if the kernel ends first. */
  #keyGuard: KeyGuard | undefined;

  /** Describes a cluster; nothing starts until {@linkcode start} or {@linkcode startAndConnect}. */
  constructor(options: ClusterOptions = {}) {
    super();
    const cores = navigator.hardwareConcurrency || 1;
    this.n = options.n ?? cores;
    if (!Number.isInteger(this.n) || this.n < 1) {
      throw new RangeError(`Cannot make cluster: n must be a positive integer, got ${options.n}`);
    }
    checkEngineCounts(this.n, options.hosts, options.engineTimeout);
    const launcher = options.launcher ?? "worker";
    if (launcher !== "worker" && launcher !== "process") {
      throw new TypeError(`Cannot make cluster: unknown launcher "${launcher}"`);
    }
    const transport = options.transport ?? Deno.env.get("REDIS_URL") ?? "memory:";
    if (launcher === "process" && transport.startsWith("memory:")) {
      throw new TypeError(
        'Cannot use the "process" launcher with the embedded "memory:" transport: processes ' +
          "share no memory; pass a Redis URL as `transport` (or set REDIS_URL)",
      );
    }
    const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
    if (!(heartbeatTimeoutMs > 0)) {
      throw new RangeError(
        `Cannot make cluster: heartbeatTimeoutMs must be positive, got ${heartbeatTimeoutMs}`,
      );
    }
    checkMaxMessageBytes(options.maxMessageBytes, "Cannot make cluster");
    this.#options = { ...options, transport, launcher, heartbeatTimeoutMs };
    this.namespace = options.namespace ?? `dp-${crypto.randomUUID().slice(0, 8)}`;
    if (options.key !== undefined) checkKey(options.key, "Cannot make cluster");
    this.#key = options.key ?? generateKey();
    if (options.permissions !== undefined) checkPermissions(options.permissions);
    checkRetention(options.resultRetention);
  }

  /** The notebook's rich display of the cluster (Deno's Jupyter kernel calls it). */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return displayCluster(this);
  }

  /** The client, once connected. */
  get client(): Client | undefined {
    return this.#client;
  }

  /**
   * Starts the engine hosts. Resolves once every host is running (engines may still register).
   *
   * @throws {ClusterStateError} when the cluster is already starting or running: it is left as it
   * is (use {@linkcode client} or {@linkcode connect}).
   * @throws {ClusterStoppedError} when the cluster was stopped: make a new `Cluster`.
   */
  async start(): Promise<void> {
    if (this.#stopped) throw new ClusterStoppedError("start cluster", this.namespace);
    if (this.#started) {
      throw new ClusterStateError(
        "start",
        this.namespace,
        `it is already ${this.#client ? "running" : "started"}; use cluster.client or ` +
          "cluster.connect()",
      );
    }
    this.#started = true;
    if (!this.#options.key && this.#options.keyFile) {
      this.#key = await readKeyFile(this.#options.keyFile);
    }
    this.#transport = await createTransport(this.#options.transport);
    await this.#holdNamespace(this.#transport);
    this.#keyGuard = await guardKeys(
      this.#options.transport!,
      this.namespace,
      this.#options.launcher!,
    )
      .catch(() => undefined); // the cluster works without it
    const hostCount = Math.min(this.n, this.#options.hosts ?? (navigator.hardwareConcurrency || 1));
    // Each host runs a block of neighbouring ids: a broadcast or tree over a range of ids then
    // crosses the transport only between blocks.
    for (let h = 0; h < hostCount; h++) {
      const [first, end] = partitionBounds(this.n, h, hostCount);
      this.#hosts.push({
        id: newHostId(h),
        engineIds: range(end).slice(first),
      });
    }
    await Promise.all(this.#hosts.map((host) => this.#launch(host)));
  }

  /**
   * Takes the namespace for this cluster, or closes `transport` and throws
   * {@linkcode NamespaceInUseError} when another running cluster holds it: two clusters on one
   * namespace would take each other's messages and delete each other's streams. The hold is a
   * value that expires unless renewed, so the namespace of a cluster that died unstopped frees
   * itself.
   */
  async #holdNamespace(transport: Transport): Promise<void> {
    const key = `${this.namespace}:owner`;
    const token = new TextEncoder().encode(crypto.randomUUID());
    const held = async () => {
      const value = await transport.getBlob(key);
      return value !== null && value.length === token.length &&
        value.every((b, i) => b === token[i]);
    };
    // A write sent again after a reconnect finds its own value there.
    if (!await transport.putBlobIfAbsent(key, token, OWNER_TTL_MS) && !await held()) {
      this.#transport = undefined;
      await transport.close();
      throw new NamespaceInUseError(this.namespace, redactUrl(transport.url));
    }
    this.#holding = setInterval(() => {
      this.#renewing ??= held()
        .then((mine) => mine ? transport.putBlob(key, token, OWNER_TTL_MS) : undefined)
        .catch(() => {})
        .finally(() => (this.#renewing = undefined));
    }, OWNER_TTL_MS / 5);
  }

  /** How often launched hosts send heartbeats: a dozen beats per timeout. */
  get #heartbeatMs(): number {
    return Math.max(25, Math.min(1000, Math.round(this.#options.heartbeatTimeoutMs! / 12)));
  }

  async #launch(host: Host): Promise<void> {
    const config: EngineHostConfig = {
      namespace: this.namespace,
      key: this.#key,
      engineIds: host.engineIds,
      size: this.n,
      hostId: host.id,
      resultRetentionMs: this.#options.resultRetention,
      replayWindowMs: this.#options.replayWindowMs,
      maxMessageBytes: this.#options.maxMessageBytes,
      ...(this.#options.permissions === undefined
        ? {}
        : { taskPermissions: plainPermissions(this.#options.permissions) }),
    };
    if (this.#options.launcher === "process") return this.#launchProcess(host, config);
    const worker = this.#newWorker();
    host.worker = worker;
    let stopped!: () => void;
    host.stopped = new Promise((resolve) => (stopped = resolve));
    const started = new Promise<void>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        const message = event.data;
        if (message.type === "started") resolve();
        else if (message.type === "failed") {
          const error = new Error(
            `Cannot start engines ${host.engineIds.join(", ")}: ${message.message}`,
          );
          reject(error);
          this.#hostDied(host, `failed to start: ${message.message.split("\n")[0]}`);
        } else if (message.type === "uncaught") this.#uncaught(host, message.message);
        else if (message.type === "stopped") stopped();
      };
      worker.onerror = (event) => {
        event.preventDefault();
        const reason = `its host crashed: ${event.message}`;
        reject(new Error(`Cannot start engines ${host.engineIds.join(", ")}: ${reason}`));
        this.#hostDied(host, reason);
      };
    });
    // The worker writes what its event loop does here; the cluster's watch reads it.
    host.clock = new HostClock();
    host.clock.tick();
    config.clock = host.clock.buffer;
    const transport = this.#transport!;
    if (transport instanceof MemoryTransport) {
      const port = transport.openPort();
      const livenessPort = transport.openPort();
      worker.postMessage(
        { type: "start", config, port, livenessPort } satisfies ToWorker,
        [port, livenessPort],
      );
    } else {
      worker.postMessage(
        { type: "start", config, url: this.#options.transport } satisfies ToWorker,
      );
    }
    await started;
  }

  #newWorker(): Worker {
    const url = new URL("../host/_worker_host.ts", import.meta.url);
    const permissions = this.#options.permissions;
    if (permissions === undefined) return new Worker(url, { type: "module" });
    // Without --unstable-worker-options, Deno ends the process here with its own message.
    return new Worker(url, {
      type: "module",
      deno: { permissions: enginePermissions(permissions, this.#options.transport!) },
    });
  }

  async #launchProcess(host: Host, config: EngineHostConfig): Promise<void> {
    const script = new URL("../../engine.ts", import.meta.url).href;
    const permissions = this.#options.permissions;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...(permissions === undefined ? ["-A"] : [
          "--no-prompt",
          // The engine's task realm is a Worker with the tasks' permissions: Deno exits without it.
          "--unstable-worker-options",
          ...permissionFlags(enginePermissions(permissions, this.#options.transport!)),
        ]),
        script,
        // The URL (it may hold a password) goes on stdin, after the key, not in the process list.
        "--redis",
        "-",
        "--cluster",
        config.namespace,
        "--key-stdin",
        "--ids",
        config.engineIds.join(","),
        "--size",
        String(config.size),
        "--host-id",
        config.hostId,
        ...(config.resultRetentionMs === undefined
          ? []
          : ["--result-retention", String(config.resultRetentionMs)]),
        ...(config.replayWindowMs === undefined
          ? []
          : ["--replay-window", String(config.replayWindowMs)]),
        ...(config.maxMessageBytes === undefined
          ? []
          : ["--max-message-bytes", String(config.maxMessageBytes)]),
        "--heartbeat-ms",
        String(this.#heartbeatMs),
        ...(config.taskPermissions === undefined
          ? []
          : ["--task-permissions", JSON.stringify(config.taskPermissions)]),
        // The pipe stays open while this process lives: its end tells the engines to stop.
        "--exit-with-stdin",
        // Its ids are unique by construction, and a restart takes over those of a killed host.
        "--skip-id-check",
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      clearEnv: true,
      env: engineEnvironment(this.#options.transport!, permissions),
    }).spawn();
    host.process = child;
    const writer = child.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode(`${toHex(this.#key)}\n${this.#options.transport!}\n`),
    );
    const stderr = this.#readStderr(host, child.stderr);
    host.stopped = child.status.then(async (status) => {
      await writer.close().catch(() => {});
      const text = await stderr;
      if (!this.#stopping) {
        const why = crashReason(text);
        this.#hostDied(host, `its process exited with code ${status.code}${why ? `: ${why}` : ""}`);
      }
    });
  }

  /**
   * Reads a process host's stderr to its end, dispatching an error event for each of its
   * warnings (a task's background work that failed) as it comes. Resolves to the whole text.
   */
  async #readStderr(host: Host, stream: ReadableStream<Uint8Array>): Promise<string> {
    let text = "";
    let line = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-65_536);
      const lines = (line + chunk).split("\n");
      line = lines.pop()!;
      for (const l of lines) {
        const warning = /^engine\.ts warning: .*?\(the engines go on\): (.*)$/.exec(l);
        if (warning) this.#uncaught(host, warning[1]);
      }
    }
    return text;
  }

  /**
   * Ends what is left of a host that died (its worker, its process), fails its engines' calls,
   * dispatches `"enginedied"` for each, and with `restart` starts a replacement.
   */
  #hostDied(host: Host, reason: string): void {
    if (host.dead || this.#stopping) return;
    host.dead = reason;
    host.worker?.terminate();
    try {
      host.process?.kill("SIGKILL"); // a stopped or stuck process; one that exited throws
    } catch { /* already gone */ }
    // A replacement that dies while starting fails its restart instead (see #restart).
    if (host.replacement && !host.running) return;
    for (const engineId of host.engineIds) {
      this.#client?.engineDied(engineId, reason);
      this.dispatchEvent(
        new CustomEvent<EngineDiedDetail>("enginedied", { detail: { engineId, reason } }),
      );
    }
    this.#failure?.(
      new EngineDiedError(host.engineIds[0], `engines ${host.engineIds.join(", ")}: ${reason}`),
    );
    if (this.#options.restart && this.#client && host.running && !this.#closing.signal.aborted) {
      const restart = this.#restart(host).finally(() => this.#restarts.delete(restart));
      this.#restarts.add(restart);
    }
  }

  /**
   * Replaces dead host `old` by a new host running the same engine ids, trying up to
   * `RESTART_ATTEMPTS` times. Before each try, the dead engines' inboxes are emptied, once the
   * dead host can no longer read them, so that the replacement does not run what was sent to
   * them (their callers were told they died).
   */
  async #restart(old: Host): Promise<void> {
    const signal = this.#closing.signal;
    const client = this.#client!;
    let dead = old;
    for (let attempt = 1;; attempt++) {
      let host: Host | undefined;
      try {
        if (dead.process) await dead.stopped;
        // The dead host's last blocked read may still take entries for a moment.
        await abortableDelay(READ_BLOCK_MS + 200, signal);
        for (const id of old.engineIds) {
          await client.transport.trim(client.system.inboxOf(`engine.${id}`), 0);
        }
        await client.transport.trim(client.system.inboxOf(dispatcherAddress(dead.id)), 0);
        if (signal.aborted) return;
        const index = this.#hosts.indexOf(dead);
        host = { id: newHostId(index), engineIds: old.engineIds, replacement: true };
        this.#hosts[index] = host;
        await this.#startReplacement(host);
        host.running = true;
        for (const engineId of host.engineIds) {
          await client.engineRestarted(engineId, host.id);
          this.dispatchEvent(
            new CustomEvent<EngineRestartedDetail>("enginerestarted", { detail: { engineId } }),
          );
        }
        return;
      } catch (error) {
        if (signal.aborted) return;
        const why = (error as Error).message;
        if (host) {
          this.#hostDied(host, `its replacement failed: ${why}`);
          dead = host;
        }
        if (attempt < RESTART_ATTEMPTS) continue;
        for (const engineId of old.engineIds) {
          this.dispatchEvent(
            new CustomEvent<EngineRestartFailedDetail>("enginerestartfailed", {
              detail: {
                engineId,
                error: new Error(
                  `Cannot restart engine ${engineId}: ${why} (tried ${attempt} times)`,
                  { cause: error },
                ),
              },
            }),
          );
        }
        return;
      }
    }
  }

  /** Launches replacement `host` and resolves once its engines registered, within the timeout. */
  async #startReplacement(host: Host): Promise<void> {
    const signal = this.#closing.signal;
    const timeout = this.#options.engineTimeout ?? 60_000;
    const timer = deadline(timeout);
    let onAbort = () => {};
    const stopping = new Promise<never>((_, reject) => {
      onAbort = () => reject(new Error("the cluster is stopping"));
      signal.addEventListener("abort", onAbort);
    });
    stopping.catch(() => {});
    try {
      const started = this.#launch(host).then(() => this.#registered(host, Date.now() + timeout));
      started.catch(() => {});
      await Promise.race([
        started,
        stopping,
        timer.promise.then(() => {
          throw new TimeoutError(
            `its engines did not register within ${timeout} ms`,
            timeout,
            host.engineIds,
          );
        }),
      ]);
    } finally {
      timer.cancel();
      signal.removeEventListener("abort", onAbort);
    }
    if (host.dead) throw new Error(host.dead);
  }

  /** Resolves once every engine of `host` registered (polled from the registry stream). */
  async #registered(host: Host, until: number): Promise<void> {
    const { transport, system } = this.#client!;
    const stream = system.inboxOf(REGISTRY);
    const missing = new Set(host.engineIds);
    let start = "-";
    while (missing.size > 0) {
      if (host.dead) throw new Error(host.dead);
      if (this.#closing.signal.aborted) throw new Error("the cluster is stopping");
      if (Date.now() > until) throw new Error("its engines did not register in time");
      for (const entry of await transport.range(stream, start, 1000)) {
        start = entry.id;
        try {
          const envelope = system.verify(entry.data ?? new Uint8Array());
          if (system.replayOf(entry, envelope) !== undefined) continue;
          const registration = envelope.content as Registration;
          if (envelope.type === "register" && registration.hostId === host.id) {
            missing.delete(registration.id);
          }
        } catch { /* a stray entry */ }
      }
      if (missing.size > 0) await abortableDelay(50, this.#closing.signal);
    }
  }

  /**
   * Waits until every engine registered, then returns the client. Rejects with
   * `TimeoutError` naming the engines that did not register in time, or with the error of a host
   * that failed to start.
   */
  async connect(): Promise<Client> {
    if (this.#stopped) throw new ClusterStoppedError("connect", this.namespace);
    if (this.#client) return this.#client;
    const transport = this.#transport;
    if (!transport) {
      throw new ClusterStateError("connect to", this.namespace, "it is not started; call start()");
    }
    const system = new ActorSystem({
      transport,
      key: this.#key,
      namespace: this.namespace,
      replayWindowMs: this.#options.replayWindowMs,
      maxMessageBytes: this.#options.maxMessageBytes,
      // The client's broadcast hub runs here (see _broadcast_hub.ts).
      localDelivery: true,
    });
    const failed = new Promise<never>((_, reject) => (this.#failure = reject));
    failed.catch(() => {});
    try {
      const hosts = await Promise.race([
        waitForEngines(system, this.n, {
          timeout: this.#options.engineTimeout ?? 60_000,
          progress: this.#options.progress ?? (Deno.stderr.isTerminal() || inJupyterKernel()),
        }),
        failed,
      ]);
      this.#client = new Client({
        system,
        hosts,
        key: this.#key,
        transportUrl: this.#options.transport!,
        streamOutput: this.#options.streamOutput ?? false,
        resultRetentionMs: this.#options.resultRetention,
        heartbeatTimeoutMs: this.#options.heartbeatTimeoutMs!,
        onShutdown: () => this.stop(),
        onHostDied: (hostId, _engineIds, reason) => {
          // Beats of a host that was replaced, or of one this cluster did not launch, are ignored.
          const host = this.#hosts.find((h) => h.id === hostId);
          if (host) this.#hostDied(host, reason);
        },
        onOverrun: (hostId, engineId, overrunMs) => {
          const host = this.#hosts.find((h) => h.id === hostId);
          if (host) this.#overran(host, engineId, overrunMs);
        },
      });
    } catch (error) {
      await system.close();
      throw error;
    }
    for (const host of this.#hosts) {
      if (host.dead) { for (const id of host.engineIds) this.#client.engineDied(id, host.dead); }
      else host.running = true;
    }
    this.#watchWorkers();
    return this.#client;
  }

  /**
   * With `restart`, watches the clocks of Worker hosts, in this thread, for a task that blocks
   * its host past its call's deadline. (Process hosts say so in their heartbeats, which the
   * client watches.) A busy host is never taken for dead here.
   */
  #watchWorkers(): void {
    if (this.#options.launcher !== "worker" || !this.#options.restart) return;
    const periodMs = Math.max(25, Math.min(500, this.#options.heartbeatTimeoutMs! / 12));
    this.#watch = setInterval(() => {
      for (const host of this.#hosts) {
        if (host.dead || !host.running || !host.clock) continue;
        const overrun = host.clock.overrun();
        if (overrun) this.#overran(host, overrun.engineId, overrun.overrunMs);
      }
    }, periodMs);
  }

  /** A task of engine `engineId` blocks `host` `overrunMs` past its deadline. */
  #overran(host: Host, engineId: number, overrunMs: number): void {
    if (!this.#options.restart || host.dead || !host.running) return;
    this.#hostDied(
      host,
      `its host ${host.id} was replaced because a task of engine ${engineId} blocked it ` +
        `${(overrunMs / 1000).toFixed(1)} s past its call's deadline`,
    );
  }

  /** A task's background work on `host` threw and nothing caught it: the host goes on. */
  #uncaught(host: Host, message: string): void {
    const error = new Error(
      `Engine host ${host.id} (engines ${host.engineIds.join(", ")}): a task's background work ` +
        `failed, and the engines go on: ${message}`,
    );
    this.dispatchEvent(new ErrorEvent("error", { error, message: error.message }));
  }

  /**
   * {@linkcode start}, then {@linkcode connect}. When either fails, stops what this call started.
   *
   * @throws {ClusterStateError} when the cluster is already starting or running: it is left
   * running, and `cluster.client` still works.
   * @throws {ClusterStoppedError} when the cluster was stopped.
   */
  async startAndConnect(): Promise<Client> {
    await this.start().catch(async (error) => {
      // A second start changed nothing: the running cluster is not this call's to stop.
      if (!(error instanceof ClusterStateError || error instanceof ClusterStoppedError)) {
        await this.stop();
      }
      throw error;
    });
    try {
      return await this.connect();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /**
   * Kills the engine host that runs engine `engineId` at once, as a crash would: its Worker is
   * terminated, or its process SIGKILLed. Engines share hosts (`hosts`, by default one per CPU
   * core, each running a block of neighbouring ids), so every engine of that host dies with it:
   * their pending calls fail with `EngineDiedError` and the cluster dispatches `"enginedied"`
   * for each. With `restart`, the cluster then replaces the host.
   */
  kill(engineId: number): void {
    const host = this.#hosts.find((h) => h.engineIds.includes(engineId));
    if (!host) throw new RangeError(`Cannot kill engine ${engineId}: no such engine`);
    this.#hostDied(host, "killed");
  }

  /**
   * Stops every engine and the client, and removes every stream and value of the cluster from
   * the transport. Leaves no worker, process or connection behind. Calls made while a stop runs
   * resolve when it is done.
   */
  stop(): Promise<void> {
    return this.#stopped ??= this.#stop();
  }

  async #stop(): Promise<void> {
    const transport = this.#transport;
    this.#closing.abort();
    clearInterval(this.#watch);
    clearInterval(this.#holding);
    await this.#renewing;
    await Promise.allSettled([...this.#restarts]);
    if (this.#client) await closeForStop(this.#client, this.namespace);
    this.#stopping = true;
    if (transport) {
      const system = new ActorSystem({ transport, key: this.#key, namespace: this.namespace });
      await Promise.all(this.#hosts.map(async (host) => {
        if (host.dead) {
          host.worker?.terminate();
          // A killed process is gone only once its exit status is collected.
          if (host.process) await host.stopped;
          return;
        }
        if (host.worker) host.worker.postMessage({ type: "stop" } satisfies ToWorker);
        else await system.send(`host.${host.id}`, "stop").catch(() => {});
        const timer = deadline(5000);
        await Promise.race([host.stopped, timer.promise]);
        timer.cancel();
        host.worker?.terminate();
        if (host.process) {
          try {
            host.process.kill("SIGKILL");
          } catch { /* exited */ }
          await host.stopped;
        }
      }));
      await system.close();
      await transport.deletePrefix(`${this.namespace}:`).catch(() => {});
      await transport.close();
    }
    await this.#keyGuard?.release();
  }

  /** Same as {@linkcode stop}: `await using cluster = new Cluster(…)` stops it at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /**
   * A client on a running cluster this process did not start (engines started with
   * `engine.ts`), IPython Parallel's `Client(url_file=…)`. Fails with `TimeoutError` when the
   * engines do not register in time; its message says so when registrations signed with another
   * key were seen (the wrong key or key file).
   */
  static async connect(options: {
    /** The cluster's transport URL (`redis://…`). */
    transport: string;
    /** The cluster's name (its namespace). */
    cluster: string;
    /** The cluster key, or a file holding it in hex. */
    key?: ClusterKey;
    /** A file holding the cluster key in hex. */
    keyFile?: string;
    /** How many engines to wait for. Default: those registered within `timeout`. */
    n?: number;
    /** How long to wait for engines, in ms. Default 10,000. */
    timeout?: number;
    /**
     * How long (ms) this client's calls can be looked up by id (`client.getResult`); set it as
     * the engines' `--result-retention`. Default 3,600,000 (one hour).
     */
    resultRetention?: number;
    /**
     * How long a host may go unseen (no heartbeat, or its event loop blocked) before its engines
     * are taken for dead, in ms (see {@linkcode ClusterOptions.heartbeatTimeoutMs}). Default 2500.
     */
    heartbeatTimeoutMs?: number;
    /** See {@linkcode ClusterOptions.maxMessageBytes}. Default 512 MiB. */
    maxMessageBytes?: number;
  }): Promise<Client> {
    checkRetention(options.resultRetention);
    checkMaxMessageBytes(options.maxMessageBytes, "Cannot connect");
    const key = options.key ?? (options.keyFile ? await readKeyFile(options.keyFile) : undefined);
    if (!key) throw new TypeError("Cannot connect: pass `key` or `keyFile`");
    checkKey(key, "Cannot connect");
    const transport = await createTransport(options.transport);
    const system = new ActorSystem({
      transport,
      key,
      namespace: options.cluster,
      maxMessageBytes: options.maxMessageBytes,
      localDelivery: true,
    });
    try {
      const hosts = await waitForEngines(system, options.n, {
        timeout: options.timeout ?? 10_000,
        progress: false,
      });
      await joinHosts(system, hosts, options.heartbeatTimeoutMs ?? 2500);
      return new Client({
        system,
        hosts,
        key,
        transportUrl: options.transport,
        resultRetentionMs: options.resultRetention,
        onClose: () => transport.close(),
        ...(options.heartbeatTimeoutMs === undefined
          ? {}
          : { heartbeatTimeoutMs: options.heartbeatTimeoutMs }),
      });
    } catch (error) {
      await system.close();
      await transport.close();
      throw error;
    }
  }
}

/**
 * Why an engine process ended, from what it wrote to stderr: its last `error:` line (Deno's
 * report of an uncaught error) or `engine.ts:` line, else its last lines.
 */
function crashReason(stderr: string): string {
  // deno-lint-ignore no-control-regex
  const lines = stderr.replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((l) => l.trim())
    .filter((l) => l !== "");
  const reported = lines.findLast((l) => /^(error|engine\.ts): /.test(l));
  return reported ?? lines.slice(-3).join(" | ");
}

function deadline(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** A host id, unique in the cluster: `h<index>-<6 random hex digits>`. */
function newHostId(index: number): string {
  return `h${index}-${crypto.randomUUID().slice(0, 6)}`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function checkRetention(retention: number | undefined): void {
  if (retention === undefined) return;
  if (!Number.isInteger(retention) || retention < 0) {
    throw new RangeError(
      `Cannot make cluster: resultRetention must be a whole number of ms ≥ 0, got ${retention}`,
    );
  }
}

const PERMISSION_KINDS = ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const;

function checkPermissions(permissions: Deno.PermissionOptionsObject): void {
  for (const name of Object.keys(permissions)) {
    if (!(PERMISSION_KINDS as readonly string[]).includes(name)) {
      throw new TypeError(`Cannot make cluster: unknown permission "${name}"`);
    }
  }
}

/**
 * `permissions` plus what engines need to run: Redis' host, its CA file, this library's module
 * files (read, when imported from `file:`), this library's host (import, when imported by URL).
 */
function enginePermissions(
  permissions: Deno.PermissionOptionsObject,
  transport: string,
): Deno.PermissionOptionsObject {
  const result: Deno.PermissionOptionsObject = { ...permissions };
  const add = (kind: "read" | "net" | "import", value: string) => {
    const current = result[kind];
    if (current === true || current === "inherit") return;
    const list: (string | URL)[] = Array.isArray(current) ? current : [];
    if (!list.map(String).includes(value)) {
      (result as Record<string, unknown>)[kind] = [...list, value];
    }
  };
  if (!transport.startsWith("memory:")) {
    const url = new URL(transport);
    add("net", `${url.hostname}:${url.port || "6379"}`);
    const ca = url.searchParams.get("ca");
    if (ca !== null) add("read", ca);
  }
  const root = new URL("../../", import.meta.url);
  // Deno wants read access to the modules of a Worker a host starts (its heartbeat thread): the
  // library's module folders and files, never its root (a key file there, .git).
  if (root.protocol === "file:") {
    for (const module of LIBRARY_MODULES) add("read", fromFileUrl(new URL(module, root)));
  }
  if (root.protocol === "http:" || root.protocol === "https:") add("import", root.host);
  return result;
}

/** The library's module folders and files, relative to its root. */
const LIBRARY_MODULES = ["actors/", "transport/", "errors.ts", "deps.ts", "deps_redis.ts"];

function fromFileUrl(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  return Deno.build.os === "windows" ? path.slice(1).replaceAll("/", "\\") : path;
}

/** `permissions` with its URLs as strings, for a message or a command line. */
function plainPermissions(permissions: Deno.PermissionOptionsObject): Deno.PermissionOptionsObject {
  return Object.fromEntries(
    Object.entries(permissions).map(([kind, value]) => [
      kind,
      Array.isArray(value) ? value.map(String) : value,
    ]),
  );
}

/** Deno's `--allow-*` flags for `permissions`. */
function permissionFlags(permissions: Deno.PermissionOptionsObject): string[] {
  const flags: string[] = [];
  for (const kind of PERMISSION_KINDS) {
    const value = permissions[kind];
    if (value === true) flags.push(`--allow-${kind}`);
    else if (Array.isArray(value) && value.length > 0) {
      flags.push(`--allow-${kind}=${value.map(String).join(",")}`);
    } else if (
      value === "inherit" && Deno.permissions.querySync({ name: kind }).state === "granted"
    ) {
      flags.push(`--allow-${kind}`);
    }
  }
  return flags;
}

/**
 * The most engines one cluster starts on this machine. Each engine is an actor with its own
 * inbox and namespace, all registering within `engineTimeout`: far more than this runs out of
 * memory or time instead of failing clearly (`n: 1e5` timed out listing 100,000 ids).
 */
export const MAX_LOCAL_ENGINES = 1024;

/** Throws `RangeError` for an engine count, host count or engine timeout a cluster cannot use. */
function checkEngineCounts(
  n: number,
  hosts: number | undefined,
  engineTimeout: number | undefined,
) {
  if (n > MAX_LOCAL_ENGINES) {
    throw new RangeError(
      `Cannot make cluster: n must be at most ${MAX_LOCAL_ENGINES} on one machine, got ${n} (each engine is an actor with its own inbox and namespace; start engines on more machines with engine.ts and Cluster.connect())`,
    );
  }
  if (hosts !== undefined && (!Number.isInteger(hosts) || hosts < 1)) {
    throw new RangeError(`Cannot make cluster: hosts must be a positive integer, got ${hosts}`);
  }
  if (engineTimeout !== undefined && (typeof engineTimeout !== "number" || !(engineTimeout > 0))) {
    throw new RangeError(
      `Cannot make cluster: engineTimeout must be a positive number of ms, got ${engineTimeout}`,
    );
  }
  checkTimerRange("make cluster", "engineTimeout", engineTimeout);
}
