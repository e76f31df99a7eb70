/**
 * What engine hosts tell clients outside of calls: registrations, heartbeats, and the
 * configuration a host is started with.
 *
 * @module
 */
import type { ClusterKey } from "../../transport/envelope.ts";

/** What an engine host sends every heartbeat interval. */
export interface Heartbeat {
  /** The host's id. */
  hostId: string;
  /** The engines it runs. */
  engineIds: number[];
  /** When it was sent (ms since the epoch, host's clock). */
  at: number;
  /**
   * Greater than that of every earlier beat of the host (its clock's ms, or one more than the
   * last): a beat whose `seq` is not greater than the last one heard is a replay and says nothing.
   */
  seq: number;
  /**
   * How long before `at` the host's event loop last ran, in ms: near 0 while it runs, growing
   * while a task computes without yielding. A busy host is alive: this only informs.
   */
  stalledMs?: number;
  /** Set while a task blocks the host past its call's deadline: its engine and by how much. */
  overrun?: { engineId: number; overrunMs: number };
}

/** What an engine writes to the registry when it is ready. */
export interface Registration {
  /** The engine's id. */
  id: number;
  /** The engine host it runs on. */
  hostId: string;
  /** The host's process id. */
  pid: number;
  /** When the engine became ready (ms since the epoch). */
  at: number;
  /** A random id of the host's run, telling apart two runs with one host id. */
  run?: string;
}

/** What a host writes to the registry for each of its engines when it stops. */
export interface Unregistration {
  /** The engine's id. */
  id: number;
  /** The engine host that ran it. */
  hostId: string;
}

/**
 * What a client that connected tells each engine host (a `join` control message to
 * `host.<hostId>`): the cluster's size as it found it in the registry, the number of engines it
 * connected to. The host answers once its engines' `size` and its broadcast nodes match.
 */
export interface Join {
  /** The number of engines in the cluster. */
  size: number;
}

/** Configuration of an engine host. */
export interface EngineHostConfig {
  /** The cluster's namespace (stream key prefix). */
  namespace: string;
  /** The cluster key. */
  key: ClusterKey;
  /** The ids of the engines this host runs. */
  engineIds: number[];
  /**
   * The number of engines in the cluster, as far as the host knows when it starts: the `size` its
   * engines' namespaces start with, until a client's `join` says the cluster's.
   */
  size: number;
  /**
   * Whoever started the host chose `size` (`engine.ts --size`): a client's `join` with another
   * size is refused, and the client fails to connect, instead of changing it.
   */
  fixedSize?: boolean;
  /**
   * Refuse to start when a live host of the cluster holds this host's id or one of its engine ids
   * (`engine.ts` does, unless `--skip-id-check`): a `ClusterStateError` naming that host. A
   * `Cluster`'s own hosts skip it: their ids are unique by construction, and a restart takes over
   * the ids of a host the cluster just killed.
   */
  refuseTaken?: boolean;
  /** This host's id, unique in the cluster. */
  hostId: string;
  /**
   * How long (ms) the engines keep each task's answer for `client.getResult`; 0 keeps nothing.
   * Default 1 hour. A host keeps at most its last 1,000 answers (one per task of an engine, or
   * one per broadcast for all its engines), as IPython Parallel's hub database keeps 1,024 records.
   */
  resultRetentionMs?: number;
  /** The host's systems' `replayWindowMs` (see `ActorSystemOptions`). */
  replayWindowMs?: number;
  /** The host's systems' `maxMessageBytes` (see `ActorSystemOptions`). */
  maxMessageBytes?: number;
  /**
   * Send heartbeats from the host's liveness thread, so that clients notice when the host's
   * process dies or stops (SIGSTOP, a machine gone, a cut link): the transport URL (password
   * included) and the interval in ms (default 250).
   */
  heartbeat?: { url: string; intervalMs?: number };
  /**
   * How the host's liveness thread reaches the transport when the host sends no heartbeats (a
   * host in a Worker of the `Cluster`): a URL, or a port of the embedded transport. With neither
   * (and no `heartbeat`), the host answers its engines' liveness pings from its own event loop,
   * so a long task there looks like a death to tree reductions.
   */
  liveness?: { url?: string; port?: MessagePort };
  /**
   * The buffer of the host's `HostClock`, for a watcher on another thread of this
   * process (the `Cluster` that started the host in a Worker). Made by the host when absent.
   */
  clock?: SharedArrayBuffer;
  /**
   * Sandbox the tasks: run them in a task realm of their own (a Worker) with exactly these
   * permissions (Worker `deno.permissions` shape, omitted kinds denied), away from the key and the
   * transport. Needs `--unstable-worker-options`.
   */
  taskPermissions?: Deno.PermissionOptionsObject;
}
