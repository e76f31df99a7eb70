/**
 * Waiting for a cluster's engines: reading the registry stream until they registered, with an
 * optional progress bar (on stderr, or in the running cell of Deno's Jupyter kernel).
 *
 * @module
 */
import {
  ClusterStateError,
  RemoteError,
  TimeoutError,
  TransportClosedError,
} from "../../errors.ts";
import { redactUrl } from "../../transport/mod.ts";
import type { ActorSystem } from "../core/system.ts";
import { progressBar } from "./_progress_bar.ts";
import { REGISTRY } from "../protocol/addresses.ts";
import type { Join, Registration, Unregistration } from "../protocol/host_messages.ts";

/**
 * Reads the registry until `n` engines registered (or, when `n` is not given, until it is quiet
 * for a moment). Returns the host of each, by engine id.
 */
export async function waitForEngines(
  system: ActorSystem,
  n: number | undefined,
  options: { timeout: number; progress: boolean },
): Promise<Map<number, string>> {
  const { transport } = system;
  const stream = system.inboxOf(REGISTRY);
  const group = `client.${system.id}`;
  const ids = new Map<number, string>();
  const until = Date.now() + options.timeout;
  const bar = options.progress ? progressBar(n) : undefined;
  let quiet = 0;
  let otherKey = 0;
  try {
    while (n === undefined || ids.size < n) {
      const left = until - Date.now();
      if (left <= 0) {
        if (n === undefined && ids.size > 0) break;
        const missing = n === undefined
          ? []
          : Array.from({ length: n }, (_, i) => i).filter((i) => !ids.has(i));
        throw new TimeoutError(
          `Cannot connect to cluster "${system.namespace}" on ${redactUrl(transport.url)}: ` +
            (n === undefined
              ? `no engine registered within ${options.timeout} ms`
              : `engines ${missing.join(", ")} did not register within ${options.timeout} ms`) +
            (otherKey > 0
              ? `; ${otherKey} registrations signed with another key were seen: ` +
                `is this the cluster's key?`
              : ""),
          options.timeout,
          missing,
        );
      }
      const entries = await transport.read(group, system.id, [stream], {
        blockMs: Math.min(left, 200),
        count: 1000,
      });
      for (const entry of entries) {
        try {
          const envelope = system.verify(entry.data ?? new Uint8Array());
          if (system.replayOf(entry, envelope) !== undefined) continue;
          if (envelope.type === "register") {
            const { id, hostId } = envelope.content as Registration;
            ids.set(id, hostId);
          } else if (envelope.type === "unregister") {
            // A host that stopped: its engines are not there unless another host registers them.
            const { id, hostId } = envelope.content as Unregistration;
            if (ids.get(id) === hostId) ids.delete(id);
          }
        } catch (error) {
          // A stray entry: the engines' systems dead-letter what they read. One that does not
          // verify is most likely a registration signed with the key of another run.
          if (/signature/.test((error as Error)?.message)) otherKey++;
        }
      }
      if (entries.length) await transport.ack(stream, group, entries.map((e) => e.id));
      bar?.(ids.size);
      quiet = entries.length === 0 ? quiet + 1 : 0;
      if (n === undefined && ids.size > 0 && quiet >= 3) break;
    }
  } catch (error) {
    if (error instanceof TransportClosedError) throw error;
    throw error;
  } finally {
    bar?.(ids.size, true);
  }
  return ids;
}

/**
 * Tells every host of `hosts` (engine id → host id) the cluster's size, the number of engines
 * found, so that hosts started on their own (`engine.ts --n 4`, then `--n 4 --first 4`) give
 * their engines the cluster's `size` and have a broadcast node for every position of a broadcast
 * over the whole cluster. Resolves once each host answered, or after `timeoutMs` for a host that
 * does not (gone, or its thread blocked: the heartbeat watch tells which). Rejects with
 * `ClusterStateError` when a host refuses: it was started with another `--size`.
 */
export async function joinHosts(
  system: ActorSystem,
  hosts: ReadonlyMap<number, string>,
  timeoutMs: number,
): Promise<void> {
  const size = hosts.size;
  const refusals: string[] = [];
  let cause: unknown;
  await Promise.all([...new Set(hosts.values())].map(async (hostId) => {
    try {
      await system.ask(`host.${hostId}`, "join", { size } satisfies Join, { timeout: timeoutMs });
    } catch (error) {
      if (error instanceof TimeoutError) return;
      if (!(error instanceof RemoteError)) throw error;
      refusals.push(error.remoteMessage);
      cause ??= error;
    }
  }));
  if (refusals.length > 0) {
    throw new ClusterStateError("connect to", system.namespace, refusals.sort().join("; "), {
      cause,
    });
  }
}
