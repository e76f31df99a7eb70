// Deciding when an engine host is dead, and when a task overran its deadline. A host is dead when
// its process or thread is gone: a Worker host's `error` or exit, a process host's exit, or the
// silence of its heartbeat thread (a thread of its own, which beats whatever the host's event loop
// is doing). A host whose event loop is busy in a task is alive, however long the task runs.

/**
 * The default `heartbeatTimeoutMs`, in ms. Hosts are checked, and send heartbeats, a twelfth of it
 * apart, and a beat is read up to a check period after it was sent, so a dead host is found at most
 * the timeout plus two periods after its death: 2500 + 2 × 208 ≈ 2.92 s, within 3 s.
 */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 2500;

/** Called once for a host found dead: its id, its engines, and how it was found dead. */
export type OnHostDead = (hostId: string, engineIds: readonly number[], reason: string) => void;

/** Called when a host found dead by its silence is heard again: its id and its engines. */
export type OnHostBack = (hostId: string, engineIds: readonly number[]) => void;

/**
 * Takes a host for dead when no heartbeat of it came for `timeoutMs`. Time is counted on a clock
 * that advances only while the watcher runs and hears the transport: by the time since the
 * previous {@linkcode advance}, at most two periods. So a watcher that stalls (load, a long
 * synchronous call) or whose transport is away does not blame hosts for the silence. A host found
 * dead by its silence whose heartbeats resume (a link that came back) is watched again, and
 * `onBack` is called, when given; without it, a death is for good.
 */
export class LivenessWatch {
  /** How often to observe and {@linkcode check}, in ms: a dozen times per timeout. */
  readonly periodMs: number;
  readonly #timeoutMs: number;
  readonly #onDead: OnHostDead;
  readonly #hosts = new Map<string, { aliveAt: number; engineIds: number[] }>();
  readonly #dead = new Set<string>();
  /** The hosts of {@linkcode #dead} found dead by their silence (not forgotten). */
  readonly #silenced = new Set<string>();
  readonly #onBack?: OnHostBack;
  #clock = 0;
  #last = performance.now();
  #paused = false;

  /**
   * Watches with `timeoutMs`; `onDead` is called once per death of a host, `onBack` when a host
   * found dead by its silence is heard again.
   */
  constructor(timeoutMs: number, onDead: OnHostDead, onBack?: OnHostBack) {
    this.#timeoutMs = timeoutMs;
    this.#onDead = onDead;
    this.#onBack = onBack;
    this.periodMs = Math.max(25, Math.min(500, timeoutMs / 12));
  }

  /**
   * Moves the clock on by the time since the last call, at most two periods. After a
   * {@linkcode pause}, every host's silence starts again from now instead: what was not heard
   * while the watcher could not listen, and while the hosts reconnect, says nothing of them.
   */
  advance(): void {
    const now = performance.now();
    this.#clock += Math.min(now - this.#last, 2 * this.periodMs);
    this.#last = now;
    if (!this.#paused) return;
    this.#paused = false;
    for (const host of this.#hosts.values()) host.aliveAt = this.#clock;
  }

  /**
   * The watcher could not listen (its transport failed or did not answer in time): the time
   * since the last call does not count, and the next {@linkcode advance} restarts every host's
   * silence.
   */
  pause(): void {
    this.#last = performance.now();
    this.#paused = true;
  }

  /**
   * Records a heartbeat of `hostId`, which runs `engineIds`. Ignored for hosts forgotten, and for
   * hosts found dead by their silence unless the watch has an `onBack`: such a host is back.
   */
  seen(hostId: string, engineIds: readonly number[]): void {
    if (this.#dead.has(hostId)) {
      if (!this.#onBack || !this.#silenced.has(hostId)) return;
      this.#dead.delete(hostId);
      this.#silenced.delete(hostId);
      this.#hosts.set(hostId, { aliveAt: this.#clock, engineIds: [...engineIds] });
      this.#onBack(hostId, engineIds);
      return;
    }
    this.#hosts.set(hostId, { aliveAt: this.#clock, engineIds: [...engineIds] });
  }

  /** Stops watching `hostId` (it stopped, or was found dead another way): for good. */
  forget(hostId: string): void {
    this.#hosts.delete(hostId);
    this.#dead.add(hostId);
    this.#silenced.delete(hostId);
  }

  /** Calls `onDead` for every host not heard from for longer than the timeout. */
  check(): void {
    for (const [hostId, host] of this.#hosts) {
      const silent = this.#clock - host.aliveAt;
      if (silent <= this.#timeoutMs) continue;
      this.forget(hostId);
      this.#silenced.add(hostId);
      const seconds = (silent / 1000).toFixed(1);
      this.#onDead(hostId, host.engineIds, `its host ${hostId} sent no heartbeat for ${seconds} s`);
    }
  }
}

/** How often an engine host records, in its {@linkcode HostClock}, that its event loop runs, in ms. */
export const TICK_MS = 50;

/**
 * What a host's event loop is doing, in shared memory, for a thread that watches it (the host's
 * heartbeat thread, or the `Cluster` that runs the host in a Worker): when the loop last ran, and,
 * while the synchronous part of a task with a deadline runs, that deadline and its engine. A
 * watcher tells from it a task that blocks its host past its deadline (an overrun), never a death.
 */
export class HostClock {
  /** The shared memory: three `BigInt64`s (tick, deadline, engine id). */
  readonly buffer: SharedArrayBuffer;
  readonly #slots: BigInt64Array;

  /** A clock in `buffer` (made when not given). */
  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(24)) {
    this.buffer = buffer;
    this.#slots = new BigInt64Array(buffer);
  }

  /** Records that the loop runs now. */
  tick(): void {
    Atomics.store(this.#slots, 0, BigInt(Date.now()));
  }

  /** Records ticks every {@linkcode TICK_MS} until the returned function is called. */
  start(): () => void {
    this.tick();
    const timer = setInterval(() => this.tick(), TICK_MS);
    return () => clearInterval(timer);
  }

  /**
   * Runs `fn` (the synchronous part of engine `engineId`'s task, whose call has `deadline`) with
   * the deadline recorded, so that a watcher sees when it blocks the loop past it.
   */
  running<T>(engineId: number, deadline: number | undefined, fn: () => T): T {
    if (deadline === undefined) return fn();
    const previous = Atomics.load(this.#slots, 1);
    const previousEngine = Atomics.load(this.#slots, 2);
    Atomics.store(this.#slots, 2, BigInt(engineId));
    Atomics.store(this.#slots, 1, BigInt(deadline));
    try {
      return fn();
    } finally {
      Atomics.store(this.#slots, 1, previous);
      Atomics.store(this.#slots, 2, previousEngine);
    }
  }

  /** How long ago (ms) the loop last ran. */
  stalledMs(): number {
    return Math.max(0, Date.now() - Number(Atomics.load(this.#slots, 0)));
  }

  /**
   * The task blocking the loop past its deadline, if any: its engine and by how many ms it
   * overran. A loop that still ticked after the deadline passed is not blocked by that task.
   */
  overrun(graceMs = 4 * TICK_MS): { engineId: number; overrunMs: number } | undefined {
    const deadline = Number(Atomics.load(this.#slots, 1));
    if (deadline === 0) return undefined;
    const now = Date.now();
    const tickedAt = Number(Atomics.load(this.#slots, 0));
    if (now - deadline < graceMs || tickedAt > deadline) return undefined;
    return { engineId: Number(Atomics.load(this.#slots, 2)), overrunMs: now - deadline };
  }
}

/**
 * The clock of this thread's engine host, when it has one: engines record the synchronous parts
 * of their tasks in it. (A thread runs at most one host.)
 */
export let hostClock: HostClock | undefined;

/** Makes `clock` this thread's host clock (`undefined` clears it). */
export function setHostClock(clock: HostClock | undefined): void {
  hostClock = clock;
}
