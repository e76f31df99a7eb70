/**
 * Before an `engine.ts` host registers: refuse to start when a host that is still alive holds
 * its host id or one of its engine ids. Two hosts started with the same ids (a second host
 * without `--first`), or with the same `--host-id`, would otherwise share engines silently: every
 * call reaches one of them, and broadcasts wait for nodes nobody reads.
 *
 * The registry says who holds what (the last `register` of an id not followed by its host's
 * `unregister`); a holder is alive when it beats after the check began. A holder that died
 * without unregistering (SIGKILL) stays silent, and the host starts after waiting 2.5 s, or four
 * of its heartbeat intervals when longer. Two hosts started within one heartbeat interval of each other can both
 * pass.
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
 * Resolves when no live host holds `hostId` or one of `engineIds` on `system`'s cluster; rejects
 * with `ClusterStateError` naming the live holders otherwise.
 */
export async function checkUnclaimed(
  system: ActorSystem,
  hostId: string,
  engineIds: readonly number[],
): Promise<void> {
  const holders = await registeredHolders(system, hostId, engineIds);
  if (holders.size === 0) return;
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
    if (Date.now() >= deadline) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The other hosts the registry says hold `hostId` or one of `engineIds`, by host id. */
async function registeredHolders(
  system: ActorSystem,
  hostId: string,
  engineIds: readonly number[],
): Promise<Map<string, Holder>> {
  const owners = new Map<number, { hostId: string; pid: number | undefined }>();
  for (const entry of await system.transport.range(system.inboxOf(REGISTRY))) {
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
): ClusterStateError {
  const pid = holder.pid === undefined ? "" : ` (pid ${holder.pid})`;
  const what = `engines ${engineIds.join(", ")} as host "${hostId}" on`;
  const reason = holder.sameHostId
    ? `a live host${pid} has the host id "${hostId}" (engines ${holder.engineIds.join(", ")}): ` +
      `pass another --host-id, or none for a unique one`
    : `engines ${holder.engineIds.join(", ")} run on host "${holder.hostId}"${pid}, which is ` +
      `alive: give each host its own engine ids (--first K, or --ids)`;
  return new ClusterStateError(`start ${what}`, cluster, reason);
}
