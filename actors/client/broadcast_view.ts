/**
 * A view that reaches its engines through a tree of broadcast actors: one message out to each
 * host and one answer back, whatever the number of engines (IPython Parallel's `BroadcastView`,
 * with results in target order and every engine's metadata kept).
 *
 * @module
 */
import { EngineDiedError, RemoteError, TransportDataLostError } from "../../errors.ts";
import { AsyncResult, type Outcome, type Shape } from "./async_result.ts";
import type { ViewHost } from "./_view_host.ts";
import { abortOnSignal, type CallOptions, engineTimeout, View } from "./view.ts";
import { broadcastAddress } from "../protocol/addresses.ts";
import type {
  BroadcastPart,
  BroadcastRequest,
  BroadcastTree,
  Operation,
} from "../protocol/messages.ts";
import { hubNodes, nodeFor, placeRange, toRuns } from "../protocol/placement.ts";

/**
 * Options of `client.broadcastView()`.
 *
 * @example A wider tree
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.broadcastView(undefined, { fanout: 4 });
 * assert.equal(view.fanout, 4);
 * ```
 */
export interface BroadcastViewOptions {
  /** The most children per broadcast node. Default 2. */
  fanout?: number;
}

/**
 * A view whose calls travel down a tree of broadcast actors.
 *
 * @example One message out, one answer back
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.broadcastView();
 * assert.deepEqual(await view.apply((a: number, b: number) => a + b, 1, 2), [3, 3]);
 * ```
 */
export class BroadcastView<S extends Shape = "list"> extends View<S> {
  /** The most children per broadcast node. */
  readonly fanout: number;
  readonly #host: ViewHost;

  /**
   * Makes a broadcast view on `targets`, of shape `shape` (see `View`); use
   * `client.broadcastView()`.
   */
  constructor(
    host: ViewHost,
    targets: readonly number[],
    options: BroadcastViewOptions = {},
    shape: S = "list" as S,
  ) {
    super(host, targets, shape);
    this.#host = host;
    this.fanout = options.fanout ?? 2;
    if (!Number.isInteger(this.fanout) || this.fanout < 2) {
      throw new RangeError(`Cannot make broadcast view: fanout must be an integer ≥ 2`);
    }
  }

  /** The view's calls go to the root of their broadcast tree first. */
  protected override route(): string {
    const { targets, fanout } = this;
    const { hosts } = this.tree();
    return broadcastAddress(
      placeRange(hosts, this.#host.hubId),
      nodeFor(0, targets.length, fanout, hosts),
    );
  }

  /** The tree the view's calls go down now (hosts may change when engines are restarted). */
  protected override tree(): BroadcastTree {
    const host = this.#host;
    const { targets, fanout } = this;
    return { fanout, hosts: toRuns(targets.map((t) => host.hostOf(t))), hub: host.hubId };
  }

  /**
   * Sends `operation` as one message to the root of the broadcast tree. The nodes give the
   * message to engine `e` the id `engineMessageId(id, e)`, so that an abort goes from the client
   * straight to the engines' inboxes.
   */
  protected dispatch(operation: Operation, options: CallOptions, id: string): AsyncResult<unknown> {
    const host = this.#host;
    const { targets, fanout } = this;
    const { signal } = options;
    const timeout = options.timeout ?? Infinity;
    const deadline = Number.isFinite(timeout) ? Date.now() + timeout : undefined;
    const { hosts } = this.tree();
    const request: BroadcastRequest = {
      operation,
      targets: [...targets],
      hosts,
      hub: host.hubId,
      keepMs: host.retentionMs,
      size: targets.length,
      lo: 0,
      hi: targets.length,
      fanout,
    };
    // The broadcast actors hear of deaths by message, which a broadcast may overtake (or which
    // was sent before they started): deaths the client knows of travel with the request.
    for (const engineId of targets) {
      const dead = host.deadEngine(engineId);
      if (dead) (request.dead ??= {})[engineId] = dead.message.replace(/^Engine \d+ died: /, "");
    }
    const live = targets.filter((engineId) => !host.deadEngine(engineId));
    const { system } = host;
    const place = placeRange(hosts, host.hubId);
    const root = broadcastAddress(place, nodeFor(0, targets.length, fanout, hosts));
    let parts: Promise<BroadcastPart[]>;
    if (live.length === 0) {
      // Nothing to wait for, and the engines' host, where the root would be, is gone.
      parts = Promise.resolve(targets.map((engineId) => ({
        engineId,
        error: { name: "EngineDiedError", message: request.dead![engineId], kind: "died" },
      })));
    } else {
      const ready = place === host.hubId
        ? host.broadcastHost(hubNodes(targets.length, hosts, fanout))
        : Promise.resolve(place);
      parts = ready.then(async () => {
        // Aborted while the broadcast actors started: nothing goes out.
        if (signal?.aborted) throw signal.reason;
        const answer = system.expectReply<BroadcastPart[]>(
          id,
          root,
          timeout,
          signal,
          operation.type,
        );
        // It may fail while the request is still being written (a timeout, a loss of the
        // transport's data); it is returned below.
        answer.catch(() => {});
        try {
          await system.send(root, "broadcast", request, {
            id,
            replyTo: system.replyAddress,
            deadline,
          });
        } catch (error) {
          // Never written: nothing will answer it.
          system.failReply(id, error as Error);
          throw error;
        }
        return answer;
      });
    }
    const outcomes = targets.map((engineId, i) =>
      parts.then(
        (all) => toOutcome(all[i], host),
        (error): Outcome => ({ engineId, error: engineTimeout(error, engineId, timeout) as Error }),
      )
    );
    // The broadcast answers once: until it does, every live target may still have it queued.
    const abort = () => host.abortCall(id, live);
    abortOnSignal(signal, parts.catch(() => {}), abort);
    const echo = host.echoOutput();
    return new AsyncResult(
      id,
      targets,
      outcomes.map((o) => o.then(echo)),
      abort,
    );
  }
}

/** The outcome of one engine's part of a broadcast's answer. */
export function toOutcome(part: BroadcastPart, host: ViewHost): Outcome {
  if ("result" in part) return part;
  const { engineId, error } = part;
  if (error.kind === "died") {
    return {
      engineId,
      error: host.deadEngine(engineId) ??
        new EngineDiedError(engineId, error.message.replace(/^Engine \d+ died: /, "")),
    };
  }
  if (error.kind === "lost") {
    return { engineId, error: new TransportDataLostError(engineId, error.message) };
  }
  return { engineId, error: new RemoteError(engineId, error) };
}
