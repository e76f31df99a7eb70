/**
 * Wiring the engines of a view into a reduction tree: each engine gets its place in a binary
 * tree and a `TreeCommunicator` (IPython Parallel's `bintree` wiring of `allreduce`).
 *
 * @module
 */
import { CompositeError, RemoteError, TimeoutError } from "../../errors.ts";
import type { ViewHost } from "./_view_host.ts";
import type { TreeWiring } from "../protocol/messages.ts";
import type { EngineResult } from "../protocol/results.ts";
import { type Bintree, bintree } from "../protocol/topology.ts";

/** How long wiring may take by default, in ms. */
const DEFAULT_TIMEOUT = 30_000;

/**
 * Options of {@linkcode wireTreeOn}.
 *
 * @example Take a silent peer for dead after 20 s
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const tree = await client.view().wireTree({ livenessMs: 20_000 });
 * assert.equal(tree.get(0), null);
 * ```
 */
export interface WireTreeOptions {
  /** How long wiring may take, in ms. @default {30000} */
  timeout?: number;
  /**
   * After waiting this long for a peer (a child's value, the parent's total), an engine starts
   * pinging the peers it waits for, once per period. @default {1000}
   */
  heartbeatMs?: number;
  /**
   * A peer that does not answer a ping within this many ms is taken for dead: the reduction fails
   * with `EngineDiedError` naming it. Pings are answered by the peer host's liveness
   * thread, not by its event loop, so a peer still computing before it joins the reduction
   * answers them: only a host whose process or thread is gone (or stopped, or cut off) does not.
   * The time counts only while the waiting engine's host runs and the transport answers.
   * @default {5000}
   */
  livenessMs?: number;
  /**
   * Also measure each tree inbox's stream backlog (`Transport.backlog`) on every arrival, for
   * `TreeStats.maxBacklog`: one more round trip per message. @default {false}
   */
  measureBacklog?: boolean;
}

/**
 * Wires engines `targets` into a binary tree (`bintree(targets)`, the first target the
 * root) and puts a `TreeCommunicator` in each one's namespace as `com`. Wiring again
 * replaces the communicators. Returns the tree: the parent of every engine.
 *
 * @throws {EngineDiedError} when an engine of the view is dead.
 * @throws {CompositeError} when several engines failed to wire.
 */
export async function wireTreeOn(
  host: ViewHost,
  targets: readonly number[],
  options: WireTreeOptions = {},
): Promise<Bintree> {
  const ids = [...targets];
  const tree = bintree(ids);
  const wiring: TreeWiring = {
    wiring: crypto.randomUUID(),
    ids,
    tree: [...tree],
    heartbeatMs: options.heartbeatMs ?? 1000,
    livenessMs: options.livenessMs ?? 5000,
    measureBacklog: options.measureBacklog ?? false,
  };
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  const outcomes = await Promise.allSettled(ids.map(async (id) => {
    const dead = host.deadEngine(id);
    if (dead) throw dead;
    const result = await host.system.ask<EngineResult>(`engine.${id}`, "wireTree", wiring, {
      timeout,
    });
    if (result.error) throw new RemoteError(id, result.error);
  }));
  const errors = outcomes.flatMap((o, i) => {
    if (o.status === "fulfilled") return [];
    const error = o.reason as Error & { engineId?: number };
    if (error.engineId !== undefined) return [error];
    if (error instanceof TimeoutError) {
      const late = new TimeoutError(
        `Cannot wire engine ${ids[i]}: no answer within ${timeout} ms`,
        timeout,
        [ids[i]],
        { cause: error },
      );
      return [Object.assign(late, { engineId: ids[i] })];
    }
    return [Object.assign(error, { engineId: ids[i] })];
  });
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new CompositeError(errors);
  host.treeWired(wiring.wiring, ids);
  return tree;
}
