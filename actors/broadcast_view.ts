/**
 * A view that reaches its engines through a tree of broadcast actors: one message out and one
 * answer back per call, whatever the number of engines (IPython Parallel's `BroadcastView`,
 * with results in target order and every engine's metadata kept).
 *
 * @module
 */
import { EngineDiedError, RemoteError } from "../errors.ts";
import { AsyncResult, type Outcome } from "./async_result.ts";
import {
  broadcastAddress,
  type BroadcastPart,
  type BroadcastRequest,
  nodeFor,
} from "./broadcast.ts";
import type { Client } from "./client.ts";
import { type CallOptions, type Operation, View } from "./view.ts";

/** Options of `client.broadcastView()`. */
export interface BroadcastViewOptions {
  /** The most children per broadcast node. Default 2. */
  fanout?: number;
}

/** A view whose calls travel down a tree of broadcast actors. */
export class BroadcastView extends View {
  /** The most children per broadcast node. */
  readonly fanout: number;

  /** Makes a broadcast view on `targets`; use `client.broadcastView()`. */
  constructor(client: Client, targets: readonly number[], options: BroadcastViewOptions = {}) {
    super(client, targets);
    this.fanout = options.fanout ?? 2;
    if (!Number.isInteger(this.fanout) || this.fanout < 2) {
      throw new RangeError(`Cannot make broadcast view: fanout must be an integer ≥ 2`);
    }
  }

  /** Sends `operation` as one message to the root of the broadcast tree. */
  protected dispatch(operation: Operation, options: CallOptions): AsyncResult<unknown> {
    const { client, targets, fanout } = this;
    const id = crypto.randomUUID();
    const request: BroadcastRequest = {
      operation,
      targets: [...targets],
      lo: 0,
      hi: targets.length,
      fanout,
    };
    // The broadcast actors hear of deaths by message, which a broadcast may overtake (or which
    // was sent before they started): deaths the client knows of travel with the request.
    for (const engineId of targets) {
      const dead = client.deadEngine(engineId);
      if (dead) (request.dead ??= {})[engineId] = dead.message.replace(/^Engine \d+ died: /, "");
    }
    const parts = client.broadcastHost().then(async (hostId) => {
      const root = broadcastAddress(hostId, nodeFor(0, targets.length, fanout));
      const { system } = client;
      const answer = system.expectReply<BroadcastPart[]>(
        id,
        root,
        options.timeout ?? Infinity,
        options.signal,
        operation.type,
      );
      try {
        await system.send(root, "broadcast", request, { id, replyTo: system.replyAddress });
      } catch (error) {
        // Never written: nothing will answer it.
        answer.catch(() => {});
        system.failReply(id, error as Error);
        throw error;
      }
      return answer;
    });
    const outcomes = targets.map((engineId, i) =>
      parts.then(
        (all) => toOutcome(all[i], client),
        (error): Outcome => ({ engineId, error }),
      )
    );
    return new AsyncResult(id, targets, outcomes.map((o) => o.then((o) => client.echoOutput(o))));
  }
}

function toOutcome(part: BroadcastPart, client: Client): Outcome {
  if ("result" in part) return part;
  const { engineId, error } = part;
  if (error.kind === "died") {
    return {
      engineId,
      error: client.deadEngine(engineId) ??
        new EngineDiedError(engineId, error.message.replace(/^Engine \d+ died: /, "")),
    };
  }
  return { engineId, error: new RemoteError(engineId, error) };
}
