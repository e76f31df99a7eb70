/**
 * A client's watch over engine hosts: it polls the heartbeat stream and declares dead the hosts
 * not heard from for the heartbeat timeout.
 *
 * @module
 */
import type { ActorSystem } from "../core/system.ts";
import { LivenessWatch } from "../_liveness.ts";
import { HEARTBEATS } from "../protocol/addresses.ts";
import type { Heartbeat } from "../protocol/host_messages.ts";

/** How long a heartbeat read that does not wait may take before it says the server is away, ms. */
const OUTAGE_READ_MS = 1500;

/** What {@linkcode watchHeartbeats} needs of its client. */
export interface HeartbeatWatchOptions {
  /** How long a host may go unheard before it is dead, in ms. */
  timeoutMs: number;
  /** Those of `engineIds` whose current host is `hostId`. */
  ownedBy(hostId: string, engineIds: readonly number[]): number[];
  /** Called once for a host found dead, with the engines it was the current host of. */
  onHostDied(hostId: string, engineIds: number[], reason: string): void;
  /**
   * Called when a host found dead by its silence is heard again, with the engines it is the
   * current host of. Without it, a host found dead stays dead.
   */
  onHostBack?: (hostId: string, engineIds: number[]) => void;
  /** Called for each heartbeat saying a task overran its call's deadline on a host. */
  onOverrun?: (hostId: string, engineId: number, overrunMs: number) => void;
}

/** A running heartbeat watch. */
export interface HeartbeatWatch {
  /** Stops polling, once the poll in progress is done. */
  close(): Promise<void>;
}

/**
 * Polls the heartbeat stream and declares dead the engines of hosts not heard from for
 * `timeoutMs` (see `LivenessWatch`). A beat counts only for the engines its host is
 * the current host of (the one that registered them last): the beats of a host that was
 * replaced, or stopped, say nothing of the engines that another host runs now. With `onHostBack`,
 * a host whose beats resume after it was declared dead is back (its link was cut, not its life).
 */
export function watchHeartbeats(
  system: ActorSystem,
  options: HeartbeatWatchOptions,
): HeartbeatWatch {
  const { timeoutMs, ownedBy, onHostDied, onHostBack, onOverrun } = options;
  if (!(timeoutMs > 0)) {
    throw new RangeError(
      `Cannot make client: heartbeatTimeoutMs must be positive, got ${timeoutMs}`,
    );
  }
  const stream = system.inboxOf(HEARTBEATS);
  const group = `beats.${system.id}`;
  const lastSeq = new Map<string, number>();
  const watch = new LivenessWatch(timeoutMs, (hostId, engineIds, reason) => {
    const owned = ownedBy(hostId, engineIds);
    if (owned.length === 0) return;
    onHostDied(hostId, owned, reason);
  }, onHostBack && ((hostId, engineIds) => onHostBack(hostId, ownedBy(hostId, engineIds))));
  const poll = async () => {
    let entries;
    const begun = performance.now();
    try {
      entries = await system.transport.read(group, system.id, [stream], {
        blockMs: 0,
        count: 1000,
      });
      if (entries.length) await system.transport.ack(stream, group, entries.map((e) => e.id));
    } catch {
      watch.pause(); // the transport is away: hosts cannot be heard
      return;
    }
    // A read that does not wait came back empty after waiting for an absent server (the Redis
    // transport gives up on it after 2 s): the hosts could not be heard meanwhile either. A read
    // merely slowed by load still counts, or a stopped host could hide behind the load.
    if (performance.now() - begun > OUTAGE_READ_MS) watch.pause();
    else watch.advance();
    for (const entry of entries) {
      let beat: Heartbeat;
      try {
        const envelope = system.verify(entry.data ?? new Uint8Array());
        if (system.replayOf(entry, envelope) !== undefined) continue;
        beat = envelope.content as Heartbeat;
      } catch {
        continue; // not a heartbeat of this cluster
      }
      if (typeof beat?.hostId !== "string" || !Array.isArray(beat.engineIds)) continue;
      // A copy of an earlier beat (appended again, with redis-cli say) is not a sign of life.
      if (!(typeof beat.seq === "number" && beat.seq > (lastSeq.get(beat.hostId) ?? 0))) {
        continue;
      }
      lastSeq.set(beat.hostId, beat.seq);
      const owned = ownedBy(beat.hostId, beat.engineIds);
      if (owned.length === 0) continue;
      watch.seen(beat.hostId, owned);
      const { overrun } = beat;
      if (onOverrun && overrun && owned.includes(overrun.engineId)) {
        onOverrun(beat.hostId, overrun.engineId, Number(overrun.overrunMs));
      }
    }
    watch.check();
  };
  let polling: Promise<void> | undefined;
  const timer = setInterval(() => {
    polling ??= poll().finally(() => (polling = undefined));
  }, watch.periodMs);
  return {
    async close() {
      clearInterval(timer);
      await polling;
    },
  };
}
