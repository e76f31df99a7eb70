/**
 * Before an `engine.ts` host registers: refuse to start when a host that is still alive holds
 * its host id or one of its engine ids. Two hosts started with the same ids (a second host
 * without `--first`), or with the same `--host-id`, would otherwise share engines silently: every
 * call reaches one of them, and broadcasts wait for nodes nobody reads.
 *
 * The registry says who holds what (the last `register` of an id not followed by its host's
 * `unregister`); a holder is alive when it beats after the check began. A holder that died
 * without unregistering (SIGKILL) stays silent, and the host starts after waiting 2.5 s, or four
 * of its heartbeat intervals when longer.
 *
 * Two hosts that start together both find the registry free: once registered, each reads what
 * was registered since it looked ({@linkcode checkRace}), and the one that registered later
 * withdraws.
 *
 * @module
 */
import { ClusterStateError } from "../../errors.ts";
import type { StreamEntry } from "../../transport/types.ts";
import type { ActorSystem } from "../core/system.ts";
import { HEARTBEATS, REGISTRY } from "../protocol/addresses.ts";
import type { Heartbeat, Registration, Unregistration } from "../protocol/host_messages.ts";

/** The shortest wait for a beat of a holder, in ms: the clients' default `heartbeatTimeoutMs`. */
const DEFAULT_WAIT_MS = 2500;
/** The longest wait for a beat of a holder, in ms. */
const MAX_WAIT_MS = 10_000;
const POLL_MS = 50;

/** What the registry says of one other host. */
interface Holder {
  hostId: string;
  pid: number | undefined;
  /** The engines of ours it holds (all of its engines, when it has our host id). */
  engineIds: number[];
  sameHostId: boolean;
}

/**
 * Resolves when no live host holds `hostId` or one of `engineIds` on `system`'s cluster, to the
 * id of the last registry entry it read (for {@linkcode checkRace}); rejects with
 * `ClusterStateError` naming a live holder otherwise.
 */
export async function checkUnclaimed(
  system: ActorSystem,
  hostId: string,
  engineIds: readonly number[],
): Promise<string> {
  const registry = await system.transport.range(system.inboxOf(REGISTRY));
  const read = registry.at(-1)?.id ?? "0-0";
  const holders = registeredHolders(system, registry, hostId, engineIds);
  if (holders.size === 0) return read;
  const stream = system.inboxOf(HEARTBEATS);
  const earlier = await system.transport.range(stream);
  const since = earlier.at(-1)?.id ?? "0-0";
  const wait = waitFor(system, earlier, holders);
  const deadline = Date.now() + wait;
  for (let last = since;;) {
    const entries = (await system.transport.range(stream, last)).filter((e) => after(e.id, last));
    for (const { hostId: beating } of beats(system, entries)) {
      const holder = holders.get(beating);
      if (holder) throw refusal(system.namespace, hostId, engineIds, holder);
    }
    last = entries.at(-1)?.id ?? last;
    if (Date.now() >= deadline) return read;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** What a host that lost a race appends to the registry, and why it stops. */
export interface Withdrawal {
  /** Why: names the host that registered first. */
  refusal: ClusterStateError;
  /**
   * The registry's new last word on the loser's engine ids: the winner's registration again for
   * the ids it registered first, an `unregister` for the others.
   */
  messages: { type: "register" | "unregister"; content: Registration | Unregistration }[];
}

/**
 * After this host (run `run`) registered: whether another host registered `hostId` or one of
 * `engineIds` before it, since the registry entry `since` that {@linkcode checkUnclaimed} read
 * last. `undefined` when none did; otherwise what this host withdraws.
 */
export async function checkRace(
  system: ActorSystem,
  hostId: string,
  engineIds: readonly number[],
  run: string,
  since: string,
): Promise<Withdrawal | undefined> {
  const registry = await system.transport.range(system.inboxOf(REGISTRY), since);
  const entries = registry.filter((entry) => after(entry.id, since));
  const mine = entries.find((entry) => {
    const envelope = open(system, entry);
    return envelope?.type === "register" && (envelope.content as Registration).run === run;
  });
  if (!mine) return undefined;
  const earlier = entries.filter((entry) => after(mine.id, entry.id));
  const holders = registeredHolders(system, earlier, hostId, engineIds);
  const first = [...holders.values()][0];
  if (!first) return undefined;
  const registrations = new Map<number, Registration>();
  for (const entry of earlier) {
    const envelope = open(system, entry);
    const registration = envelope?.content as Registration;
    if (envelope?.type === "register" && holders.has(registration.hostId)) {
      registrations.set(registration.id, registration);
    }
  }
  const messages: Withdrawal["messages"] = engineIds.map((id) => {
    const winner = registrations.get(id);
    return winner
      ? { type: "register", content: winner }
      : { type: "unregister", content: { id, hostId } };
  });
  for (const [id, registration] of registrations) {
    // The winner's engines under this host id that this host does not run: theirs again.
    if (!engineIds.includes(id)) messages.push({ type: "register", content: registration });
  }
  return { refusal: refusal(system.namespace, hostId, engineIds, first, true), messages };
}

/** The other hosts `registry` says hold `hostId` or one of `engineIds`, by host id. */
function registeredHolders(
  system: ActorSystem,
  registry: StreamEntry[],
  hostId: string,
  engineIds: readonly number[],
): Map<string, Holder> {
  const owners = new Map<number, { hostId: string; pid: number | undefined }>();
  for (const entry of registry) {
    const envelope = open(system, entry);
    if (envelope?.type === "register") {
      const { id, hostId, pid } = envelope.content as Registration;
      owners.set(id, { hostId, pid: Number.isInteger(pid) ? pid : undefined });
    } else if (envelope?.type === "unregister") {
      const { id, hostId } = envelope.content as Unregistration;
      if (owners.get(id)?.hostId === hostId) owners.delete(id);
    }
  }
  const mine = new Set(engineIds);
  const holders = new Map<string, Holder>();
  for (const [id, owner] of [...owners].sort(([a], [b]) => a - b)) {
    const sameHostId = owner.hostId === hostId;
    if (!sameHostId && !mine.has(id)) continue;
    const holder = holders.get(owner.hostId) ??
      { hostId: owner.hostId, pid: owner.pid, engineIds: [], sameHostId };
    holder.engineIds.push(id);
    holders.set(owner.hostId, holder);
  }
  return holders;
}

/** A few heartbeat intervals of the holders, as their beats in `earlier` show them. */
function waitFor(
  system: ActorSystem,
  earlier: StreamEntry[],
  holders: Map<string, Holder>,
): number {
  const times = new Map<string, number[]>();
  for (const { hostId, time } of beats(system, earlier)) {
    if (holders.has(hostId)) times.set(hostId, [...(times.get(hostId) ?? []).slice(-1), time]);
  }
  let wait = DEFAULT_WAIT_MS;
  for (const [a, b] of times.values()) {
    if (b !== undefined && b > a) wait = Math.max(wait, 4 * (b - a) + 500);
  }
  return Math.min(wait, MAX_WAIT_MS);
}

/** The beats in `entries`: each one's host and its entry's time (the server's clock). */
function beats(system: ActorSystem, entries: StreamEntry[]): { hostId: string; time: number }[] {
  const out: { hostId: string; time: number }[] = [];
  for (const entry of entries) {
    const envelope = open(system, entry);
    const beat = envelope?.type === "beat" ? envelope.content as Heartbeat : undefined;
    if (typeof beat?.hostId === "string") {
      out.push({ hostId: beat.hostId, time: Number(entry.id.split("-")[0]) });
    }
  }
  return out;
}

function open(system: ActorSystem, entry: StreamEntry) {
  try {
    const envelope = system.verify(entry.data ?? new Uint8Array());
    return system.replayOf(entry, envelope) === undefined ? envelope : undefined;
  } catch {
    return undefined; // a stray entry, or one signed with another key
  }
}

/** Whether stream entry id `id` comes after `than`. */
function after(id: string, than: string): boolean {
  const [ms, seq] = id.split("-").map(Number);
  const [thanMs, thanSeq] = than.split("-").map(Number);
  return ms > thanMs || (ms === thanMs && seq > thanSeq);
}

function refusal(
  cluster: string,
  hostId: string,
  engineIds: readonly number[],
  holder: Holder,
  raced = false,
): ClusterStateError {
  const pid = holder.pid === undefined ? "" : ` (pid ${holder.pid})`;
  if (raced) {
    const held = holder.sameHostId
      ? `the host id "${hostId}"`
      : `engines ${holder.engineIds.join(", ")}`;
    const fix = holder.sameHostId
      ? "pass another --host-id, or none for a unique one"
      : "give each host its own engine ids (--first K, or --ids)";
    return new ClusterStateError(
      `start engines ${engineIds.join(", ")} as host "${hostId}" on`,
      cluster,
      `host "${holder.hostId}"${pid}, started at the same time, registered ${held} first: ${fix}`,
    );
  }
  const what = `engines ${engineIds.join(", ")} as host "${hostId}" on`;
  const reason = holder.sameHostId
    ? `a live host${pid} has the host id "${hostId}" (engines ${holder.engineIds.join(", ")}): ` +
      `pass another --host-id, or none for a unique one`
    : `engines ${holder.engineIds.join(", ")} run on host "${holder.hostId}"${pid}, which is ` +
      `alive: give each host its own engine ids (--first K, or --ids)`;
  return new ClusterStateError(`start ${what}`, cluster, reason);
}
