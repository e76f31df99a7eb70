// Deciding when an engine host is dead, from what is seen of it: heartbeats that come through
// the transport (hosts in processes) or its event loop's last tick read straight from shared
// memory (hosts in Workers of this process).

/**
 * The default `heartbeatTimeoutMs`, in ms. Hosts are checked, and send heartbeats, a twelfth of it
 * apart, and a beat is read up to a check period after it was sent, so a dead host is found at most
 * the timeout plus two periods after its death: 2500 + 2 × 208 ≈ 2.92 s, within 3 s.
 */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 2500;

/** Called once for a host found dead: its id, its engines, and how it was found dead. */
export type OnHostDead = (hostId: string, engineIds: readonly number[], reason: string) => void;

/**
 * Takes a host for dead when it has not been seen alive for `timeoutMs`. "Seen alive" is when its
 * event loop last ran, as an observation says (`stalledMs` before it). Time is counted on a clock
 * that advances only while the watcher runs: by the time since the previous {@linkcode advance},
 * at most two periods. So a watcher that stalls (load, a long synchronous call) or whose
 * transport is away does not blame hosts for the silence. A host's last sight never moves back:
 * a stall reported after the watcher's clock stood still (the whole machine was starved) counts
 * only for the time the watcher ran.
 */
export class LivenessWatch {
  /** How often to observe and {@linkcode check}, in ms: a dozen times per timeout. */
  readonly periodMs: number;
  readonly #timeoutMs: number;
  readonly #onDead: OnHostDead;
  readonly #hosts = new Map<string, { aliveAt: number; stalledMs: number; engineIds: number[] }>();
  readonly #dead = new Set<string>();
  #clock = 0;
  #last = performance.now();

  /** Watches with `timeoutMs`; `onDead` is called once per dead host. */
  constructor(timeoutMs: number, onDead: OnHostDead) {
    this.#timeoutMs = timeoutMs;
    this.#onDead = onDead;
    this.periodMs = Math.max(25, Math.min(500, timeoutMs / 12));
  }

  /** Moves the clock on by the time since the last call, at most two periods. */
  advance(): void {
    const now = performance.now();
    this.#clock += Math.min(now - this.#last, 2 * this.periodMs);
    this.#last = now;
  }

  /** Stops the clock from counting the time since the last call (the watcher could not look). */
  pause(): void {
    this.#last = performance.now();
  }

  /** Records that `hostId`'s event loop ran `stalledMs` ago. Ignored for hosts found dead. */
  seen(hostId: string, engineIds: readonly number[], stalledMs: number): void {
    if (this.#dead.has(hostId)) return;
    const stalled = Number.isFinite(stalledMs) ? Math.max(0, stalledMs) : 0;
    const previous = this.#hosts.get(hostId);
    const aliveAt = Math.max(previous?.aliveAt ?? -Infinity, this.#clock - stalled);
    this.#hosts.set(hostId, { aliveAt, stalledMs: stalled, engineIds: [...engineIds] });
  }

  /** Stops watching `hostId` (it stopped, or was found dead another way). */
  forget(hostId: string): void {
    this.#hosts.delete(hostId);
    this.#dead.add(hostId);
  }

  /** Calls `onDead` for every host not seen alive for longer than the timeout. */
  check(): void {
    for (const [hostId, host] of this.#hosts) {
      const silent = this.#clock - host.aliveAt;
      if (silent <= this.#timeoutMs) continue;
      this.forget(hostId);
      const seconds = (silent / 1000).toFixed(1);
      const reason = host.stalledMs >= this.#timeoutMs / 2
        ? `its host ${hostId} was blocked for ${seconds} s: its event loop did not run ` +
          "(a task that does not yield?)"
        : `its host ${hostId} sent no heartbeat for ${seconds} s`;
      this.#onDead(hostId, host.engineIds, reason);
    }
  }
}

/** How often an engine host records, in its tick buffer, that its event loop runs, in ms. */
export const TICK_MS = 50;

/**
 * Starts recording in `buffer` (a `BigInt64Array`'s 8 bytes) when this event loop last ran, in ms
 * since the epoch. Returns the function that stops it.
 */
export function startTicks(buffer: SharedArrayBuffer): () => void {
  const now = new BigInt64Array(buffer);
  const record = () => Atomics.store(now, 0, BigInt(Date.now()));
  record();
  const timer = setInterval(record, TICK_MS);
  return () => clearInterval(timer);
}

/** How long ago (ms) the event loop recording into `buffer` last ran. */
export function stalledMs(buffer: SharedArrayBuffer): number {
  return Math.max(0, Date.now() - Number(Atomics.load(new BigInt64Array(buffer), 0)));
}
